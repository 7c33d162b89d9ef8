"""One watchdog for every WebSocket send: a viewer whose send blocks too long is cut off.

A timer per frame (``asyncio.timeout``) cost about 6 % of the server's CPU in the fan-out
benchmark, for a deadline that almost never fires. Instead a send is stamped when it
starts and unstamped when it ends; while any send is in flight, a checker looks once per
``period`` and cancels the tasks whose send started more than ``deadline`` ago. The task
asks ``expired()`` to tell that cancellation from any other.
"""

from __future__ import annotations

import asyncio


class SendDeadlines:
    def __init__(self, deadline: float, period: float = 1.0) -> None:
        self.deadline = deadline
        self.period = min(period, deadline / 2)
        self._sending: dict[asyncio.Task[object], float] = {}
        self._expired: set[asyncio.Task[object]] = set()
        self._checker: asyncio.Task[None] | None = None

    def begin(self, task: asyncio.Task[object]) -> None:
        loop = task.get_loop()
        self._sending[task] = loop.time()
        if self._checker is None:
            self._checker = loop.create_task(self._check())

    def end(self, task: asyncio.Task[object]) -> None:
        self._sending.pop(task, None)
        self._expired.discard(task)

    def expired(self, task: asyncio.Task[object]) -> bool:
        """Whether the watchdog cancelled ``task`` (its send passed the deadline)."""
        return task in self._expired

    @property
    def in_flight(self) -> int:
        return len(self._sending)

    async def _check(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._sending:
                await asyncio.sleep(self.period)
                cutoff = loop.time() - self.deadline
                for task, started in list(self._sending.items()):
                    if started < cutoff and task not in self._expired:
                        self._expired.add(task)
                        task.cancel()
        finally:
            self._checker = None

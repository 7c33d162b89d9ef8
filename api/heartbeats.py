"""WebSocket heartbeats: an idle viewer gets an empty-array text frame (``[]``) every 15 s.

An ASGI app cannot send a WebSocket ping: ASGI has no message for it (pings belong to
the server; uvicorn sends its own, Modal's ASGI runtime carries only ``websocket.send``
text or bytes). So the heartbeat is a data frame, and ``[]`` is the one that keeps the
DESIGN envelope contract: a text frame is a JSON array of envelopes, here of none, so every
client that loops over the array does nothing with it, while proxies and load balancers
in between (Modal's among them) see traffic and keep an idle feed open.

One ticker for all viewers, as for the send deadline (``api/send_deadline.py``): a pump
notes when it last sent a frame; the ticker looks every ``period`` seconds and wakes the
subscriptions idle for ``interval - period`` or more, whose pump then sends ``[]``.
So no viewer goes more than ``interval`` seconds without a frame, and a busy feed, which
sends frames anyway, costs one dict assignment per frame.
"""

from __future__ import annotations

import asyncio

from dashboard.hub import Subscription

HEARTBEAT_FRAME = "[]"


class Heartbeats:
    def __init__(self, interval: float, period: float | None = None) -> None:
        self.interval = interval
        self.period = period if period is not None else interval / 3
        self._last_sent: dict[Subscription, float] = {}
        self._ticker: asyncio.Task[None] | None = None

    def sent(self, sub: Subscription) -> None:
        """A frame (data or heartbeat) just went out to this viewer; also starts tracking."""
        loop = asyncio.get_running_loop()
        self._last_sent[sub] = loop.time()
        if self._ticker is None:
            self._ticker = loop.create_task(self._tick())

    def forget(self, sub: Subscription) -> None:
        self._last_sent.pop(sub, None)

    @property
    def tracked(self) -> int:
        return len(self._last_sent)

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._last_sent:
                await asyncio.sleep(self.period)
                due = loop.time() - (self.interval - self.period)
                for sub, last in list(self._last_sent.items()):
                    if last <= due:
                        sub.nudge()
        finally:
            self._ticker = None

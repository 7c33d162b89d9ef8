"""Durability while bytes still arrive: files are fsync'd in the background as they grow.

A PATCH (or a legacy form file) is acknowledged only once its bytes are durable. Syncing
all of them at the end leaves the disk idle while the network works and the network idle
while the disk works; on the machines measured here that halved the upload rate. Instead,
every ``step`` bytes written a background sync is queued, so when the body ends only the
last bytes are still to flush.

Two things overlap the flush with the network. On the event loop, every ``kick`` bytes,
the kernel is asked to start writing the new pages out (``sync_file_range``, which does
not wait); and every ``step`` bytes a ``fdatasync`` is queued for a syncer thread. The
hint runs on the loop: 0.08 ms per call on average during a 200 MiB upload here, and
handing it to a thread of its own gained nothing (bench/upload.py, A/B of 5 rounds).

A few threads (lanes) serve the files; each file is pinned to one lane and served in
order there: a file's final sync runs after all its earlier ones, and the lane closes the
descriptor itself afterwards, so no sync can ever reach a descriptor that was closed (and
perhaps reused) under it. Files on other lanes do not wait behind it. An error from any
sync of a file is kept and raised by its final one: Linux reports a writeback error to a
descriptor once, so a failed background sync must not be forgotten.

After ``close`` (server shutdown) nothing is queued any more: a file's last sync and close
run at once in the caller, so no wait can hang on a lane that has stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import threading
from collections.abc import Callable

SYNC_STEP = 1024 * 1024
KICK_STEP = 256 * 1024
LANES = 4  # sync threads: a slow sync of one file holds up only the files on its lane


class Syncer:
    """The lanes, each a queue and a thread started on first use."""

    def __init__(
        self,
        fsync: Callable[[int], None],
        writeback: Callable[[int, int, int], None],
        *,
        step: int = SYNC_STEP,
        kick: int = KICK_STEP,
        lanes: int = LANES,
    ) -> None:
        self._fsync = fsync
        self.writeback = writeback
        self.step = step
        self.kick = kick
        self._queues: list[queue.SimpleQueue[tuple[SyncedFile, bool] | None]] = [
            queue.SimpleQueue() for _ in range(lanes)
        ]
        self._threads: list[threading.Thread | None] = [None] * lanes
        self._next_lane = 0
        self._closed = False
        self._lock = threading.Lock()

    def track(self, fd: int, position: int = 0, *, step: int | None = None) -> SyncedFile:
        """Take charge of ``fd``, whose writes start at ``position``: from now on it is
        closed by ``SyncedFile.finish``. ``step`` overrides the syncer's for this file."""
        lane = self._next_lane
        self._next_lane = (lane + 1) % len(self._queues)
        return SyncedFile(self, fd, position, step or self.step, lane)

    def _submit(self, file: SyncedFile, final: bool) -> None:
        with self._lock:
            if not self._closed:
                if self._threads[file.lane] is None:
                    thread = threading.Thread(
                        target=self._serve, args=(file.lane,), name="syncer", daemon=True
                    )
                    self._threads[file.lane] = thread
                    thread.start()
                self._queues[file.lane].put((file, final))
                return
        if final:  # closed: no lane will take it, so do it here
            self._run(file, final)

    def _serve(self, lane: int) -> None:
        work = self._queues[lane]
        while (item := work.get()) is not None:
            self._run(*item)

    def _run(self, file: SyncedFile, final: bool) -> None:
        """One sync (and the close, if final); nothing a file does may stop a lane."""
        if not final:
            file.queued = False
        if file.error is None:
            try:
                self._fsync(file.fd)
            except Exception as exc:  # kept for the file's final wait to raise
                file.error = exc
        if final:
            try:
                os.close(file.fd)
            except OSError as exc:
                file.error = file.error or exc
            file.done()

    def close(self) -> None:
        """Finish what is queued and stop the lanes; later files are synced in place."""
        with self._lock:
            self._closed = True
            threads = [t for t in self._threads if t is not None]
            for lane, thread in enumerate(self._threads):
                if thread is not None:
                    self._queues[lane].put(None)
        for thread in threads:
            thread.join()


class SyncedFile:
    """One file being written on the event loop while the syncer makes it durable."""

    def __init__(self, syncer: Syncer, fd: int, position: int, step: int, lane: int) -> None:
        self.fd = fd
        self.lane = lane
        self.error: Exception | None = None
        self.queued = False
        self._syncer = syncer
        self._step = step
        self._unsynced = 0
        self._unkicked = 0
        self._kicked_to = position  # writeback has been started up to here
        self._finished: asyncio.Future[None] | None = None

    def wrote(self, count: int) -> None:
        """Count bytes just appended; start writeback every ``kick`` bytes, queue a sync
        every ``step`` bytes."""
        syncer = self._syncer
        self._unkicked += count
        if self._unkicked >= syncer.kick:
            syncer.writeback(self.fd, self._kicked_to, self._unkicked)
            self._kicked_to += self._unkicked
            self._unkicked = 0
        self._unsynced += count
        if self._unsynced >= self._step and not self.queued:
            self._unsynced = 0
            self.queued = True
            syncer._submit(self, final=False)

    def finish(self) -> asyncio.Future[None]:
        """Queue the last sync and the close; the future ends with them.

        It raises the first sync error of the file. Cancelling it does not cancel the
        sync: the descriptor is closed by the syncer all the same, once it is done with it.
        """
        if self._finished is None:
            self._finished = asyncio.get_running_loop().create_future()
            self._syncer._submit(self, final=True)
        return self._finished

    def done(self) -> None:
        """Called on the syncer thread once the descriptor is closed."""
        future = self._finished
        if future is not None:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
                future.get_loop().call_soon_threadsafe(_settle, future, self.error)


def _settle(future: asyncio.Future[None], error: Exception | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)

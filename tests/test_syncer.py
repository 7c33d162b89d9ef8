"""The background syncer: files made durable while they grow, errors never forgotten.

Real files in a temporary folder and the real syncer thread; the only stand-ins are the
two calls it is given (fsync and writeback), wrapped to record what reached them.
"""

from __future__ import annotations

import asyncio
import errno
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dashboard.syncer import Syncer
from dashboard.uploads import FileWriter

KIB = 1024


class Recorder:
    """The real FileWriter calls, noting each sync (with the file's size) and each kick."""

    def __init__(self, fail: int = 0) -> None:
        self.writer = FileWriter()
        self.syncs: list[int] = []  # file size seen by each sync
        self.kicks: list[tuple[int, int]] = []
        self.fail = fail  # how many of the next syncs fail with EIO
        self.gate = threading.Event()
        self.gate.set()
        self.lock = threading.Lock()

    def fsync(self, fd: int) -> None:
        self.gate.wait(10)
        with self.lock:
            self.syncs.append(os.fstat(fd).st_size)
            if self.fail:
                self.fail -= 1
                raise OSError(errno.EIO, os.strerror(errno.EIO))
        self.writer.fsync(fd)

    def writeback(self, fd: int, offset: int, length: int) -> None:
        self.kicks.append((offset, length))
        self.writer.start_writeback(fd, offset, length)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def syncer(recorder: Recorder) -> Iterator[Syncer]:
    syncer = Syncer(recorder.fsync, recorder.writeback, step=16 * KIB, kick=4 * KIB)
    yield syncer
    syncer.close()


def open_append(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)


def is_closed(fd: int, path: Path) -> bool:
    """``fd`` no longer names ``path`` (closed, or reused for something else)."""
    try:
        return os.fstat(fd).st_ino != path.stat().st_ino
    except OSError:
        return True


async def write_blocks(syncer: Syncer, path: Path, blocks: int, size: int = 4 * KIB) -> int:
    synced = syncer.track(open_append(path))
    fd = synced.fd
    for _ in range(blocks):
        synced.wrote(os.write(fd, os.urandom(size)))
        await asyncio.sleep(0.001)  # the network's pace: let the syncer run
    await synced.finish()
    return fd


def test_syncs_run_while_the_file_grows_and_the_last_sees_every_byte(
    syncer: Syncer, recorder: Recorder, tmp_path: Path
) -> None:
    path = tmp_path / "f.part"
    total = 40 * 4 * KIB

    async def run() -> int:
        synced = syncer.track(open_append(path))
        for block in range(40):
            synced.wrote(os.write(synced.fd, os.urandom(4 * KIB)))
            if block == 3:  # 16 KiB written: one step, so a background sync is queued
                for _ in range(1000):
                    if recorder.syncs:
                        break
                    await asyncio.sleep(0.005)
        await synced.finish()
        return synced.fd

    fd = asyncio.run(run())
    assert recorder.syncs[0] == 16 * KIB, "a sync ran in the background while bytes arrived"
    assert recorder.syncs[-1] == total, "the final sync came after the last write"
    assert is_closed(fd, path), "the syncer closed the descriptor after its final sync"


def test_writeback_kicks_tile_the_written_range_from_the_start_position(
    syncer: Syncer, recorder: Recorder, tmp_path: Path
) -> None:
    path = tmp_path / "g.part"
    path.write_bytes(b"x" * 1000)  # a resumed upload: appends start at offset 1000

    async def run() -> None:
        synced = syncer.track(open_append(path), 1000)
        for _ in range(10):
            synced.wrote(os.write(synced.fd, b"y" * 3 * KIB))
        await synced.finish()

    asyncio.run(run())
    offsets = [1000]
    for offset, length in recorder.kicks:
        assert offset == offsets[-1], "each kick starts where the previous one ended"
        offsets.append(offset + length)
    assert len(recorder.kicks) == 5 and offsets[-1] == 1000 + 30 * KIB


def test_a_failed_background_sync_is_raised_by_the_final_one(
    recorder: Recorder, tmp_path: Path
) -> None:
    recorder.fail = 1  # only the first (background) sync fails; the disk then "recovers"
    syncer = Syncer(recorder.fsync, recorder.writeback, step=16 * KIB, kick=4 * KIB)
    path = tmp_path / "h.part"
    try:
        with pytest.raises(OSError) as info:
            asyncio.run(write_blocks(syncer, path, 40))
    finally:
        syncer.close()
    assert info.value.errno == errno.EIO
    assert len(recorder.syncs) == 1, "after a failure nothing more is synced"


def test_cancelling_the_wait_still_closes_the_descriptor(
    syncer: Syncer, recorder: Recorder, tmp_path: Path
) -> None:
    path = tmp_path / "c.part"
    fds: list[int] = []

    async def run() -> None:
        synced = syncer.track(open_append(path))
        fds.append(synced.fd)
        synced.wrote(os.write(synced.fd, b"z" * KIB))
        recorder.gate.clear()  # the disk hangs: the final sync cannot finish yet
        waiter = asyncio.ensure_future(synced.finish())
        await asyncio.sleep(0.05)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter

    asyncio.run(run())
    assert not is_closed(fds[0], path), "still in the syncer's hands while its sync hangs"
    recorder.gate.set()
    syncer.close()  # drains the queue: the final sync and the close happen
    assert is_closed(fds[0], path)


def test_after_close_the_lanes_are_gone_and_files_sync_in_place(
    syncer: Syncer, recorder: Recorder, tmp_path: Path
) -> None:
    asyncio.run(write_blocks(syncer, tmp_path / "a.part", 2))
    assert [t for t in threading.enumerate() if t.name == "syncer"]
    syncer.close()
    assert not [t for t in threading.enumerate() if t.name == "syncer"]
    fd = asyncio.run(write_blocks(syncer, tmp_path / "b.part", 2))  # a PATCH during shutdown
    assert is_closed(fd, tmp_path / "b.part"), "its last sync and close ran in place"
    assert recorder.syncs[-1] == 2 * 4 * KIB
    assert not [t for t in threading.enumerate() if t.name == "syncer"]


def test_a_hung_sync_holds_up_only_the_files_on_its_lane(
    recorder: Recorder, tmp_path: Path
) -> None:
    release = threading.Event()
    hung: list[int] = []

    def fsync(fd: int) -> None:
        if hung and fd == hung[0]:
            release.wait(10)  # a disk that hangs on this one file
        recorder.fsync(fd)

    syncer = Syncer(fsync, recorder.writeback, lanes=2)

    async def run() -> float:
        slow = syncer.track(open_append(tmp_path / "slow.part"))
        hung.append(slow.fd)
        slow_done = slow.finish()
        quick = syncer.track(open_append(tmp_path / "quick.part"))  # the next lane
        started = time.monotonic()
        await asyncio.wait_for(quick.finish(), 5)
        took = time.monotonic() - started
        assert not slow_done.done(), "the hung file is still waiting"
        release.set()
        await slow_done
        return took

    try:
        assert asyncio.run(run()) < 1.0
    finally:
        release.set()
        syncer.close()


def test_a_file_can_have_its_own_step(syncer: Syncer, recorder: Recorder, tmp_path: Path) -> None:
    async def run() -> None:
        synced = syncer.track(open_append(tmp_path / "s.part"), step=64 * KIB)
        for _ in range(15):  # 60 KiB: past the syncer's 16 KiB step, short of this file's
            synced.wrote(os.write(synced.fd, b"s" * 4 * KIB))
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.05)
        assert recorder.syncs == [], "no background sync before the file's own step"
        await synced.finish()

    asyncio.run(run())
    assert recorder.syncs == [60 * KIB], "only the final sync"


def test_a_sync_that_fails_oddly_is_raised_and_the_thread_serves_on(
    recorder: Recorder, tmp_path: Path
) -> None:
    calls = []

    def fsync(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 1:
            raise RuntimeError("a storage driver bug")
        recorder.fsync(fd)

    syncer = Syncer(fsync, recorder.writeback)
    try:
        with pytest.raises(RuntimeError):
            asyncio.run(write_blocks(syncer, tmp_path / "odd.part", 1))
        fd = asyncio.run(write_blocks(syncer, tmp_path / "next.part", 1))
    finally:
        syncer.close()
    assert is_closed(fd, tmp_path / "next.part") and recorder.syncs == [4 * KIB]

"""The send watchdog: blocked WebSocket sends are cut off, nothing else is touched.

Unit tests on the watchdog itself, then a real uvicorn (in-process, on a loopback port,
the app built with a 1 s deadline) with one viewer that never reads and one that does.
"""

from __future__ import annotations

import asyncio
import errno
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets

from api.app import create_app
from api.routes import streams
from api.send_deadline import SendDeadlines
from dashboard.config import Settings
from tests.feeds import create_session
from tests.servers import InProcessServer


def test_a_send_blocked_past_the_deadline_is_cancelled_and_marked() -> None:
    async def run() -> None:
        deadlines = SendDeadlines(0.2, period=0.05)
        blocked = asyncio.Event()

        async def stuck_send() -> str:
            me = asyncio.current_task()
            assert me is not None
            deadlines.begin(me)
            try:
                await blocked.wait()  # a send whose socket never drains
                return "sent"
            except asyncio.CancelledError:
                assert deadlines.expired(me)
                me.uncancel()
                return "cut off"
            finally:
                deadlines.end(me)

        async def quick_sends() -> int:
            me = asyncio.current_task()
            assert me is not None
            for _ in range(50):
                deadlines.begin(me)
                await asyncio.sleep(0.01)
                deadlines.end(me)
            return 50

        started = time.monotonic()
        stuck, quick = await asyncio.gather(stuck_send(), quick_sends())
        assert stuck == "cut off" and quick == 50, "only the blocked send was cut off"
        assert 0.2 <= time.monotonic() - started < 2.0
        assert deadlines.in_flight == 0
        await asyncio.sleep(0.1)
        assert deadlines._checker is None, "the checker stops when nothing is in flight"

    asyncio.run(run())


def test_a_cancellation_from_elsewhere_is_not_taken_for_the_deadline() -> None:
    async def run() -> None:
        deadlines = SendDeadlines(10.0)
        seen: list[bool] = []

        async def send() -> None:
            me = asyncio.current_task()
            assert me is not None
            deadlines.begin(me)
            try:
                await asyncio.sleep(5)
            except asyncio.CancelledError:
                seen.append(deadlines.expired(me))
                raise
            finally:
                deadlines.end(me)

        task = asyncio.create_task(send())
        await asyncio.sleep(0.01)
        task.cancel()  # e.g. the server shutting down
        with pytest.raises(asyncio.CancelledError):
            await task
        assert seen == [False]

    asyncio.run(run())


@pytest.fixture
def short_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[InProcessServer, Path]]:
    monkeypatch.setattr(streams, "SEND_DEADLINE_S", 1.0)
    data_dir = tmp_path / "data"
    with InProcessServer(create_app(Settings(data_dir=data_dir)), data_dir) as server:
        yield server, data_dir


def followed(url: str) -> int:
    return int(httpx.get(url + "/healthz", timeout=10).json()["sessions_followed"])


def never_reading_viewer(port: int, path: str, *, websocket: bool) -> socket.socket:
    """A viewer that reads the response head, then never reads again."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    upgrade = (
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        if websocket
        else "Accept: text/event-stream\r\n"
    )
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{upgrade}\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)  # byte by byte: nothing past the head is read
    assert head.startswith(b"HTTP/1.1 101" if websocket else b"HTTP/1.1 200"), head
    return sock


def reset_by_server(sock: socket.socket, within: float) -> bool:
    """Whether the server drops the connection (a reset) while this side reads nothing.

    Reading would let a held socket drain and close politely, so the test looks at the
    socket's pending error instead.
    """
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == errno.ECONNRESET:
            return True
        time.sleep(0.05)
    return False


def test_a_viewer_that_never_reads_is_cut_off_and_the_others_get_everything(
    short_deadline: tuple[InProcessServer, Path],
) -> None:
    server, data_dir = short_deadline
    url = server.url
    sid = create_session(url)
    record = json.loads((data_dir / "sessions" / f"{sid}.json").read_text())
    auth = {"Authorization": f"Bearer {record['log_token']}"}
    path = f"/api/sessions/{sid}/ws?since=0"
    stuck = never_reading_viewer(server.port, path, websocket=True)
    stuck_sse = never_reading_viewer(server.port, f"/api/sessions/{sid}/events", websocket=False)
    lines, batch, size = 3000, 50, 1000  # about 3 MB: far past every socket buffer

    async def run() -> float:
        async with websockets.connect(f"ws://127.0.0.1:{server.port}{path}") as healthy:
            deadline = time.monotonic() + 10
            while followed(url) < 3:
                assert time.monotonic() < deadline, "both viewers subscribed"
                await asyncio.sleep(0.02)
            async with httpx.AsyncClient(base_url=url, headers=auth, timeout=10) as poster:
                for start in range(0, lines, batch):
                    records = [
                        {"message": f"{i:06d}" + "x" * size} for i in range(start, start + batch)
                    ]
                    r = await poster.post("/log", json={"records": records})
                    assert r.status_code == 202
            posted = time.monotonic()
            got: list[int] = []
            while len(got) < lines:
                frame = json.loads(await asyncio.wait_for(healthy.recv(), 10))
                got.extend(int(e["data"]["message"][:6]) for e in frame if e["type"] == "log")
            assert got == list(range(lines)), "the reading viewer got every line, in order"
            while followed(url) > 1:  # the stuck ones are dropped, the healthy one stays
                assert time.monotonic() - posted < 8, "the stuck viewers were cut off"
                await asyncio.sleep(0.05)
            return time.monotonic() - posted

    try:
        cut_after = asyncio.run(run())
        assert cut_after < 8
        # and their sockets are gone, not held until the peers read again
        assert reset_by_server(stuck, within=5), "the stuck WebSocket's socket was dropped"
        assert reset_by_server(stuck_sse, within=5), "the stuck SSE socket was dropped"
    finally:
        stuck.close()
        stuck_sse.close()

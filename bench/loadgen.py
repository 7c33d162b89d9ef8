"""Load-generator processes: many WebSocket and SSE followers of one session feed.

Each process runs uvloop and holds ``n_ws`` WebSocket clients and ``n_sse`` SSE clients,
both raw asyncio protocols that make one pass over each socket read, so that the figures
measure the server, not the client: the SSE client cuts at the last blank line, the
WebSocket client (RFC 6455: handshake with its accept key checked, the server's unmasked
frames parsed, pings answered with masked pongs, a close frame ends it) scans the text
frames complete in that read; the tail waits for the next read. Log
lines carry their index as the message; every client checks that it sees indices
0..expected-1 exactly once and in order, and records ``(receipt time, first, last)`` per
read, so the parent computes POST -> receipt latency per line with the shared
``time.monotonic`` clock (system-wide on Linux).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import multiprocessing as mp
import os
import re
import struct
import time
from array import array
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

MESSAGE_B = re.compile(rb'"message": ?"(\d+)')
MESSAGE_S = re.compile(r'"message": ?"(\d+)')
HELLO = "hello"  # the poster repeats this line until every client has seen one
HELLO_B = re.compile(rb'"message": ?"hello"')


@dataclass
class ClientResult:
    kind: str
    received: int = 0
    error: str | None = None
    marks: array = field(default_factory=lambda: array("d"))  # t, first, last, ...
    greeted: asyncio.Event = field(default_factory=asyncio.Event)

    def take(self, found: list[Any], now: float, expected_next: int) -> int:
        nums = list(map(int, found))
        if nums != list(range(expected_next, expected_next + len(nums))):
            if self.error is None:
                self.error = f"out of order or repeated: expected {expected_next}, got {nums[:5]}"
            return expected_next + len(nums)
        self.marks.extend((now, nums[0], nums[-1]))
        self.received += len(nums)
        return expected_next + len(nums)


class Follower(asyncio.Protocol):
    """What both raw followers share: the request, the order check, the end."""

    def __init__(
        self,
        request: bytes,
        result: ClientResult,
        expected: int,
        done: asyncio.Future[None],
        connected: asyncio.Event | None = None,
    ) -> None:
        self.request = request
        self.result = result
        self.expected = expected
        self.done = done
        self.connected = connected
        self.buf = b""
        self.next = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)

    def _took(self, found: list[bytes], now: float) -> None:
        """One read's worth of line indices: checked, counted, maybe the end."""
        if found:
            self.next = self.result.take(found, now, self.next)
            if self.next >= self.expected:
                self._finish(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(f"connection lost after {self.next} lines")

    def _finish(self, error: str | None) -> None:
        if self.connected is not None:
            self.connected.set()
        self.result.greeted.set()
        if self.done.done():
            return
        if error and self.result.error is None:
            self.result.error = error
        self.done.set_result(None)
        if self.transport is not None:
            self.transport.close()


class SseFollower(Follower):
    def __init__(
        self, path: str, host: str, result: ClientResult, expected: int, done: asyncio.Future[None]
    ) -> None:
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n"
            "Cache-Control: no-store\r\n\r\n"
        ).encode()
        super().__init__(request, result, expected, done)
        self.headers_seen = False

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        buf = self.buf + data if self.buf else data
        if not self.headers_seen:
            head, sep, rest = buf.partition(b"\r\n\r\n")
            if not sep:
                self.buf = buf
                return
            status_line = head.split(b"\r\n", 1)[0]
            if b" 200 " not in status_line:
                self._finish(f"status line {status_line!r}")
                return
            self.headers_seen = True
            buf = rest
        # events end with a blank line: LF LF, or CR LF CR LF (sse-starlette's default)
        lf, crlf = buf.rfind(b"\n\n"), buf.rfind(b"\n\r\n")
        cut, skip = (lf, 2) if lf >= crlf else (crlf, 3)
        if cut < 0:
            self.buf = buf
            return
        self.buf = buf[cut + skip :]
        if not self.result.greeted.is_set() and HELLO_B.search(buf, 0, cut):
            self.result.greeted.set()
        self._took(MESSAGE_B.findall(buf, 0, cut), now)


async def follow_sse(
    host: str,
    port: int,
    path: str,
    expected: int,
    result: ClientResult,
    ready: asyncio.Future[None] | None = None,
) -> None:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    await loop.create_connection(
        lambda: SseFollower(path, f"{host}:{port}", result, expected, done), host, port
    )
    await done


WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


def masked_frame(opcode: int, payload: bytes) -> bytes:
    """A client frame (clients must mask, RFC 6455 5.3); control payloads are <= 125 B."""
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + body


class WsFollower(Follower):
    def __init__(
        self,
        path: str,
        host: str,
        result: ClientResult,
        expected: int,
        done: asyncio.Future[None],
        connected: asyncio.Event,
    ) -> None:
        key = base64.b64encode(os.urandom(16))
        self.accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key.decode()}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        super().__init__(request, result, expected, done, connected)
        self.fragments = b""  # a text message split over frames (not sent by uvicorn)
        self.upgraded = False

    def _handshake(self, buf: bytes) -> bytes | None:
        head, sep, rest = buf.partition(b"\r\n\r\n")
        if not sep:
            self.buf = buf
            return None
        lines = head.split(b"\r\n")
        headers = dict(
            (k.strip().lower(), v.strip()) for k, _, v in (ln.partition(b":") for ln in lines[1:])
        )
        if b" 101 " not in lines[0] or headers.get(b"sec-websocket-accept") != self.accept:
            self._finish(f"handshake refused: {lines[0]!r}")
            return None
        self.upgraded = True
        if self.connected is not None:
            self.connected.set()
        return rest

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        buf = self.buf + data if self.buf else data
        if not self.upgraded:
            rest = self._handshake(buf)
            if rest is None:
                return
            buf = rest
        found: list[bytes] = []
        pos, size = 0, len(buf)
        while size - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            if b1 & 0x80:
                self._finish("the server sent a masked frame")
                return
            length, head = b1 & 0x7F, 2
            if length == 126:
                if size - pos < 4:
                    break
                (length,), head = struct.unpack_from("!H", buf, pos + 2), 4
            elif length == 127:
                if size - pos < 10:
                    break
                (length,), head = struct.unpack_from("!Q", buf, pos + 2), 10
            start = pos + head
            end = start + length
            if end > size:
                break
            opcode, fin = b0 & 0x0F, b0 & 0x80
            if opcode in (OP_TEXT, OP_CONT) and fin and not self.fragments:
                found.extend(MESSAGE_B.findall(buf, start, end))
                if not self.result.greeted.is_set() and HELLO_B.search(buf, start, end):
                    self.result.greeted.set()
            elif opcode in (OP_TEXT, OP_CONT):
                self.fragments += buf[start:end]
                if fin:
                    found.extend(MESSAGE_B.findall(self.fragments))
                    if HELLO_B.search(self.fragments):
                        self.result.greeted.set()
                    self.fragments = b""
            elif opcode == OP_PING and self.transport is not None:
                self.transport.write(masked_frame(OP_PONG, buf[start:end]))
            elif opcode == OP_CLOSE:
                code = struct.unpack_from("!H", buf, start)[0] if length >= 2 else None
                self._took(found, now)  # the lines before the close count (may be all)
                self._finish(f"closed after {self.next} lines (code {code})")
                return
            elif opcode != OP_PONG:
                self._took(found, now)
                self._finish(f"unexpected opcode {opcode}")
                return
            pos = end
        self.buf = buf[pos:]
        self._took(found, now)


async def follow_ws(
    host: str,
    port: int,
    path: str,
    expected: int,
    result: ClientResult,
    connected: asyncio.Event,
) -> None:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    try:
        await loop.create_connection(
            lambda: WsFollower(path, f"{host}:{port}", result, expected, done, connected),
            host,
            port,
        )
    except OSError as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        connected.set()
        result.greeted.set()
        return
    await done


async def _run(spec: dict[str, Any], conn: Connection) -> list[ClientResult]:
    host, port, expected = spec["host"], spec["port"], spec["expected"]
    results: list[ClientResult] = []
    tasks: list[asyncio.Task[None]] = []
    connected: list[asyncio.Event] = []
    for _ in range(spec["n_ws"]):
        result = ClientResult("ws")
        event = asyncio.Event()
        results.append(result)
        connected.append(event)
        tasks.append(
            asyncio.create_task(follow_ws(host, port, spec["ws_path"], expected, result, event))
        )
    sse_connects = []
    for _ in range(spec["n_sse"]):
        result = ClientResult("sse")
        results.append(result)
        sse_connects.append(
            asyncio.create_task(follow_sse(host, port, spec["sse_path"], expected, result))
        )
    for event in connected:
        await event.wait()
    conn.send("connected")
    # a client is subscribed once it has seen one of the poster's hello lines
    for result in results:
        await result.greeted.wait()
    conn.send("ready")
    try:
        await asyncio.wait_for(
            asyncio.gather(*tasks, *sse_connects, return_exceptions=True), spec["timeout"]
        )
    except TimeoutError:
        for r in results:
            if r.received < expected and r.error is None:
                r.error = f"timed out with {r.received}/{expected} lines"
    return results


def _main(spec: dict[str, Any], conn: Connection) -> None:
    import uvloop

    results = uvloop.run(_run(spec, conn))
    conn.send([(r.kind, r.received, r.error, r.marks.tobytes()) for r in results])
    conn.close()


class ClientFleet:
    """Load-generator processes; ``start`` returns once every client is connected."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ws_path: str,
        sse_path: str,
        n_ws: int,
        n_sse: int,
        expected: int,
        processes: int = 2,
        timeout: float = 120.0,
    ) -> None:
        ctx = mp.get_context("spawn")
        self.pipes: list[Connection] = []
        self.procs: list[Any] = []
        for i in range(processes):
            spec = {
                "host": host,
                "port": port,
                "ws_path": ws_path,
                "sse_path": sse_path,
                "n_ws": n_ws // processes + (1 if i < n_ws % processes else 0),
                "n_sse": n_sse // processes + (1 if i < n_sse % processes else 0),
                "expected": expected,
                "timeout": timeout,
            }
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_main, args=(spec, child), daemon=True)
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)

    def wait_ready(self, post_hello: Any, timeout: float = 120.0) -> None:
        """Wait for every connection, then ``post_hello()`` every 0.1 s until all saw one."""
        deadline = time.monotonic() + timeout
        for pipe in self.pipes:
            if not pipe.poll(timeout):
                raise RuntimeError("load generator did not connect in time")
            assert pipe.recv() == "connected"
        waiting = list(self.pipes)
        while waiting:
            if time.monotonic() > deadline:
                raise RuntimeError("clients did not subscribe in time")
            post_hello()
            time.sleep(0.1)
            for pipe in list(waiting):
                if pipe.poll():
                    assert pipe.recv() == "ready"
                    waiting.remove(pipe)

    def results(self, timeout: float = 300.0) -> list[tuple[str, int, str | None, array]]:
        out = []
        for pipe, proc in zip(self.pipes, self.procs, strict=True):
            if not pipe.poll(timeout):
                proc.kill()
                raise RuntimeError("load generator did not report in time")
            for kind, received, error, raw in pipe.recv():
                marks = array("d")
                marks.frombytes(raw)
                out.append((kind, received, error, marks))
            proc.join(10)
        return out


def latencies(marks: array, post_times: list[float], batch: int) -> tuple[list[float], float]:
    """Per-line POST -> receipt latencies (s) of one client, and its last receipt time."""
    out: list[float] = []
    last = 0.0
    for k in range(0, len(marks), 3):
        t, first, end = marks[k], int(marks[k + 1]), int(marks[k + 2])
        last = t
        i = first
        while i <= end:
            b = i // batch
            upto = min(end, (b + 1) * batch - 1)
            out.extend([t - post_times[b]] * (upto - i + 1))
            i = upto + 1
    return out, last

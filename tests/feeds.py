"""Small real clients for the tests: tus uploads, WebSocket and SSE followers."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import websockets

TUS = {"Tus-Resumable": "1.0.0"}
FEED_TIMEOUT_S = 60.0


def metadata(**values: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


def create_session(base: str, context: Any = "A test experiment on columns id and value.") -> str:
    resp = httpx.post(f"{base}/api/sessions", json={"experiment_context": context}, timeout=10)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["session_id"])


def tus_create(base: str, sid: str, relative: str, length: int, **extra: str) -> httpx.Response:
    headers = {
        **TUS,
        "Upload-Length": str(length),
        "Upload-Metadata": metadata(relativePath=relative),
    }
    headers.update(extra)
    return httpx.post(f"{base}/api/sessions/{sid}/files", headers=headers, timeout=10)


def tus_upload(base: str, sid: str, relative: str, data: bytes, chunk: int = 1 << 20) -> str:
    resp = tus_create(base, sid, relative, len(data))
    assert resp.status_code == 201, resp.text
    url = base + resp.headers["Location"]
    offset = 0
    with httpx.Client(timeout=30) as client:
        while offset < len(data) or (offset == 0 and not data):
            body = data[offset : offset + chunk]
            r = client.patch(
                url,
                content=body,
                headers={
                    **TUS,
                    "Upload-Offset": str(offset),
                    "Content-Type": "application/offset+octet-stream",
                },
            )
            assert r.status_code == 204, r.text
            offset = int(r.headers["Upload-Offset"])
            if not data:
                break
    wait_stored(base, sid)
    return url


def wait_stored(base: str, sid: str, within: float = 30.0) -> dict[str, Any]:
    """Until every complete file of the session is stored in its volume (``done``): the
    server publishes a file in the background after acknowledging its last PATCH."""
    deadline = time.monotonic() + within
    while True:
        view: dict[str, Any] = httpx.get(f"{base}/api/sessions/{sid}", timeout=10).json()
        pending = [
            f for f in view.get("files", []) if not f["done"] and f["offset"] == f["length"]
        ]
        if not pending:
            return view
        assert time.monotonic() < deadline, f"not stored within {within} s: {pending}"
        time.sleep(0.02)


def start_run(base: str, sid: str) -> None:
    resp = httpx.post(f"{base}/api/sessions/{sid}/run", timeout=10)
    assert resp.status_code == 202, resp.text


@dataclass
class WsResult:
    items: list[dict[str, Any]] = field(default_factory=list)
    frames: int = 0
    close_code: int | None = None

    @property
    def events(self) -> list[dict[str, Any]]:
        return [i for i in self.items if "seq" in i]

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]


async def follow_ws(url: str, timeout: float = FEED_TIMEOUT_S) -> WsResult:
    """Read a WebSocket feed until the server closes it."""
    result = WsResult()

    async def run() -> None:
        async with websockets.connect(url, max_size=None) as ws:
            try:
                while True:
                    frame = await ws.recv()
                    result.frames += 1
                    result.items.extend(json.loads(frame))
            except websockets.ConnectionClosed:
                result.close_code = ws.close_code

    await asyncio.wait_for(run(), timeout)
    return result


@dataclass
class SseEvent:
    id: str | None
    event: str | None
    data: str

    def json(self) -> Any:
        return json.loads(self.data)


async def read_sse(
    base: str,
    path: str,
    headers: dict[str, str] | None = None,
    *,
    until: Any = None,
    cookies: dict[str, str] | None = None,
    timeout: float = FEED_TIMEOUT_S,
) -> list[SseEvent]:
    """Read SSE events until the stream ends or ``until(event)`` is true."""
    events: list[SseEvent] = []

    async def run() -> None:
        async with (
            httpx.AsyncClient(base_url=base, timeout=timeout, cookies=cookies) as client,
            client.stream("GET", path, headers=headers or {}) as resp,
        ):
            assert resp.status_code == 200, await resp.aread()
            assert resp.headers["content-type"].startswith("text/event-stream")
            fields: dict[str, str] = {}
            data: list[str] = []
            async for line in resp.aiter_lines():
                if line == "":
                    if data:
                        ev = SseEvent(fields.get("id"), fields.get("event"), "\n".join(data))
                        events.append(ev)
                        if until is not None and until(ev):
                            return
                    fields, data = {}, []
                    continue
                if line.startswith(":"):
                    continue
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "data":
                    data.append(value)
                else:
                    fields[name] = value

    await asyncio.wait_for(run(), timeout)
    return events

"""The naive hub bench/fanout.py measures against: what a careless port looks like.

Per-client JSON encoding, one send per line per client, awaited in a loop inside the
POST handler (so a slow client stalls everyone); SSE through sse-starlette, one event per
line from a per-client asyncio.Queue. Same routes and envelopes as the dashboard's
session feeds; any session id is accepted, the token is not checked.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from sse_starlette import EventSourceResponse


def create_app() -> FastAPI:
    app = FastAPI()
    seq = itertools.count(1)
    sockets: dict[str, set[WebSocket]] = defaultdict(set)
    queues: dict[str, set[asyncio.Queue[dict[str, Any]]]] = defaultdict(set)
    session_of_token: dict[str, str] = {}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/bench/token/{session_id}")
    async def token(session_id: str) -> dict[str, str]:
        session_of_token[session_id] = session_id
        return {"log_token": session_id}

    @app.post("/log", status_code=202)
    async def log(request: Request) -> dict[str, int]:
        session_id = request.headers["authorization"].split()[1]
        body = await request.json()
        for record in body["records"]:
            envelope = {
                "seq": next(seq),
                "session_id": session_id,
                "type": "log",
                "ts": datetime.now(UTC).isoformat(),
                "data": {"level": record.get("level", "info"), "message": record["message"]},
            }
            for queue in queues[session_id]:
                queue.put_nowait(envelope)
            for ws in list(sockets[session_id]):
                try:
                    await ws.send_text(json.dumps([envelope]))
                except Exception:
                    sockets[session_id].discard(ws)
        return {"accepted": len(body["records"])}

    @app.websocket("/api/sessions/{session_id}/ws")
    async def ws(websocket: WebSocket, session_id: str) -> None:
        await websocket.accept()
        sockets[session_id].add(websocket)
        try:
            while True:
                await websocket.receive_text()
        except WebSocketDisconnect:
            pass
        finally:
            sockets[session_id].discard(websocket)

    @app.get("/api/sessions/{session_id}/events")
    async def events(session_id: str) -> EventSourceResponse:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        queues[session_id].add(queue)

        async def stream() -> AsyncIterator[dict[str, Any]]:
            try:
                while True:
                    envelope = await queue.get()
                    yield {
                        "id": str(envelope["seq"]),
                        "event": envelope["type"],
                        "data": json.dumps(envelope),
                    }
            finally:
                queues[session_id].discard(queue)

        return EventSourceResponse(stream())

    return app

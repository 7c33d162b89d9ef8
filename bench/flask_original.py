"""The Flask app of the original kind, for bench/fanout.py's "no degradation" comparison.

A global list of per-client ``queue.Queue``s; ``POST /log`` puts each line on every
queue; the SSE route is a generator ``Response`` with ``text/event-stream``. Served by
gunicorn with the gthread worker (one worker: the clients' list is process memory).
"""

from __future__ import annotations

import itertools
import json
import queue
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

from flask import Flask, Response, request

app = Flask(__name__)
clients: list[queue.Queue[dict[str, object]]] = []
clients_lock = threading.Lock()
seq = itertools.count(1)


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/bench/token/<session_id>")
def token(session_id: str) -> dict[str, str]:
    return {"log_token": session_id}


@app.post("/log")
def log() -> tuple[dict[str, int], int]:
    session_id = request.headers["Authorization"].split()[1]
    records = request.get_json()["records"]
    for record in records:
        envelope = {
            "seq": next(seq),
            "session_id": session_id,
            "type": "log",
            "ts": datetime.now(UTC).isoformat(),
            "data": {"level": record.get("level", "info"), "message": record["message"]},
        }
        with clients_lock:
            for q in clients:
                q.put(envelope)
    return {"accepted": len(records)}, 202


@app.get("/api/sessions/<session_id>/events")
def events(session_id: str) -> Response:
    q: queue.Queue[dict[str, object]] = queue.Queue()
    with clients_lock:
        clients.append(q)

    def stream() -> Iterator[str]:
        try:
            while True:
                envelope = q.get()
                yield f"id: {envelope['seq']}\nevent: log\ndata: {json.dumps(envelope)}\n\n"
        finally:
            with clients_lock:
                clients.remove(q)

    return Response(stream(), mimetype="text/event-stream")

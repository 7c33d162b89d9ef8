"""Live feeds: session WebSocket and SSE routes, the legacy /stream and its /ws twin."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect
from sse_starlette import EventSourceResponse
from starlette.requests import HTTPConnection

from api.deps import WorkspaceDep, client_id
from api.heartbeats import HEARTBEAT_FRAME, Heartbeats
from api.send_deadline import SendDeadlines
from api.sse import END_EVENT, FrameCache
from api.transports import FeedResponse, abort_connection
from dashboard.errors import InvalidInput, NotFound
from dashboard.hub import EventHub, Subscription
from dashboard.workspace import Workspace

router = APIRouter(tags=["streams"])

HEARTBEAT_S = 15  # SSE comment / WebSocket "[]" heartbeat; DESIGN: at least every 15 s
COALESCE_S = 0.002  # a woken viewer waits this long, so a burst goes out as one frame
SEND_DEADLINE_S = 10.0  # a client whose sends block longer is cut off
CLOSE_WAIT_S = 1.0  # how long a cut-off viewer's close frame may take to go out
WS_CLOSE_NORMAL = 1000
WS_CLOSE_POLICY = 1008
WS_CLOSE_TRY_AGAIN = 1013


def stream_position(conn: HTTPConnection) -> int | None:
    """``?since=``, ``?last_event_id=`` or ``Last-Event-ID``: the last seq the client has."""
    # the header wins: EventSource sends the newest position there on every reconnect,
    # while a query string it was opened with stays stale
    raw = (
        conn.headers.get("last-event-id")
        or conn.query_params.get("last_event_id")
        or conn.query_params.get("since")
    )
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or not raw.isascii():
        raise InvalidInput.field("since", "a stream position must be a non-negative integer.")
    return int(raw)


def _subscribe_legacy(
    workspace: Workspace, conn: HTTPConnection, since: int | None
) -> Subscription:
    session_id = conn.query_params.get("session_id")
    if session_id:
        workspace.session(session_id)
        return workspace.hub.subscribe_session(session_id, since)
    client = client_id(conn)
    if client is None:
        raise NotFound(
            "No session_id given and no dashboard_client cookie: open the dashboard page first."
        )
    for record in workspace.sessions.all():
        if record.client_id == client:
            workspace.session(record.session_id)
    return workspace.hub.subscribe_client(client, since)


def _finished(hub: EventHub, session_id: str | None, sub: Subscription) -> bool:
    return session_id is not None and hub.is_terminal(session_id) and not sub.has_pending


async def _sse_events(
    sub: Subscription,
    hub: EventHub,
    frames: FrameCache,
    session_id: str | None,
    *,
    named: bool,
) -> AsyncIterator[bytes]:
    try:
        if _finished(hub, session_id, sub):
            yield END_EVENT
            return
        while True:
            batch = await sub.next_batch(linger=COALESCE_S)
            if sub.overflowed or sub.closed:
                return  # cut off: the client reconnects with Last-Event-ID
            if batch:
                yield frames.sse(batch, session_id, named=named)
            if _finished(hub, session_id, sub):
                if named:
                    yield END_EVENT
                return
    finally:
        sub.close()


def _sse_response(body: AsyncIterator[bytes]) -> EventSourceResponse:
    return FeedResponse(body, ping=HEARTBEAT_S, send_timeout=SEND_DEADLINE_S)


@router.get("/api/sessions/{session_id}/events")
async def session_events(
    session_id: str, request: Request, workspace: WorkspaceDep
) -> EventSourceResponse:
    since = stream_position(request)
    workspace.session(session_id)
    sub = workspace.hub.subscribe_session(session_id, since)
    return _sse_response(
        _sse_events(sub, workspace.hub, request.app.state.frames, session_id, named=True)
    )


@router.get("/stream")
async def legacy_stream(request: Request, workspace: WorkspaceDep) -> EventSourceResponse:
    since = stream_position(request)
    sub = _subscribe_legacy(workspace, request, since)
    return _sse_response(
        _sse_events(sub, workspace.hub, request.app.state.frames, None, named=False)
    )


async def _pump_ws(
    websocket: WebSocket, sub: Subscription, hub: EventHub, session_id: str | None
) -> None:
    """Send batches until the session ends, the client leaves, or it falls too far behind."""
    frames: FrameCache = websocket.app.state.frames
    deadlines: SendDeadlines = websocket.app.state.send_deadlines
    heartbeats: Heartbeats = websocket.app.state.heartbeats
    me = asyncio.current_task()
    assert me is not None

    async def watch_disconnect() -> None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
        sub.interrupt()

    watcher = asyncio.create_task(watch_disconnect())
    code = WS_CLOSE_NORMAL
    heartbeats.sent(sub)  # the accept counts: the first heartbeat is due 15 s from now
    try:
        while True:
            if _finished(hub, session_id, sub):
                break
            batch = await sub.next_batch(linger=COALESCE_S)
            if sub.closed:
                return
            if sub.overflowed:
                code = WS_CLOSE_TRY_AGAIN
                break
            # nothing after a wait: the heartbeat ticker woke us (api/heartbeats.py)
            frame = frames.ws(batch, session_id) if batch else HEARTBEAT_FRAME
            deadlines.begin(me)  # no timer per frame: api/send_deadline.py
            try:
                await websocket.send_text(frame)
                heartbeats.sent(sub)
            except asyncio.CancelledError:
                if not deadlines.expired(me):
                    raise
                me.uncancel()
                code = WS_CLOSE_POLICY
                break
            except (WebSocketDisconnect, RuntimeError, OSError):
                return
            finally:
                deadlines.end(me)
        # a viewer whose sends block cannot take a close frame: reset its socket where the
        # server lets us (uvicorn); elsewhere (Modal's ASGI runtime: no transport, the
        # frames queue in Modal's proxy) queue the close, bounded, and end the input
        if code != WS_CLOSE_POLICY or not abort_connection(websocket.scope):
            with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                try:
                    await asyncio.wait_for(websocket.close(code), CLOSE_WAIT_S)
                except TimeoutError:
                    abort_connection(websocket.scope)  # too slow a reader to take the close
    finally:
        heartbeats.forget(sub)
        sub.close()
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


@router.websocket("/api/sessions/{session_id}/ws")
async def session_ws(websocket: WebSocket, session_id: str) -> None:
    workspace: Workspace = websocket.app.state.workspace
    try:
        since = stream_position(websocket)
        workspace.session(session_id)
    except (NotFound, InvalidInput):
        await websocket.close(WS_CLOSE_POLICY)
        return
    sub = workspace.hub.subscribe_session(session_id, since)
    await websocket.accept()
    # its own task: resuming it does not walk the whole middleware stack on every frame
    await asyncio.create_task(_pump_ws(websocket, sub, workspace.hub, session_id))


@router.websocket("/ws")
async def legacy_ws(websocket: WebSocket) -> None:
    workspace: Workspace = websocket.app.state.workspace
    try:
        since = stream_position(websocket)
        sub = _subscribe_legacy(workspace, websocket, since)
    except (NotFound, InvalidInput):
        await websocket.close(WS_CLOSE_POLICY)
        return
    await websocket.accept()
    await asyncio.create_task(_pump_ws(websocket, sub, workspace.hub, None))

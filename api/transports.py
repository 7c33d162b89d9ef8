"""Dropping a cut-off viewer's socket at once.

A viewer that stops reading is cut off (its backlog overflows or a send passes the
deadline), but ending its connection the ASGI way (a close frame, the end of a response)
needs the socket to drain, which it never will: the server would hold the socket and the
bytes buffered for it until the peer goes away. Where the server exposes the connection's
transport (uvicorn does: the ``send`` it hands the app is a method of an object with a
``transport``), the app keeps it in the scope, and a cut-off viewer's transport is
aborted. Elsewhere nothing is kept and the server's own close applies: under Modal's
ASGI runtime (``modal._runtime.asgi``) ``send`` is a plain function that queues messages
for Modal's proxy, so a cut-off viewer gets its close frame (or the end of its response)
queued within a bound, the app's side of it ends at once (its subscription is gone), and
Modal's proxy ends the client's connection (tests/test_modal_runtime.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import MutableMapping
from typing import Any

from fastapi import FastAPI
from sse_starlette import EventSourceResponse
from sse_starlette.sse import SendTimeoutError
from starlette.types import Receive, Scope, Send

TRANSPORT_KEY = "dashboard.transport"


class DashboardApp(FastAPI):
    """FastAPI that notes each connection's transport (the server's raw ``send``)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            transport = getattr(getattr(send, "__self__", None), "transport", None)
            if callable(getattr(transport, "abort", None)):
                scope[TRANSPORT_KEY] = transport
        await super().__call__(scope, receive, send)


def abort_connection(scope: MutableMapping[str, Any]) -> bool:
    """Drop the connection now, buffered bytes and all (a reset); False if unknown.

    A plain close would leave the kernel holding the unsent bytes for a peer that reads
    nothing; lingering zero seconds makes the close a reset that frees them at once.
    """
    transport = scope.pop(TRANSPORT_KEY, None)
    if transport is None:
        return False
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    return True


END_WAIT_S = 1.0  # how long the end of a cut-off viewer's response may take to go out


class FeedResponse(EventSourceResponse):
    """An SSE response whose viewer is dropped at once when a send passes the deadline.

    Without a transport (Modal's ASGI runtime, whose ``send`` queues messages for Modal's
    proxy), the response is ended the ASGI way instead, within ``END_WAIT_S``: Modal then
    ends the input and closes the client's connection itself.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except* SendTimeoutError:  # the data and the heartbeat sends may both time out
            if abort_connection(scope):
                # let the server see the connection lost before the response "returns
                # unfinished", which it would otherwise log as an error
                await asyncio.sleep(0)
            else:
                end = {"type": "http.response.body", "body": b"", "more_body": False}
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(send(end), END_WAIT_S)

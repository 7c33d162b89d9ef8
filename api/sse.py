"""The SSE and WebSocket wire formats as pure functions (tested byte for byte)."""

from __future__ import annotations

import json

from dashboard.hub import Event, Item, Reset

END_EVENT = b"event: end\ndata: {}\n\n"


def sse_reset_named(reset: Reset) -> bytes:
    return f"event: reset\ndata: {json.dumps({'first_seq': reset.first_seq})}\n\n".encode()


def sse_reset_plain(reset: Reset) -> bytes:
    return f"data: {json.dumps(reset.as_dict())}\n\n".encode()


def sse_batch(batch: list[Item], *, named: bool) -> bytes:
    """One write for a whole batch: session routes name their events, /stream does not."""
    parts: list[bytes] = []
    for item in batch:
        if isinstance(item, Event):
            parts.append(item.sse_named() if named else item.sse_plain())
        else:
            parts.append(sse_reset_named(item) if named else sse_reset_plain(item))
    return b"".join(parts)


def ws_frame(batch: list[Item]) -> str:
    """A WebSocket text frame: a JSON array of the batch's envelopes."""
    return (
        "["
        + ",".join(
            item.encoded if isinstance(item, Event) else json.dumps(item.as_dict())
            for item in batch
        )
        + "]"
    )

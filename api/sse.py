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


FrameKey = tuple[str, str, int, int, int]


class FrameCache:
    """Frames built lately, by batch: viewers of one session woken by the same burst get
    the same batch, so its frame is built once for all of them.

    Only batches of one session's events are cached: a viewer of a session receives every
    event of it after its position, so a batch is fixed by its session, its first and last
    seq and its length. A batch that starts with a ``reset`` (the only place the hub puts
    one: ahead of a replay) is built each time.
    """

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._frames: dict[FrameKey, str | bytes] = {}

    def _key(self, kind: str, session_id: str | None, batch: list[Item]) -> FrameKey | None:
        first, last = batch[0], batch[-1]
        if session_id is None or not isinstance(first, Event) or not isinstance(last, Event):
            return None
        return (kind, session_id, first.seq, last.seq, len(batch))

    def _remember(self, key: FrameKey, frame: str | bytes) -> None:
        if len(self._frames) >= self._size:
            del self._frames[next(iter(self._frames))]
        self._frames[key] = frame

    def ws(self, batch: list[Item], session_id: str | None) -> str:
        key = self._key("ws", session_id, batch)
        frame = self._frames.get(key) if key else None
        if not isinstance(frame, str):
            frame = ws_frame(batch)
            if key:
                self._remember(key, frame)
        return frame

    def sse(self, batch: list[Item], session_id: str | None, *, named: bool) -> bytes:
        key = self._key("sse" if named else "sse-plain", session_id, batch)
        frame = self._frames.get(key) if key else None
        if not isinstance(frame, bytes):
            frame = sse_batch(batch, named=named)
            if key:
                self._remember(key, frame)
        return frame

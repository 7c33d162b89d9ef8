"""The event hub: one ``seq`` for the whole process, encode once, fan out without waiting.

``publish`` is synchronous and never awaits a client: it encodes the envelope once,
appends it to the session's bounded history and to each subscriber's pending list, and
wakes the subscriber. Each subscriber drains everything pending in one batch at its
own pace (one WebSocket frame, one SSE write). A subscriber whose backlog passes
``max_backlog`` is marked overflowed and cut off by its transport; it resumes from its
last seq. The backlog bound is independent of the retained history.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from heapq import merge
from typing import Any, Protocol

DEFAULT_MAX_BACKLOG = 20_000  # events a subscriber may fall behind before it is cut off
SEQ_BLOCK = 100_000  # seqs reserved at a time, so a restart never reuses one
TERMINAL_STATES = frozenset({"succeeded", "failed"})


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Event:
    """One envelope, encoded once; its SSE framings are built lazily, once each."""

    __slots__ = ("_sse_named", "_sse_plain", "encoded", "seq", "session_id", "terminal", "type")

    def __init__(self, seq: int, session_id: str, type_: str, encoded: str, terminal: bool):
        self.seq = seq
        self.session_id = session_id
        self.type = type_
        self.encoded = encoded
        self.terminal = terminal
        self._sse_named: bytes | None = None
        self._sse_plain: bytes | None = None

    def sse_named(self) -> bytes:
        if self._sse_named is None:
            self._sse_named = (
                f"id: {self.seq}\nevent: {self.type}\ndata: {self.encoded}\n\n".encode()
            )
        return self._sse_named

    def sse_plain(self) -> bytes:
        if self._sse_plain is None:
            self._sse_plain = f"id: {self.seq}\ndata: {self.encoded}\n\n".encode()
        return self._sse_plain


@dataclass(frozen=True)
class Reset:
    """The subscriber's position fell out of the retained history; replay starts at first_seq."""

    first_seq: int

    def as_dict(self) -> dict[str, Any]:
        return {"type": "reset", "first_seq": self.first_seq}


Item = Event | Reset


class HistoryArchive(Protocol):
    """Where sessions' histories go (``dashboard/event_archive.py``)."""

    def has(self, session_id: str) -> bool: ...

    def write(self, session_id: str, events: Iterable[Event]) -> None: ...

    def append(self, session_id: str, events: Iterable[Event]) -> None: ...

    def read(self, session_id: str) -> list[Event]: ...


@dataclass
class _SessionFeed:
    session_id: str
    history: deque[Event]
    client_id: str | None = None
    evicted_upto: int = 0  # highest seq dropped from history
    terminal: bool = False
    ended_at: float | None = None  # loop time of the terminal status
    archived: bool = False  # history lives in the archive, not in memory
    subscribers: set[Subscription] = field(default_factory=set)


class Subscription:
    """One viewer's position in the hub. Drain it with ``next_batch``; always ``close`` it."""

    def __init__(self, hub: EventHub, max_backlog: int) -> None:
        self._hub = hub
        self._max_backlog = max_backlog
        self._pending: list[Item] = []
        self._wake = asyncio.Event()
        self.overflowed = False
        self.closed = False
        self.last_seq = 0

    def _push(self, events: list[Event]) -> None:
        if self.overflowed:
            return
        if len(self._pending) + len(events) > self._max_backlog:
            self.overflowed = True
            self._pending.clear()
        else:
            self._pending.extend(events)
        self._wake.set()

    def _preload(self, items: Iterable[Item]) -> None:
        self._pending.extend(items)
        if self._pending:
            self._wake.set()

    async def next_batch(self, timeout: float | None = None, linger: float = 0.0) -> list[Item]:
        """Everything pending, waiting for at least one item (``[]`` on timeout or overflow).

        With ``linger``, a subscriber that had to wait lets events published just after the
        first one join the same batch: one frame (one socket write) instead of several.
        """
        if not self._pending and not self.overflowed and not self.closed:
            self._wake.clear()
            if timeout is None:
                await self._wake.wait()
            else:
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout)
                except TimeoutError:
                    return []
            if linger > 0 and not self.closed:
                await asyncio.sleep(linger)
        batch, self._pending = self._pending, []
        for item in reversed(batch):
            if isinstance(item, Event):
                self.last_seq = item.seq
                break
        return batch

    @property
    def has_pending(self) -> bool:
        return bool(self._pending)

    def nudge(self) -> None:
        """Wake a waiting ``next_batch`` with nothing (``[]``): time for a heartbeat."""
        self._wake.set()

    def interrupt(self) -> None:
        """Wake a waiting ``next_batch`` for good (the viewer went away)."""
        self.closed = True
        self._wake.set()

    def close(self) -> None:
        if self in self._hub._subscription_keys:
            self._hub._unsubscribe(self)
        self.closed = True


class EventHub:
    """In-memory fan-out of session events with bounded per-session history."""

    def __init__(
        self,
        history: int,
        max_backlog: int = DEFAULT_MAX_BACKLOG,
        *,
        seq_start: int = 0,
        reserve: Callable[[int], None] | None = None,
        archive: HistoryArchive | None = None,
    ) -> None:
        """``reserve(n)`` is called (rarely) before any seq up to ``n`` is used; a caller
        that stores ``n`` durably and passes it back as ``seq_start`` after a restart
        keeps ``seq`` increasing across restarts."""
        self._history_limit = history
        self._max_backlog = max_backlog
        self._seq = seq_start
        self._reserve = reserve
        self._archive = archive
        self._reserved = seq_start
        self._take_block()
        self._feeds: dict[str, _SessionFeed] = {}
        self._client_sessions: dict[str, list[str]] = {}
        self._client_subscribers: dict[str, set[Subscription]] = {}
        self._subscription_keys: dict[Subscription, tuple[str, str]] = {}
        self._unsaved: dict[str, list[Event]] = {}  # published, not yet in the archive

    def _take_block(self) -> None:
        self._reserved = self._seq + SEQ_BLOCK
        if self._reserve is not None:
            self._reserve(self._reserved)

    @property
    def last_seq(self) -> int:
        return self._seq

    @property
    def subscriber_count(self) -> int:
        return len(self._subscription_keys)

    def _feed(self, session_id: str) -> _SessionFeed:
        feed = self._feeds.get(session_id)
        if feed is None:
            feed = _SessionFeed(session_id=session_id, history=deque())
            self._feeds[session_id] = feed
        return feed

    def knows(self, session_id: str) -> bool:
        return session_id in self._feeds

    def register_session(self, session_id: str, client_id: str | None = None) -> None:
        feed = self._feed(session_id)
        if client_id and feed.client_id is None:
            feed.client_id = client_id
            self._client_sessions.setdefault(client_id, []).append(session_id)

    def is_terminal(self, session_id: str) -> bool:
        feed = self._feeds.get(session_id)
        return feed is not None and feed.terminal

    def publish(self, session_id: str, type_: str, data: dict[str, Any]) -> Event:
        """Record one event and hand it to every interested subscriber. Never awaits."""
        return self.publish_many(session_id, [(type_, data)])[0]

    def publish_many(
        self, session_id: str, items: Sequence[tuple[str, dict[str, Any]]]
    ) -> list[Event]:
        """Record several events of one session (a batch of log lines) in order.

        Each subscriber is handed the whole batch at once, so a POST of 50 lines costs one
        list extension and one wake-up per subscriber, not 50.
        """
        feed = self._feed(session_id)
        if feed.archived:
            self._restore(feed)
        ts = utc_now_iso()
        events: list[Event] = []
        for type_, data in items:
            self._seq += 1
            seq = self._seq
            if seq >= self._reserved:
                self._take_block()
            envelope = {"seq": seq, "session_id": session_id, "type": type_, "ts": ts, "data": data}
            terminal = type_ == "status" and data.get("state") in TERMINAL_STATES
            encoded = json.dumps(envelope, separators=(",", ":"))
            events.append(Event(seq, session_id, type_, encoded, terminal))
            if terminal:
                feed.terminal = True
                feed.ended_at = time.monotonic()
            elif type_ == "status":
                feed.terminal = False
                feed.ended_at = None
        history = feed.history
        history.extend(events)
        if self._archive is not None:
            self._unsaved.setdefault(session_id, []).extend(events)
        while len(history) > self._history_limit:
            feed.evicted_upto = history.popleft().seq
        for sub in feed.subscribers:
            sub._push(events)
        if feed.client_id is not None:
            for sub in self._client_subscribers.get(feed.client_id, ()):
                sub._push(events)
        return events

    # -- finished sessions move to the archive -------------------------------------------
    def _history(self, feed: _SessionFeed) -> Sequence[Event]:
        if feed.archived and self._archive is not None:
            return self._archive.read(feed.session_id)
        return feed.history

    def _restore(self, feed: _SessionFeed) -> None:
        history = deque(self._history(feed))
        while len(history) > self._history_limit:
            feed.evicted_upto = history.popleft().seq
        feed.history = history
        feed.archived = False

    def flush_history(self) -> int:
        """Append every event published since the last call to its session's archive.

        Called about once a second (and at shutdown), so each session's archive is its
        whole history, written as it happens: a restart, even a crash, replays it.
        Returns how many events were written.
        """
        if self._archive is None or not self._unsaved:
            return 0
        unsaved, self._unsaved = self._unsaved, {}
        written = 0
        for session_id, events in unsaved.items():
            try:
                self._archive.append(session_id, events)
            except OSError:
                # keep them (in order, before newer ones) for the next flush
                later = self._unsaved.get(session_id, [])
                self._unsaved[session_id] = events + later
                raise
            written += len(events)
        return written

    def archive_finished(self, idle_s: float, *, followed_too: bool = False) -> int:
        """Drop from memory the histories of sessions ended ``idle_s`` ago and followed by
        nobody (or, with ``followed_too``, by anyone: at shutdown); their archive already
        holds them (``flush_history``)."""
        if self._archive is None:
            return 0
        self.flush_history()
        cutoff = time.monotonic() - idle_s
        moved = 0
        for feed in self._feeds.values():
            ended = feed.ended_at
            if feed.archived or ended is None or ended > cutoff:
                continue
            if feed.subscribers and not followed_too:
                continue
            if not self._archive.has(feed.session_id):  # its history predates the archive
                self._archive.write(feed.session_id, feed.history)
            feed.history = deque()
            feed.archived = True
            moved += 1
        return moved

    def adopt_archive(self, session_id: str) -> bool:
        """After a restart: serve a session's replay from its archive, if any."""
        if self._archive is None or not self._archive.has(session_id):
            return False
        feed = self._feed(session_id)
        feed.archived = True
        history = self._archive.read(session_id)
        feed.terminal = bool(history) and history[-1].terminal
        return True

    def _replay(self, feeds: list[_SessionFeed], since: int | None) -> Iterator[Item]:
        after = since or 0
        evicted = max((f.evicted_upto for f in feeds), default=0)
        histories = [self._history(f) for f in feeds]
        if since is not None and after < evicted:
            first = min((h[0].seq for h in histories if h), default=self._seq + 1)
            yield Reset(first)
        source: Iterable[Event] = (
            histories[0] if len(histories) == 1 else merge(*histories, key=lambda e: e.seq)
        )
        for event in source:
            if event.seq > after:
                yield event

    def subscribe_session(self, session_id: str, since: int | None = None) -> Subscription:
        """Follow one session: its retained events after ``since``, then live ones."""
        feed = self._feed(session_id)
        sub = Subscription(self, self._max_backlog)
        sub._preload(self._replay([feed], since))
        feed.subscribers.add(sub)
        self._subscription_keys[sub] = ("session", session_id)
        return sub

    def subscribe_client(self, client_id: str, since: int | None = None) -> Subscription:
        """Follow every session started by one browser, including ones started later."""
        feeds = [self._feeds[s] for s in self._client_sessions.get(client_id, [])]
        sub = Subscription(self, self._max_backlog)
        if feeds:
            sub._preload(self._replay(feeds, since))
        self._client_subscribers.setdefault(client_id, set()).add(sub)
        self._subscription_keys[sub] = ("client", client_id)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        key = self._subscription_keys.pop(sub, None)
        if key is None:
            return
        kind, name = key
        if kind == "session":
            feed = self._feeds.get(name)
            if feed is not None:
                feed.subscribers.discard(sub)
        else:
            subs = self._client_subscribers.get(name)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._client_subscribers[name]

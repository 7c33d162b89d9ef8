"""Sessions' event histories on disk: ``<data>/events/<session_id>.jsonl``.

Each event is appended (one encoded envelope per line, as sent) about a second after it
is published (``EventHub.flush_history``), so the archive is the session's whole history
while it runs; on Modal each flush is followed by a commit of the staging volume. Once a
session has ended and nobody is following it, its history is dropped from memory, so the
hub's memory does not grow with the number of finished sessions. A later replay
(``?since=`` / ``Last-Event-ID``) reads it back: same events, same seqs, also after a
restart or a crash (up to the last flush that was committed).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from dashboard.hub import TERMINAL_STATES, Event


class EventArchive:
    def __init__(self, root: Path) -> None:
        self._root = root
        self._checked: set[str] = set()  # archives whose end this process has looked at
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, session_id: str) -> Path:
        return self._root / f"{session_id}.jsonl"

    def has(self, session_id: str) -> bool:
        return self._path(session_id).is_file()

    def write(self, session_id: str, events: Iterable[Event]) -> None:
        path = self._path(session_id)
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            for event in events:
                fh.write(event.encoded)
                fh.write("\n")
        os.replace(tmp, path)

    def append(self, session_id: str, events: Iterable[Event]) -> None:
        lines = "".join(f"{event.encoded}\n" for event in events).encode()
        if not lines:
            return
        with open(self._path(session_id), "a+b") as fh:
            if session_id not in self._checked:  # a crash may have cut the last line
                size = fh.seek(0, os.SEEK_END)
                if size:
                    fh.seek(size - 1)
                    if fh.read(1) != b"\n":
                        lines = b"\n" + lines
                self._checked.add(session_id)
            fh.write(lines)  # "a": always at the end

    def read(self, session_id: str) -> list[Event]:
        events: list[Event] = []
        try:
            with open(self._path(session_id), encoding="utf-8") as fh:
                for line in fh:
                    line = line.rstrip("\n")
                    if not line:
                        continue
                    try:
                        envelope = json.loads(line)
                    except ValueError:  # a line cut off by a crash: the rest stands
                        continue
                    kind = envelope["type"]
                    state = envelope["data"].get("state") if kind == "status" else None
                    events.append(
                        Event(envelope["seq"], session_id, kind, line, state in TERMINAL_STATES)
                    )
        except FileNotFoundError:
            pass
        return events

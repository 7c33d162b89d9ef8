"""Finished sessions' event histories, moved out of memory onto disk.

Once a session has ended and nobody is following it, its history is written to
``<data>/events/<session_id>.jsonl`` (one encoded envelope per line, as sent) and dropped
from memory, so the hub's memory does not grow with the number of finished sessions.
A later replay (``?since=`` / ``Last-Event-ID``) reads it back: same events, same seqs.
Archives also outlive a restart, so a finished session can still be replayed after one.
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

    def read(self, session_id: str) -> list[Event]:
        events: list[Event] = []
        try:
            with open(self._path(session_id), encoding="utf-8") as fh:
                for line in fh:
                    line = line.rstrip("\n")
                    if not line:
                        continue
                    envelope = json.loads(line)
                    kind = envelope["type"]
                    state = envelope["data"].get("state") if kind == "status" else None
                    events.append(
                        Event(envelope["seq"], session_id, kind, line, state in TERMINAL_STATES)
                    )
        except FileNotFoundError:
            pass
        return events

"""Upload sessions: ids, volume names, and their on-disk records (state survives restarts)."""

from __future__ import annotations

import re
import secrets
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dashboard.context import ExperimentContext
from dashboard.errors import NotFound
from dashboard.storage import read_json, write_json_atomic

SESSION_ID = re.compile(r"^[0-9a-f]{32}$")
VOLUME_PREFIX = "dataset-volume-"
STATES = ("created", "uploading", "queued", "running", "succeeded", "failed")
TERMINAL = frozenset({"succeeded", "failed"})


def new_session_id() -> str:
    return uuid.uuid4().hex


def volume_name(session_id: str) -> str:
    return f"{VOLUME_PREFIX}{session_id}"


def check_session_id(raw: str) -> str:
    """A well-formed id or a 404: anything else in a URL is never used as a path."""
    if not SESSION_ID.fullmatch(raw):
        raise NotFound("There is no upload session with that id.")
    return raw


@dataclass
class RunRecord:
    state: str
    error: str | None = None
    started: float | None = None
    finished: float | None = None
    call_id: str | None = None  # a detached run's handle (Modal FunctionCall id), never public

    def public(self) -> dict[str, Any]:
        out: dict[str, Any] = {"state": self.state}
        if self.error:
            out["error"] = self.error
        return out


@dataclass
class SessionRecord:
    session_id: str
    context: dict[str, Any]
    log_token: str
    client_id: str | None = None
    state: str = "created"
    created: float = field(default_factory=time.time)
    run: RunRecord | None = None
    summary: dict[str, Any] | None = None
    # the file list, kept here once the run starts and the upload records are cleaned up
    files: list[dict[str, Any]] | None = None

    @property
    def volume_name(self) -> str:
        return volume_name(self.session_id)

    @property
    def experiment_context(self) -> ExperimentContext:
        return ExperimentContext.from_json(self.context)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> SessionRecord:
        run = raw.get("run")
        return cls(**{**raw, "run": RunRecord(**run) if run else None})


class SessionStore:
    """Session records under ``<data>/sessions/<id>.json``, cached in memory."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._cache: dict[str, SessionRecord] = {}
        self._scanned = False  # all records on disk are in the cache
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, session_id: str) -> Path:
        return self._root / f"{session_id}.json"

    def create(self, context: ExperimentContext, client_id: str | None) -> SessionRecord:
        record = SessionRecord(
            session_id=new_session_id(),
            context=context.to_json(),
            log_token=secrets.token_urlsafe(32),
            client_id=client_id,
        )
        self.save(record)
        return record

    def save(self, record: SessionRecord) -> None:
        write_json_atomic(self._path(record.session_id), record.to_json())
        self._cache[record.session_id] = record

    def get(self, session_id: str) -> SessionRecord:
        check_session_id(session_id)
        record = self._cache.get(session_id)
        if record is not None:
            return record
        path = self._path(session_id)
        if not path.is_file():
            raise NotFound("There is no upload session with that id.")
        record = SessionRecord.from_json(read_json(path))
        self._cache[session_id] = record
        return record

    def all(self) -> list[SessionRecord]:
        """Every session. The folder is listed once per process: sessions created after
        that are cached by ``save``, and this store is their only writer."""
        if not self._scanned:
            for path in self._root.glob("*.json"):
                sid = path.stem
                if SESSION_ID.fullmatch(sid) and sid not in self._cache:
                    self._cache[sid] = SessionRecord.from_json(read_json(path))
            self._scanned = True
        return list(self._cache.values())

    def of_client(self, client_id: str | None, limit: int) -> list[SessionRecord]:
        """The sessions created with this client id, newest first (none for no id)."""
        if not client_id:
            return []
        mine = [r for r in self.all() if r.client_id == client_id]
        mine.sort(key=lambda r: (r.created, r.session_id), reverse=True)
        return mine[:limit]

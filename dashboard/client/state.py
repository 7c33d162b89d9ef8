"""The command-line client's resume state: which session an upload command belongs to.

A small JSON file maps a key made of (server URL, the files' absolute paths, sizes and
mtimes, a hash of the experiment context) to the session it created and the tus upload
URL of every file, so re-running an interrupted ``upload`` continues where it stopped.
Location: ``$DASHBOARD_CLIENT_STATE``, else ``$XDG_CACHE_HOME/dataset-dashboard/uploads.json``
(``~/.cache/dataset-dashboard/uploads.json``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STATE_ENV = "DASHBOARD_CLIENT_STATE"
STATE_VERSION = 1
MAX_AGE_S = 30 * 24 * 3600  # entries untouched for this long are forgotten


def default_state_path(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    explicit = env.get(STATE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    cache = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "dataset-dashboard" / "uploads.json"


def state_key(url: str, files: Sequence[tuple[str, int, int]], context: Any) -> str:
    """A stable key: server URL + sorted (absolute path, size, mtime_ns) + context hash."""
    context_hash = hashlib.sha256(
        json.dumps(context, sort_keys=True, ensure_ascii=False).encode()
    ).hexdigest()
    material = json.dumps(
        {"url": url.rstrip("/"), "files": sorted(files), "context": context_hash},
        separators=(",", ":"),
    )
    return hashlib.sha256(material.encode()).hexdigest()


@dataclass
class StateEntry:
    """One upload command's session and the upload URL of each of its files."""

    url: str
    session_id: str
    links: dict[str, str]
    uploads: dict[str, str] = field(default_factory=dict)
    run_started: bool = False
    updated: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "session_id": self.session_id,
            "links": self.links,
            "uploads": self.uploads,
            "run_started": self.run_started,
            "updated": self.updated,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> StateEntry | None:
        try:
            return cls(
                url=str(raw["url"]),
                session_id=str(raw["session_id"]),
                links={str(k): str(v) for k, v in dict(raw.get("links") or {}).items()},
                uploads={str(k): str(v) for k, v in dict(raw.get("uploads") or {}).items()},
                run_started=bool(raw.get("run_started", False)),
                updated=float(raw.get("updated", time.time())),
            )
        except (KeyError, TypeError, ValueError):
            return None


class StateStore:
    """Read-modify-write of the state file, atomic (temp file + rename), locked if possible."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # not POSIX: last writer wins
            yield
            return
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _read(self) -> dict[str, Any]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        entries = raw.get("entries") if isinstance(raw, dict) else None
        return entries if isinstance(entries, dict) else {}

    def _write(self, entries: dict[str, Any]) -> None:
        now = time.time()
        kept = {
            k: v
            for k, v in entries.items()
            if isinstance(v, dict) and now - float(v.get("updated", now)) < MAX_AGE_S
        }
        body = json.dumps({"version": STATE_VERSION, "entries": kept}, indent=1, sort_keys=True)
        fd, tmp = tempfile.mkstemp(prefix=".uploads-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(body)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def get(self, key: str) -> StateEntry | None:
        raw = self._read().get(key)
        return StateEntry.from_json(raw) if isinstance(raw, dict) else None

    def put(self, key: str, entry: StateEntry) -> None:
        entry.updated = time.time()
        with self._locked():
            entries = self._read()
            entries[key] = entry.to_json()
            self._write(entries)

    def drop(self, key: str) -> None:
        with self._locked():
            entries = self._read()
            if entries.pop(key, None) is not None:
                self._write(entries)

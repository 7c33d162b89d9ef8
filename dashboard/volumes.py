"""Session volumes: the interface, and the local one (a folder per volume).

Layout of every volume: ``context.json``, ``data/<relative path>``, ``results/``.
The Modal implementation (``dashboard_modal/volumes.py``) satisfies the same protocol.
Volumes are never cleaned up automatically.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any, Protocol

from dashboard.errors import Conflict
from dashboard.paths import clean_relative_path, resolve_inside
from dashboard.sessions import volume_name
from dashboard.storage import fsync_dir

CONTEXT_FILE = "context.json"
DATA_DIR = "data"
RESULTS_DIR = "results"


class VolumeStore(Protocol):
    """Where a session's files live once they are complete."""

    async def create(self, session_id: str, context: dict[str, Any]) -> None:
        """Create the session's volume with its ``context.json``, ``data/`` and ``results/``."""

    async def publish(self, session_id: str, relative: str, staged: Path) -> None:
        """Move a complete staged file into ``data/<relative>``; Conflict if it exists."""

    async def has_file(self, session_id: str, relative: str) -> bool:
        """Whether ``data/<relative>`` exists in the session's volume."""

    async def artifacts(self, session_id: str) -> list[str]:
        """Paths (relative to the volume) of what the agent wrote under ``results/``."""


class LocalVolumeStore:
    """Volumes as folders: ``<root>/dataset-volume-<id>/``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path(self, session_id: str) -> Path:
        return self.root / volume_name(session_id)

    async def create(self, session_id: str, context: dict[str, Any]) -> None:
        await asyncio.to_thread(self._create, session_id, context)

    def _create(self, session_id: str, context: dict[str, Any]) -> None:
        volume = self.path(session_id)
        (volume / DATA_DIR).mkdir(parents=True, exist_ok=True)
        (volume / RESULTS_DIR).mkdir(exist_ok=True)
        tmp = volume / f".{CONTEXT_FILE}.tmp"
        tmp.write_text(json.dumps(context, ensure_ascii=False, indent=2), encoding="utf-8")
        os.replace(tmp, volume / CONTEXT_FILE)

    async def publish(self, session_id: str, relative: str, staged: Path) -> None:
        await asyncio.to_thread(self._publish, session_id, relative, staged)

    def _publish(self, session_id: str, relative: str, staged: Path) -> None:
        relative = clean_relative_path(relative)
        data = self.path(session_id) / DATA_DIR
        target = resolve_inside(data, relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        resolve_inside(data, relative)  # re-check: no symlink appeared while creating parents
        if target.exists():
            raise Conflict(f"A file named {relative!r} is already in this session.")
        try:
            os.replace(staged, target)
        except OSError:
            # the staging area may sit on another filesystem: copy, then rename in place
            tmp = target.with_name(f".{target.name}.partial")
            shutil.copyfile(staged, tmp)
            os.replace(tmp, target)
            staged.unlink()
        fsync_dir(target.parent)

    async def has_file(self, session_id: str, relative: str) -> bool:
        relative = clean_relative_path(relative)
        return resolve_inside(self.path(session_id) / DATA_DIR, relative).exists()

    async def artifacts(self, session_id: str) -> list[str]:
        results = self.path(session_id) / RESULTS_DIR
        if not results.is_dir():
            return []
        volume = self.path(session_id)
        return sorted(p.relative_to(volume).as_posix() for p in results.rglob("*") if p.is_file())

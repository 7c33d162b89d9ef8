"""Session volumes: the interface, and the local one (a folder per volume).

Layout of every volume: ``context.json``, ``data/<relative path>``, ``results/``.
The Modal implementation (``dashboard_modal/volumes.py``) satisfies the same protocol.
Volumes are never cleaned up automatically.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import json
import os
import shutil
import stat
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

from dashboard.artifacts import READ_CHUNK, Artifact, ArtifactReader, not_found
from dashboard.errors import Conflict
from dashboard.paths import clean_relative_path, resolve_inside
from dashboard.sessions import volume_name

CONTEXT_FILE = "context.json"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY
DATA_DIR = "data"
RESULTS_DIR = "results"


HASH_BLOCK = 4 * 1024 * 1024


def file_sha256(path: Path) -> str:
    """The file's sha256 (hex), read in blocks (blocking: call it in a thread)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def file_matches(path: Path, size: int, sha256: str) -> bool:
    """Whether the regular file at ``path`` (not a link) has this size and sha256."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(info.st_mode) or info.st_size != size:
        return False
    return file_sha256(path) == sha256


def _exists(name: str, dir_fd: int) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _copy_into(source: Path, name: str, dir_fd: int) -> None:
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644, dir_fd=dir_fd)
    with open(source, "rb") as src, os.fdopen(fd, "wb") as dst:
        shutil.copyfileobj(src, dst, 1024 * 1024)
        dst.flush()
        os.fsync(dst.fileno())


class VolumeStore(Protocol):
    """Where a session's files live once they are complete."""

    async def create(self, session_id: str, context: dict[str, Any]) -> None:
        """Create the session's volume with its ``context.json``, ``data/`` and ``results/``."""

    async def publish(self, session_id: str, relative: str, staged: Path) -> None:
        """Move a complete staged file into ``data/<relative>``; Conflict if it exists."""

    async def has_file(self, session_id: str, relative: str) -> bool:
        """Whether ``data/<relative>`` exists in the session's volume."""

    async def holds(self, session_id: str, relative: str, size: int, sha256: str) -> bool:
        """Whether ``data/<relative>`` is exactly these bytes (size, then sha256 hex).

        What makes a publish idempotent: a crash after the file reached the volume but
        before its upload was marked done is completed by this check, never refused.
        """

    async def artifacts(self, session_id: str) -> list[str]:
        """Paths (relative to the volume) of what the agent wrote under ``results/``."""

    async def checkpoint(self) -> None:
        """Make the server's own files (the data dir: records, histories) outlive a crash.

        Locally they are on disk already; on Modal the staging volume is committed.
        Never raises: a failed checkpoint is caught up by the next one.
        """

    async def artifact_files(self, session_id: str) -> list[Artifact]:
        """The regular files under ``results/`` (sorted by path; no dot-files, no links)."""

    async def open_artifact(self, session_id: str, path: str) -> ArtifactReader:
        """Open ``results/<path>`` (already cleaned) for reading; NotFound if it is not a
        regular file there (a symlink, a folder, missing)."""


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
        """Walk ``data/`` one folder at a time by descriptor, never following a symlink.

        Relative names (``openat``-style) keep every path the rules allow storable, however
        deep the volume sits (an absolute path may pass the OS's 4096-byte limit); a link or
        a file where a folder should be is refused, not followed or crashed on.
        """
        relative = clean_relative_path(relative)
        *folders, name = relative.split("/")
        dir_fd = os.open(self.path(session_id) / DATA_DIR, _DIR_FLAGS)
        try:
            for folder in folders:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(folder, 0o755, dir_fd=dir_fd)
                try:
                    child = os.open(folder, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=dir_fd)
                except OSError as exc:  # ELOOP: a symlink; ENOTDIR: a file named like the folder
                    raise Conflict(
                        f"{relative!r} cannot be stored: {folder!r} in it is not a folder."
                    ) from exc
                os.close(dir_fd)
                dir_fd = child
            if _exists(name, dir_fd):
                raise Conflict(f"A file named {relative!r} is already in this session.")
            try:
                os.replace(staged, name, dst_dir_fd=dir_fd)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                # the staging area sits on another filesystem: copy, then rename in place
                tmp = f".{uuid.uuid4().hex}.partial"
                _copy_into(staged, tmp, dir_fd)
                os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
                staged.unlink()
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    async def has_file(self, session_id: str, relative: str) -> bool:
        relative = clean_relative_path(relative)
        return resolve_inside(self.path(session_id) / DATA_DIR, relative).exists()

    async def holds(self, session_id: str, relative: str, size: int, sha256: str) -> bool:
        target = resolve_inside(self.path(session_id) / DATA_DIR, clean_relative_path(relative))
        return await asyncio.to_thread(file_matches, target, size, sha256)

    async def artifacts(self, session_id: str) -> list[str]:
        return [a.volume_path for a in await self.artifact_files(session_id)]

    async def artifact_files(self, session_id: str) -> list[Artifact]:
        return await asyncio.to_thread(self._artifact_files, session_id)

    def _open_results(self, session_id: str) -> int | None:
        """A descriptor of ``results/`` itself, never through a symlink."""
        try:
            volume_fd = os.open(self.path(session_id), _DIR_FLAGS)
        except OSError:
            return None
        try:
            return os.open(RESULTS_DIR, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=volume_fd)
        except OSError:
            return None
        finally:
            os.close(volume_fd)

    def _artifact_files(self, session_id: str) -> list[Artifact]:
        """Walk ``results/`` by descriptor (``fwalk``, links not followed); keep regular
        files with one link, skip dot-files and dot-folders (temporary files)."""
        results_fd = self._open_results(session_id)
        if results_fd is None:
            return []
        found: list[Artifact] = []
        try:
            for top, dirs, files, dir_fd in os.fwalk(".", dir_fd=results_fd):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                prefix = "" if top == "." else top[2:] + "/"
                for name in files:
                    if name.startswith("."):
                        continue
                    try:
                        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                    except OSError:
                        continue
                    if _is_servable(info):
                        found.append(Artifact(prefix + name, info.st_size, info.st_mtime))
        finally:
            os.close(results_fd)
        found.sort(key=lambda a: a.path)
        return found

    async def open_artifact(self, session_id: str, path: str) -> ArtifactReader:
        return await asyncio.to_thread(self._open_artifact, session_id, path)

    def _open_artifact(self, session_id: str, path: str) -> LocalArtifactReader:
        """Walk to the file one folder at a time with ``O_NOFOLLOW``: a symlink anywhere
        (into ``data/``, out of the volume, or ``results/`` itself) is a 404, as are a
        FIFO, a device, a folder and a hard link (a second name of another file)."""
        *folders, name = path.split("/")
        if any(segment.startswith(".") for segment in path.split("/")):
            raise not_found(path)  # temporary files are not artifacts (nor "..")
        results_fd = self._open_results(session_id)
        if results_fd is None:
            raise not_found(path)
        dir_fd = results_fd
        try:
            for folder in folders:
                try:
                    child = os.open(folder, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=dir_fd)
                except OSError as exc:
                    raise not_found(path) from exc
                os.close(dir_fd)
                dir_fd = child
            try:
                fd = os.open(
                    name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd
                )
            except OSError as exc:
                raise not_found(path) from exc
        finally:
            os.close(dir_fd)
        info = os.fstat(fd)
        if not _is_servable(info):
            os.close(fd)
            raise not_found(path)
        return LocalArtifactReader(fd, Artifact(path, info.st_size, info.st_mtime))

    async def checkpoint(self) -> None:
        """Nothing to do: the data dir is a local folder (records are written atomically)."""


def _is_servable(info: os.stat_result) -> bool:
    return stat.S_ISREG(info.st_mode) and info.st_nlink == 1


class LocalArtifactReader:
    """An open descriptor: every read is ``pread`` on it (the file opened, not a path)."""

    def __init__(self, fd: int, artifact: Artifact) -> None:
        self._fd: int | None = fd
        self._artifact = artifact

    @property
    def artifact(self) -> Artifact:
        return self._artifact

    async def chunks(self, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        stop = self._artifact.size if end is None else end
        position = start
        while position < stop:
            fd = self._fd
            if fd is None:
                return
            data = await asyncio.to_thread(os.pread, fd, min(READ_CHUNK, stop - position), position)
            if not data:  # truncated since it was opened
                return
            position += len(data)
            yield data

    async def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

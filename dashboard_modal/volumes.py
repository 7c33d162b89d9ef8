"""Session volumes on Modal: the same ``VolumeStore`` interface as ``LocalVolumeStore``.

Each session gets the Modal Volume ``dataset-volume-{session_id}`` (created on first use).
The web container never mounts these volumes: it writes to them with ``batch_upload``,
which stores the files and commits them in one server-side step, so a volume changes
exactly at two checkpoints: the context is written (``create``) and a file is complete
(``publish``). Partial uploads never reach a session volume; they live in the staging
area (the staging volume mounted in the web function, named by ``staging_volume``), which
``checkpoint()`` commits: when a session is created, once an upload is marked done after
its publish, when a run starts, and after the event histories are flushed (about once a
second while events flow), never per chunk (Modal also commits it in the background and
when the container stops). ``holds()`` reads a stored file back to compare its size and
sha256, which makes a publish interrupted by a crash completable.

Layout, as locally: ``context.json``, ``data/<relative path>``, ``results/``. A Modal
Volume has no empty directories (``batch_upload`` carries files only), so ``data/`` and
``results/`` appear with their first file; the agent function creates both before the
agent runs, so the agent sees the same layout as a local run.

Artifacts (``results/``) are listed with ``listdir`` and streamed with ``read_file``, both
answered by Modal's servers from the volume's latest *committed* state: the agent function
commits before it returns, so a finished run's files are seen without a ``reload()``
(which exists only for a container that mounts the volume; this one never does). Only
entries of type FILE are artifacts: a symlink is never served, whatever it points to.

Every Modal call goes through the ``.aio`` interface: the event loop is never blocked.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import IO, Any, Protocol, cast

from dashboard.artifacts import Artifact, ArtifactReader, not_found
from dashboard.errors import Conflict
from dashboard.paths import clean_relative_path
from dashboard.sessions import volume_name

logger = logging.getLogger("dashboard.modal")

CONTEXT_FILE = "context.json"
DATA_DIR = "data"
RESULTS_DIR = "results"
FILE_TYPE = 1  # modal.volume.FileEntryType.FILE


# -- the slice of modal.Volume this store uses (a fake implements the same) ----------------
class FileEntryLike(Protocol):
    @property
    def path(self) -> str: ...

    @property
    def type(self) -> int: ...

    @property
    def size(self) -> int: ...

    @property
    def mtime(self) -> int: ...


class BatchLike(Protocol):
    def put_file(self, local_file: Path | IO[bytes], remote_path: str) -> Any: ...


class _BatchUpload(Protocol):
    def aio(self, force: bool = False) -> AbstractAsyncContextManager[BatchLike]: ...


class _Listdir(Protocol):
    async def aio(self, path: str, *, recursive: bool = False) -> Sequence[FileEntryLike]: ...


class _Commit(Protocol):
    def aio(self) -> Awaitable[Any]: ...


class _ReadFile(Protocol):
    def aio(self, path: str) -> AsyncIterator[bytes]: ...


class VolumeLike(Protocol):
    """What ``ModalVolumeStore`` needs of a ``modal.Volume`` handle."""

    @property
    def batch_upload(self) -> _BatchUpload: ...

    @property
    def listdir(self) -> _Listdir: ...

    @property
    def commit(self) -> _Commit: ...

    @property
    def read_file(self) -> _ReadFile: ...


VolumeFactory = Callable[[str], VolumeLike]


def default_volume_factory(name: str) -> VolumeLike:
    """``modal.Volume.from_name(name, create_if_missing=True)``: lazy, created on first use."""
    import modal

    return cast(VolumeLike, modal.Volume.from_name(name, create_if_missing=True))


def _is_not_found(exc: BaseException) -> bool:
    if isinstance(exc, FileNotFoundError):
        return True
    try:
        from modal.exception import NotFoundError
    except ImportError:  # pragma: no cover - modal is a runtime dependency
        return False
    return isinstance(exc, NotFoundError)


class ModalVolumeStore:
    """One Modal Volume per session, written with ``batch_upload`` (which commits)."""

    def __init__(
        self,
        volume_factory: VolumeFactory | None = None,
        *,
        staging_volume: str | None = None,
    ) -> None:
        self._factory: VolumeFactory = volume_factory or default_volume_factory
        self._staging_name = staging_volume
        self._staging: VolumeLike | None = None
        self._volumes: dict[str, VolumeLike] = {}
        # data/ paths known to exist per session: the web container is the only writer
        self._published: dict[str, set[str]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._commit_lock = asyncio.Lock()

    def volume(self, session_id: str) -> VolumeLike:
        handle = self._volumes.get(session_id)
        if handle is None:
            handle = self._factory(volume_name(session_id))
            self._volumes[session_id] = handle
        return handle

    def _lock(self, session_id: str) -> asyncio.Lock:
        lock = self._locks.get(session_id)
        if lock is None:
            lock = self._locks[session_id] = asyncio.Lock()
        return lock

    async def _commit_staging(self) -> None:
        """Checkpoint the staging area (session records, upload records) on its volume."""
        if self._staging_name is None:
            return
        if self._staging is None:
            self._staging = self._factory(self._staging_name)
        async with self._commit_lock:  # one commit at a time; a waiting one covers the rest
            try:
                await self._staging.commit.aio()
            except Exception:  # the background commit catches up; never fail a request for it
                logger.warning("committing the staging volume failed", exc_info=True)

    async def checkpoint(self) -> None:
        """Commit the staging volume (mounted as the data dir) so a crash keeps what is in it."""
        await self._commit_staging()

    # -- VolumeStore -------------------------------------------------------------------
    async def create(self, session_id: str, context: dict[str, Any]) -> None:
        body = json.dumps(context, ensure_ascii=False, indent=2).encode("utf-8")
        async with self.volume(session_id).batch_upload.aio(force=True) as batch:
            batch.put_file(io.BytesIO(body), CONTEXT_FILE)
        self._published.setdefault(session_id, set())
        await self._commit_staging()

    async def publish(self, session_id: str, relative: str, staged: Path) -> None:
        clean = clean_relative_path(relative)
        remote = f"{DATA_DIR}/{clean}"
        async with self._lock(session_id):
            known = await self._known_files(session_id)
            if remote in known:
                raise Conflict(f"A file named {clean!r} is already in this session.")
            try:
                async with self.volume(session_id).batch_upload.aio(force=False) as batch:
                    batch.put_file(staged, remote)
            except FileExistsError as exc:
                known.add(remote)
                raise Conflict(f"A file named {clean!r} is already in this session.") from exc
            known.add(remote)
        # the staging commit comes from the caller once the upload is marked done
        # (VolumeStore.checkpoint): the removal and done=True are then committed together
        await asyncio.to_thread(staged.unlink, missing_ok=True)

    async def holds(self, session_id: str, relative: str, size: int, sha256: str) -> bool:
        remote = f"{DATA_DIR}/{clean_relative_path(relative)}"
        entries = await self._list(session_id, remote, recursive=False)
        entry = next((e for e in entries if _path(e) == remote and e.type == FILE_TYPE), None)
        if entry is None or getattr(entry, "size", size) != size:
            return False
        digest = hashlib.sha256()
        async for block in self.volume(session_id).read_file.aio(remote):
            digest.update(block)
        return digest.hexdigest() == sha256

    async def has_file(self, session_id: str, relative: str) -> bool:
        remote = f"{DATA_DIR}/{clean_relative_path(relative)}"
        if remote in await self._known_files(session_id):
            return True
        entries = await self._list(session_id, remote, recursive=False)
        return any(_path(e) == remote and e.type == FILE_TYPE for e in entries)

    async def artifacts(self, session_id: str) -> list[str]:
        entries = await self._list(session_id, RESULTS_DIR, recursive=True)
        return sorted(
            path
            for path in (_path(e) for e in entries if e.type == FILE_TYPE)
            if path.startswith(f"{RESULTS_DIR}/")
        )

    async def artifact_files(self, session_id: str) -> list[Artifact]:
        prefix = f"{RESULTS_DIR}/"
        entries = await self._list(session_id, RESULTS_DIR, recursive=True)
        found = []
        for entry in entries:
            path = _path(entry)
            if entry.type != FILE_TYPE or not path.startswith(prefix):
                continue
            inside = path[len(prefix) :]
            if any(segment.startswith(".") for segment in inside.split("/")):
                continue
            found.append(Artifact(inside, int(entry.size), float(entry.mtime)))
        return sorted(found, key=lambda a: a.path)

    async def open_artifact(self, session_id: str, path: str) -> ArtifactReader:
        """Only a path the listing shows as a FILE (never a symlink, nor through one)."""
        for artifact in await self.artifact_files(session_id):
            if artifact.path == path:
                return ModalArtifactReader(self.volume(session_id), artifact)
        raise not_found(path)

    # -- helpers -----------------------------------------------------------------------
    async def _known_files(self, session_id: str) -> set[str]:
        known = self._published.get(session_id)
        if known is None:  # first touch after a restart: ask the volume once
            entries = await self._list(session_id, DATA_DIR, recursive=True)
            known = {_path(e) for e in entries if e.type == FILE_TYPE}
            self._published[session_id] = known
        return known

    async def _list(self, session_id: str, path: str, *, recursive: bool) -> list[FileEntryLike]:
        try:
            return list(await self.volume(session_id).listdir.aio(path, recursive=recursive))
        except Exception as exc:
            if _is_not_found(exc):
                return []
            raise


def _path(entry: FileEntryLike) -> str:
    return entry.path.lstrip("/")


class ModalArtifactReader:
    """Streams ``read_file``'s blocks, skipping to ``start`` and stopping at ``end``
    (``read_file`` has no offset: a range costs reading the blocks before it)."""

    def __init__(self, volume: VolumeLike, artifact: Artifact) -> None:
        self._volume = volume
        self._artifact = artifact

    @property
    def artifact(self) -> Artifact:
        return self._artifact

    async def chunks(self, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        stop = self._artifact.size if end is None else end
        position = 0
        blocks = self._volume.read_file.aio(self._artifact.volume_path)
        try:
            async for block in blocks:
                block_end = position + len(block)
                if block_end > start:
                    piece = block[max(0, start - position) : max(0, stop - position)]
                    if piece:
                        yield piece
                position = block_end
                if position >= stop:
                    break
        except FileNotFoundError:
            return  # deleted since it was listed: the response ends short
        finally:
            closer = getattr(blocks, "aclose", None)
            if closer is not None:
                await closer()

    async def close(self) -> None:
        pass

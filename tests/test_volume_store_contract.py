"""One contract for ``dashboard.volumes.VolumeStore``, run against every implementation.

- ``local``: ``LocalVolumeStore`` (folders), always.
- ``modal-fake``: ``ModalVolumeStore`` over :class:`FakeModalVolumes`, a stand-in for
  ``modal.Volume`` that keeps files in a temporary folder and implements ``batch_upload``,
  ``listdir``, ``read_file``, ``commit`` and ``reload`` the way ``modal.Volume`` does
  (sync call and ``.aio``), so the Modal store's own logic is tested without an account.
- ``modal-cloud``: ``ModalVolumeStore`` against real Modal Volumes, only when
  ``MODAL_TOKEN_ID`` is set (skipped otherwise, with that reason).

:class:`FakeModalVolumes` is also the volume seam of ``tests/test_modal_app.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from modal.exception import NotFoundError
from modal.types import FileEntry, FileEntryType

from dashboard.errors import Conflict, InvalidInput, NotFound
from dashboard.sessions import volume_name
from dashboard.volumes import LocalVolumeStore
from dashboard_modal.volumes import ModalVolumeStore

CLOUD_SKIP = "needs Modal credentials (MODAL_TOKEN_ID)"
READ_BLOCK = 1024 * 1024  # the fake's read_file block (Modal's are 8 MiB)


# -- a fake modal.Volume ---------------------------------------------------------------------
class _SyncAndAio:
    """A method with modal's two interfaces: ``m(...)`` blocks, ``await m.aio(...)``."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self._fn = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._fn(*args, **kwargs)

    async def aio(self, *args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0)
        return self._fn(*args, **kwargs)


class FakeBatch:
    """``batch_upload()``'s context: files are stored, all or nothing, when it exits."""

    def __init__(self, volume: FakeVolume, force: bool) -> None:
        self._volume = volume
        self._force = force
        self._files: list[tuple[Any, str]] = []

    def put_file(self, local_file: Any, remote_path: Any, mode: int | None = None) -> None:
        remote = PurePosixPath(remote_path).as_posix()
        if remote.endswith("/"):
            raise ValueError(f"remote_path ({remote}) must refer to a file - cannot end with /")
        self._files.append((local_file, remote))

    def put_directory(self, local_path: Any, remote_path: Any, recursive: bool = True) -> None:
        base = Path(local_path)
        for path in base.rglob("*") if recursive else base.glob("*"):
            if path.is_file():
                self.put_file(path, PurePosixPath(remote_path) / path.relative_to(base).as_posix())

    def _apply(self) -> None:
        targets = [(src, self._volume.target(remote)) for src, remote in self._files]
        if not self._force:
            for _src, target in targets:
                if target.exists():
                    raise FileExistsError(f"{target.relative_to(self._volume.root)} exists")
        for src, target in targets:
            data = Path(src).read_bytes() if isinstance(src, (str, Path)) else src.read()
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        self._volume.uploads += 1


class _BatchUploadMethod:
    def __init__(self, volume: FakeVolume) -> None:
        self._volume = volume

    @asynccontextmanager
    async def aio(self, force: bool = False) -> AsyncIterator[FakeBatch]:
        batch = FakeBatch(self._volume, force)
        yield batch
        await asyncio.to_thread(batch._apply)


class FakeVolume:
    """A ``modal.Volume`` handle whose storage is a local folder (``root``)."""

    def __init__(self, name: str, root: Path) -> None:
        self.name = name
        self.root = root
        self.commits = 0
        self.uploads = 0
        self.batch_upload = _BatchUploadMethod(self)
        self.listdir = _SyncAndAio(self._listdir)
        self.commit = _SyncAndAio(self._commit)
        self.reload = _SyncAndAio(lambda: None)
        self.read_file = _ReadFile(self)

    def __repr__(self) -> str:
        return f"FakeVolume({self.name!r})"

    def target(self, remote: str) -> Path:
        parts = [p for p in remote.split("/") if p]
        if not parts or any(p in (".", "..") for p in parts):
            raise ValueError(f"invalid volume path {remote!r}")
        return self.root.joinpath(*parts)

    def _listdir(self, path: str, *, recursive: bool = False) -> list[FileEntry]:
        parts = [p for p in path.split("/") if p]
        base = self.root.joinpath(*parts)
        if not base.exists():
            raise NotFoundError(f"No such file or directory: {path}")
        if base.is_file():
            return [self._entry(base)]
        found = base.rglob("*") if recursive else base.iterdir()
        return [self._entry(p) for p in sorted(found)]

    def _entry(self, path: Path) -> FileEntry:
        stat = path.lstat()
        if path.is_symlink():
            kind = FileEntryType.SYMLINK
        else:
            kind = FileEntryType.DIRECTORY if path.is_dir() else FileEntryType.FILE
        return FileEntry(
            path=path.relative_to(self.root).as_posix(),
            type=kind,
            mtime=int(stat.st_mtime),
            size=stat.st_size,
        )

    def _commit(self) -> None:
        self.commits += 1


class _ReadFile:
    def __init__(self, volume: FakeVolume) -> None:
        self._volume = volume

    def _path(self, path: str) -> Path:
        target = self._volume.target(path)
        if not target.is_file():
            raise FileNotFoundError(path)
        return target

    def __call__(self, path: str) -> Iterator[bytes]:
        with self._path(path).open("rb") as fh:
            while block := fh.read(READ_BLOCK):
                yield block

    async def aio(self, path: str) -> AsyncIterator[bytes]:
        # modal.Volume.read_file yields the file's blocks in order; so does the fake
        with self._path(path).open("rb") as fh:
            while block := fh.read(READ_BLOCK):
                await asyncio.sleep(0)
                yield block


class FakeModalVolumes:
    """The volume factory seam: ``factory(name)`` → the (same) :class:`FakeVolume`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.volumes: dict[str, FakeVolume] = {}

    def __call__(self, name: str) -> FakeVolume:
        volume = self.volumes.get(name)
        if volume is None:
            folder = self.root / name
            folder.mkdir(parents=True, exist_ok=True)
            volume = self.volumes[name] = FakeVolume(name, folder)
        return volume


# -- backends --------------------------------------------------------------------------------
@dataclass
class Backend:
    store: Any
    read: Callable[[str, str], bytes | None]  # (session, path in volume) -> bytes or None
    agent_writes: Callable[[str, str, bytes], None]  # what the agent container would do
    all_files: Callable[[str], list[str]]  # every file path in the session's volume
    has_empty_dirs: bool  # local folders yes; Modal Volumes only hold files


def _local_backend(tmp_path: Path) -> Backend:
    root = tmp_path / "volumes"
    store = LocalVolumeStore(root)

    def read(sid: str, path: str) -> bytes | None:
        target = store.path(sid) / path
        return target.read_bytes() if target.is_file() else None

    def agent_writes(sid: str, path: str, data: bytes) -> None:
        target = store.path(sid) / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    def all_files(sid: str) -> list[str]:
        base = store.path(sid)
        return sorted(p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file())

    return Backend(store, read, agent_writes, all_files, has_empty_dirs=True)


def _off_loop(fn: Callable[[], Any]) -> Any:
    """Run a blocking Modal call in its own thread (the tests' event loop is running)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn).result()


def _modal_backend(factory: Callable[[str], Any], store: ModalVolumeStore) -> Backend:
    def read(sid: str, path: str) -> bytes | None:
        def blocking() -> bytes | None:
            try:
                return b"".join(factory(volume_name(sid)).read_file(path))
            except (FileNotFoundError, NotFoundError):
                return None

        return _off_loop(blocking)  # type: ignore[no-any-return]

    def agent_writes(sid: str, path: str, data: bytes) -> None:
        def blocking() -> None:
            with _blocking_batch(factory(volume_name(sid))) as batch:
                batch.put_file(io.BytesIO(data), path)

        _off_loop(blocking)

    def all_files(sid: str) -> list[str]:
        def blocking() -> list[str]:
            try:
                entries = factory(volume_name(sid)).listdir("/", recursive=True)
            except NotFoundError:
                return []
            return sorted(e.path.lstrip("/") for e in entries if e.type == FileEntryType.FILE)

        return _off_loop(blocking)  # type: ignore[no-any-return]

    return Backend(store, read, agent_writes, all_files, has_empty_dirs=False)


class _blocking_batch:
    """``with volume.batch_upload(force=True) as batch`` for the fake and for modal.Volume."""

    def __init__(self, volume: Any) -> None:
        self._volume = volume

    def __enter__(self) -> Any:
        if isinstance(self._volume, FakeVolume):
            self._batch = FakeBatch(self._volume, force=True)
            return self._batch
        self._cm = self._volume.batch_upload(force=True)
        return self._cm.__enter__()

    def __exit__(self, *exc: Any) -> None:
        if isinstance(self._volume, FakeVolume):
            if exc[0] is None:
                self._batch._apply()
        else:
            self._cm.__exit__(*exc)


@pytest.fixture(
    params=[
        "local",
        "modal-fake",
        pytest.param("modal-cloud", marks=pytest.mark.modal_cloud),
    ]
)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "local":
        yield _local_backend(tmp_path)
    elif request.param == "modal-fake":
        fake = FakeModalVolumes(tmp_path / "modal")
        yield _modal_backend(fake, ModalVolumeStore(fake))
    else:
        if not os.environ.get("MODAL_TOKEN_ID"):
            pytest.skip(CLOUD_SKIP)
        import modal

        def factory(name: str) -> Any:
            return modal.Volume.from_name(name, create_if_missing=True)

        yield _modal_backend(factory, ModalVolumeStore(factory))
        names, _created_cloud_volumes[:] = list(_created_cloud_volumes), []
        for name in names:
            _off_loop(partial(modal.Volume.objects.delete, name, allow_missing=True))


_created_cloud_volumes: list[str] = []


def new_session() -> str:
    sid = uuid.uuid4().hex
    _created_cloud_volumes.append(volume_name(sid))
    return sid


def staged_file(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "staging" / f"{uuid.uuid4().hex}.part"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


CONTEXT = {"description": "Sleep study, 40 subjects", "columns": ["hr", "spo2"]}


# -- the contract ------------------------------------------------------------------------------
@pytest.mark.anyio
async def test_create_writes_context_and_layout(backend: Backend) -> None:
    sid = new_session()
    await backend.store.create(sid, CONTEXT)
    raw = backend.read(sid, "context.json")
    assert raw is not None
    assert json.loads(raw) == CONTEXT
    assert await backend.store.artifacts(sid) == []
    assert not await backend.store.has_file(sid, "a.csv")
    if backend.has_empty_dirs:
        volume = backend.store.path(sid)
        assert (volume / "data").is_dir()
        assert (volume / "results").is_dir()
    else:  # nothing but the context: data/ and results/ come with their first file
        assert backend.all_files(sid) == ["context.json"]


@pytest.mark.anyio
async def test_publish_places_bytes_under_data_with_nested_folders(
    backend: Backend, tmp_path: Path
) -> None:
    sid = new_session()
    await backend.store.create(sid, CONTEXT)
    payload = os.urandom(70_000) + b"\x00end"
    staged = staged_file(tmp_path, payload)
    await backend.store.publish(sid, "visits/2024/night one.csv", staged)
    assert backend.read(sid, "data/visits/2024/night one.csv") == payload
    assert not staged.exists(), "the staged file is consumed"
    assert await backend.store.has_file(sid, "visits/2024/night one.csv")
    assert not await backend.store.has_file(sid, "visits/2024/other.csv")
    second = staged_file(tmp_path, b"id,hr\n1,60\n")
    await backend.store.publish(sid, "top.csv", second)
    assert sorted(backend.all_files(sid)) == [
        "context.json",
        "data/top.csv",
        "data/visits/2024/night one.csv",
    ]


@pytest.mark.anyio
async def test_duplicate_publish_is_a_conflict(backend: Backend, tmp_path: Path) -> None:
    sid = new_session()
    await backend.store.create(sid, CONTEXT)
    await backend.store.publish(sid, "a/b.csv", staged_file(tmp_path, b"first"))
    again = staged_file(tmp_path, b"second")
    with pytest.raises(Conflict):
        await backend.store.publish(sid, "a/b.csv", again)
    assert backend.read(sid, "data/a/b.csv") == b"first"


@pytest.mark.anyio
async def test_holds_compares_size_and_sha256_of_the_stored_file(
    backend: Backend, tmp_path: Path
) -> None:
    """What makes a publish idempotent after a crash: same bytes, not just the same name."""
    sid = new_session()
    await backend.store.create(sid, CONTEXT)
    payload = os.urandom(50_000)
    await backend.store.publish(sid, "n/x.bin", staged_file(tmp_path, payload))
    digest = hashlib.sha256(payload).hexdigest()
    assert await backend.store.holds(sid, "n/x.bin", len(payload), digest)
    other = hashlib.sha256(payload[:-1] + b"!").hexdigest()
    assert not await backend.store.holds(sid, "n/x.bin", len(payload), other)
    assert not await backend.store.holds(sid, "n/x.bin", len(payload) + 1, digest)
    assert not await backend.store.holds(sid, "n/missing.bin", len(payload), digest)


@pytest.mark.anyio
async def test_duplicate_publish_after_restart_is_a_conflict(
    backend: Backend, tmp_path: Path
) -> None:
    """A fresh store (a restarted container) still refuses to overwrite a stored file."""
    sid = new_session()
    await backend.store.create(sid, CONTEXT)
    await backend.store.publish(sid, "x.csv", staged_file(tmp_path, b"first"))
    store = backend.store
    fresh = (
        LocalVolumeStore(store.root)
        if isinstance(store, LocalVolumeStore)
        else ModalVolumeStore(store._factory)
    )
    assert await fresh.has_file(sid, "x.csv")
    with pytest.raises(Conflict):
        await fresh.publish(sid, "x.csv", staged_file(tmp_path, b"second"))
    assert backend.read(sid, "data/x.csv") == b"first"


@pytest.mark.anyio
async def test_artifacts_lists_what_the_agent_wrote_under_results(backend: Backend) -> None:
    sid = new_session()
    await backend.store.create(sid, CONTEXT)
    assert await backend.store.artifacts(sid) == []
    backend.agent_writes(sid, "results/summary.json", b"{}")
    backend.agent_writes(sid, "results/plots/hr.png", b"\x89PNG")
    backend.agent_writes(sid, "data/not-an-artifact.csv", b"x")
    assert await backend.store.artifacts(sid) == ["results/plots/hr.png", "results/summary.json"]


@pytest.mark.anyio
async def test_artifacts_are_listed_with_sizes_and_stream_any_range(backend: Backend) -> None:
    sid = new_session()
    await backend.store.create(sid, CONTEXT)
    big = os.urandom(2 * READ_BLOCK + 12_345)
    backend.agent_writes(sid, "results/summary.json", b'{"files": []}')
    backend.agent_writes(sid, "results/plots/big.bin", big)
    backend.agent_writes(sid, "results/.report.md.tmp", b"half written")
    backend.agent_writes(sid, "data/x.csv", b"a\n1\n")
    files = await backend.store.artifact_files(sid)
    assert [(a.path, a.size) for a in files] == [("plots/big.bin", len(big)), ("summary.json", 13)]
    assert files[0].volume_path == "results/plots/big.bin"
    reader = await backend.store.open_artifact(sid, "plots/big.bin")
    try:
        assert reader.artifact.size == len(big)
        assert b"".join([c async for c in reader.chunks()]) == big
        # ranges inside one block, across blocks, at the very end
        for start, end in [(0, 1), (10, READ_BLOCK + 10), (READ_BLOCK, 2 * READ_BLOCK + 1),
                           (len(big) - 7, len(big))]:
            assert b"".join([c async for c in reader.chunks(start, end)]) == big[start:end]
    finally:
        await reader.close()
    for missing in ("nothing.json", "plots", ".report.md.tmp", "x.csv"):
        with pytest.raises(NotFound):
            await backend.store.open_artifact(sid, missing)


@pytest.mark.anyio
async def test_a_symlink_in_results_is_no_artifact(backend: Backend, tmp_path: Path) -> None:
    """Whatever a link points to (out of the volume, into data/), it is not listed or
    served. Modal Volumes keep symlinks as their own entry type."""
    if os.environ.get("MODAL_TOKEN_ID") and not isinstance(backend.store, LocalVolumeStore):
        pytest.skip("a symlink is made inside a mounted volume, not from here")
    sid = new_session()
    await backend.store.create(sid, CONTEXT)
    backend.agent_writes(sid, "results/summary.json", b"{}")
    backend.agent_writes(sid, "data/x.csv", b"secret,data\n")
    store = backend.store
    root = store.path(sid) if isinstance(store, LocalVolumeStore) else store.volume(sid).root
    outside = tmp_path / "outside.txt"
    outside.write_text("outside")
    (root / "results" / "out.txt").symlink_to(outside)
    (root / "results" / "in-data.csv").symlink_to(root / "data" / "x.csv")
    (root / "results" / "folder").symlink_to(root / "data")
    assert [a.path for a in await store.artifact_files(sid)] == ["summary.json"]
    for path in ("out.txt", "in-data.csv", "folder/x.csv"):
        with pytest.raises(NotFound):
            await store.open_artifact(sid, path)


@pytest.mark.anyio
@pytest.mark.parametrize("bad", ["../escape.txt", "a/../../escape.txt", "../../escape.txt"])
async def test_paths_never_leave_the_volume(backend: Backend, tmp_path: Path, bad: str) -> None:
    sid = new_session()
    await backend.store.create(sid, CONTEXT)
    staged = staged_file(tmp_path, b"evil")
    with pytest.raises(InvalidInput):
        await backend.store.publish(sid, bad, staged)
    assert backend.all_files(sid) == ["context.json"]
    assert not any(p.name == "escape.txt" for p in tmp_path.rglob("*")), "nothing written outside"


@pytest.mark.anyio
async def test_unknown_session_has_nothing(backend: Backend) -> None:
    sid = uuid.uuid4().hex
    if isinstance(backend.store, ModalVolumeStore) and os.environ.get("MODAL_TOKEN_ID"):
        _created_cloud_volumes.append(volume_name(sid))  # from_name(create_if_missing) made it
    assert await backend.store.artifacts(sid) == []
    assert not await backend.store.has_file(sid, "a.csv")


# -- Modal-store specifics (fake volumes) -----------------------------------------------------
@pytest.mark.anyio
async def test_modal_store_commits_only_at_checkpoints(tmp_path: Path) -> None:
    fake = FakeModalVolumes(tmp_path / "modal")
    store = ModalVolumeStore(fake, staging_volume="dataset-dashboard-staging")
    sid = uuid.uuid4().hex
    await store.create(sid, CONTEXT)
    session_volume = fake(volume_name(sid))
    staging = fake("dataset-dashboard-staging")
    assert session_volume.uploads == 1  # context.json, one batch (batch_upload commits)
    assert staging.commits == 1  # the session record is checkpointed
    for i in range(3):
        await store.publish(sid, f"f{i}.csv", staged_file(tmp_path, b"x" * (i + 1)))
    assert session_volume.uploads == 4  # one batch per complete file
    # the staging commit after a publish is the caller's (UploadManager, once the upload
    # is marked done): removal of the staged file and done=True are committed together
    assert staging.commits == 1
    await store.checkpoint()
    assert staging.commits == 2
    assert session_volume.commits == 0  # never mounted here: batch_upload is the commit


@pytest.mark.anyio
async def test_modal_store_survives_a_failing_staging_commit(tmp_path: Path) -> None:
    fake = FakeModalVolumes(tmp_path / "modal")
    staging = fake("staging")

    def broken() -> None:
        raise RuntimeError("there are open files preventing the operation")

    staging.commit = _SyncAndAio(broken)
    store = ModalVolumeStore(fake, staging_volume="staging")
    sid = uuid.uuid4().hex
    await store.create(sid, CONTEXT)
    await store.publish(sid, "a.csv", staged_file(tmp_path, b"a"))
    assert await store.has_file(sid, "a.csv")


def test_fake_volume_behaves_like_modal_volume(tmp_path: Path) -> None:
    """The fake's own contract: what the tests rely on of modal.Volume."""
    volume = FakeModalVolumes(tmp_path)("v")
    with pytest.raises(NotFoundError):
        volume.listdir("nothing")
    with _blocking_batch(volume) as batch:
        batch.put_file(io.BytesIO(b"1"), "/a/b.txt")
    assert [e.path for e in volume.listdir("a")] == ["a/b.txt"]
    assert volume.listdir("a/b.txt")[0].type == FileEntryType.FILE
    assert b"".join(volume.read_file("a/b.txt")) == b"1"

    async def no_overwrite() -> None:
        async with volume.batch_upload.aio() as batch:
            batch.put_file(io.BytesIO(b"2"), "a/b.txt")

    with pytest.raises(FileExistsError):
        asyncio.run(no_overwrite())
    assert b"".join(volume.read_file("a/b.txt")) == b"1"
    started = time.monotonic()
    volume.commit()
    asyncio.run(volume.commit.aio())
    assert volume.commits == 2 and time.monotonic() - started < 5

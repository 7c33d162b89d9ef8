"""Resumable uploads (tus 1.0.0 semantics), framework-free.

Partial files live in the staging area, outside every volume:
``<staging>/<session>/<upload>.part`` (the bytes) and ``<upload>.json`` (the record).
The offset of an upload is the size of its ``.part`` file, i.e. what reached the disk:
a dropped connection or a killed server keeps the bytes received, never more. A
complete file moves atomically into ``data/<relative path>`` of the session's volume.
Chunks sent with ``Upload-Checksum`` go to a side file first and are appended only
once verified, so a mismatch (460) changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import hashlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dashboard.errors import (
    ChecksumMismatch,
    Conflict,
    Gone,
    InsufficientStorage,
    InvalidInput,
    Locked,
    NotFound,
    TooLarge,
)
from dashboard.paths import clean_relative_path
from dashboard.storage import read_json, write_json_atomic
from dashboard.syncer import Syncer
from dashboard.volumes import VolumeStore

UPLOAD_ID_LEN = 32
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EFBIG})
_SYNC_FILE_RANGE_WRITE = 2  # <linux/fs.h>: start writeback of the range, do not wait


def storage_error(exc: OSError, *, resumable: bool = True) -> Exception:
    """A disk that is full or failing is a 507; any other OSError stays itself."""
    if exc.errno in STORAGE_ERRNOS:
        then = (
            "the upload can be resumed from its current offset."
            if resumable
            else "nothing was stored; send the form again later."
        )
        return InsufficientStorage(
            f"The server could not store the data (disk full or failing); {then}"
        )
    return exc


def _load_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """Linux's ``sync_file_range(2)``, which ``os`` lacks; None where libc has none."""
    try:
        func = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (AttributeError, OSError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    func.restype = ctypes.c_int
    return func


_sync_file_range = _load_sync_file_range()


@dataclass
class UploadRecord:
    upload_id: str
    session_id: str
    length: int
    relative_path: str
    metadata_header: str
    metadata: dict[str, str]
    created: float
    expires: float
    done: bool = False
    offset: int = 0  # refreshed from the .part file size, never trusted from the record

    def public(self) -> dict[str, Any]:
        return {
            "path": self.relative_path,
            "length": self.length,
            "offset": self.length if self.done else self.offset,
            "done": self.done,
        }

    def listing(self) -> dict[str, Any]:
        """``public()`` plus the upload's URL, so a client that lost it can still resume."""
        return {**self.public(), "url": UploadManager.location(self)}


@dataclass
class _SessionUploads:
    records: dict[str, UploadRecord] = field(default_factory=dict)
    loaded: bool = False


ProgressCallback = Callable[[UploadRecord], None]


class FileWriter:
    """The storage seam: how bytes reach the staging disk (tests inject faults here)."""

    def write(self, fd: int, data: bytes | memoryview) -> int:
        return os.write(fd, data)

    def start_writeback(self, fd: int, offset: int, length: int) -> None:
        """Ask the kernel to start writing a range out now (a hint: durability is fsync's)."""
        if _sync_file_range is not None:
            _sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE)

    def fsync(self, fd: int) -> None:
        """Make the file's data durable: ``fdatasync`` (data and size, not timestamps)."""
        getattr(os, "fdatasync", os.fsync)(fd)


class UploadManager:
    def __init__(
        self,
        staging_dir: Path,
        volumes: VolumeStore,
        *,
        expiry_s: float,
        max_size: int,
        on_progress: ProgressCallback,
        writer: FileWriter | None = None,
    ) -> None:
        self._root = staging_dir
        self._volumes = volumes
        self._expiry = expiry_s
        self.max_size = max_size
        self._on_progress = on_progress
        self.writer = writer or FileWriter()
        self.syncer = Syncer(self.writer.fsync, self.writer.start_writeback)
        self._sessions: dict[str, _SessionUploads] = {}
        self._busy: set[str] = set()
        self._root.mkdir(parents=True, exist_ok=True)

    # -- records -------------------------------------------------------------------
    def _dir(self, session_id: str) -> Path:
        return self._root / session_id

    def _part(self, record: UploadRecord) -> Path:
        return self._dir(record.session_id) / f"{record.upload_id}.part"

    def _side(self, record: UploadRecord) -> Path:
        return self._dir(record.session_id) / f"{record.upload_id}.chunk"

    def _record_path(self, record: UploadRecord) -> Path:
        return self._dir(record.session_id) / f"{record.upload_id}.json"

    def _save(self, record: UploadRecord) -> None:
        data = asdict(record)
        data.pop("offset")
        write_json_atomic(self._record_path(record), data)

    def _session(self, session_id: str) -> _SessionUploads:
        uploads = self._sessions.get(session_id)
        if uploads is None:
            uploads = _SessionUploads()
            self._sessions[session_id] = uploads
        if not uploads.loaded:
            uploads.loaded = True
            folder = self._dir(session_id)
            if folder.is_dir():
                for path in folder.glob("*.json"):
                    raw = read_json(path)
                    record = UploadRecord(**raw)
                    if not record.done:
                        part = self._part(record)
                        record.offset = part.stat().st_size if part.exists() else 0
                        self._side(record).unlink(missing_ok=True)
                    uploads.records[record.upload_id] = record
        return uploads

    @staticmethod
    def location(record: UploadRecord) -> str:
        return f"/api/sessions/{record.session_id}/files/{record.upload_id}"

    def records(self, session_id: str) -> list[UploadRecord]:
        return sorted(self._session(session_id).records.values(), key=lambda r: r.created)

    def unfinished(self, session_id: str) -> list[UploadRecord]:
        return [r for r in self.records(session_id) if not r.done]

    def get(self, session_id: str, upload_id: str) -> UploadRecord:
        record = self._session(session_id).records.get(upload_id)
        if record is None:
            raise NotFound("There is no such upload in this session.")
        if not record.done and record.expires < time.time():
            self._drop(record)
            raise Gone("This upload expired before it was finished; start it again.")
        return record

    # -- creation ------------------------------------------------------------------
    def check_new_path(self, session_id: str, relative: str) -> None:
        for other in self._session(session_id).records.values():
            if other.relative_path == relative:
                # an unfinished twin is named so that a client whose creation response was
                # lost can find it (HEAD it, then resume) instead of being stuck
                headers = {} if other.done else {"Location": self.location(other)}
                raise Conflict(
                    f"A file named {relative!r} is already part of this session.",
                    headers=headers,
                )

    def create(
        self, session_id: str, length: int, metadata_header: str, metadata: dict[str, str]
    ) -> UploadRecord:
        raw_path = metadata.get("relativePath") or metadata.get("filename")
        if not raw_path:
            raise InvalidInput.field(
                "relativePath", "Upload-Metadata must name the file (relativePath or filename)."
            )
        relative = clean_relative_path(raw_path)
        if length > self.max_size:
            raise TooLarge(f"Upload-Length {length} is over the limit of {self.max_size} bytes.")
        self.check_new_path(session_id, relative)
        record = self._register(session_id, length, relative, metadata_header, metadata)
        self._part(record).touch()
        return record

    def add_complete(self, session_id: str, relative: str, length: int) -> UploadRecord:
        """Record a file that arrived whole (legacy multipart) and is already published."""
        return self._register(
            session_id, length, relative, "", {"relativePath": relative}, done=True
        )

    def _register(
        self,
        session_id: str,
        length: int,
        relative: str,
        metadata_header: str,
        metadata: dict[str, str],
        *,
        done: bool = False,
    ) -> UploadRecord:
        now = time.time()
        record = UploadRecord(
            upload_id=uuid.uuid4().hex,
            session_id=session_id,
            length=length,
            relative_path=relative,
            metadata_header=metadata_header,
            metadata=metadata,
            created=now,
            expires=now if done else now + self._expiry,
            done=done,
            offset=length if done else 0,
        )
        self._dir(session_id).mkdir(parents=True, exist_ok=True)
        self._save(record)
        self._session(session_id).records[record.upload_id] = record
        return record

    # -- appending -----------------------------------------------------------------
    def begin_append(self, record: UploadRecord, offset: int, content_length: int | None) -> None:
        """Every check that must pass before a byte of a PATCH body is read."""
        if record.upload_id in self._busy:
            raise Locked("Another request is writing to this upload; retry in a moment.")
        if record.done:
            raise Conflict("This upload is already complete.", headers=self.offset_headers(record))
        if offset != record.offset:
            raise Conflict(
                f"Upload-Offset {offset} does not match the server's offset {record.offset}.",
                headers=self.offset_headers(record),
            )
        if content_length is not None and offset + content_length > record.length:
            raise TooLarge(
                f"This chunk would end at byte {offset + content_length}, past Upload-Length "
                f"{record.length}."
            )

    @staticmethod
    def offset_headers(record: UploadRecord) -> dict[str, str]:
        return {"Upload-Offset": str(record.length if record.done else record.offset)}

    async def append(
        self,
        record: UploadRecord,
        offset: int,
        body: AsyncIterator[bytes],
        *,
        content_length: int | None,
        checksum: tuple[str, bytes] | None,
    ) -> UploadRecord:
        """Stream ``body`` onto the upload; returns the record with its new offset.

        Bytes are written as they arrive; a dropped connection keeps them. With a
        checksum, the chunk is kept aside and appended only when it matches.
        """
        self.begin_append(record, offset, content_length)
        self._busy.add(record.upload_id)
        try:
            if checksum is None:
                await self._append_plain(record, body)
            else:
                await self._append_verified(record, body, checksum)
            record.expires = time.time() + self._expiry
            if record.offset == record.length:
                await self._complete(record)
            self._on_progress(record)
            return record
        finally:
            self._busy.discard(record.upload_id)

    async def _append_plain(self, record: UploadRecord, body: AsyncIterator[bytes]) -> None:
        """Write the body as it arrives, made durable in the background (``Syncer``)."""
        part = self._part(record)
        start = record.offset
        synced = self.syncer.track(
            os.open(part, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), start
        )
        written = 0
        try:
            try:
                async for chunk in body:
                    if not chunk:
                        continue
                    if start + written + len(chunk) > record.length:
                        # refuse the chunk whole: nothing of this PATCH is appended
                        os.ftruncate(synced.fd, start)
                        raise TooLarge(f"The body runs past Upload-Length {record.length}.")
                    size = self._write_all(synced.fd, chunk)
                    written += size
                    synced.wrote(size)
            finally:
                try:
                    await synced.finish()
                except Exception as exc:  # any failure: not known durable
                    # nothing written by this PATCH is known to be durable: take it back
                    os.truncate(part, start)
                    raise InsufficientStorage(
                        "The server could not make the data durable; "
                        "the upload can be resumed from its current offset."
                    ) from exc
        except OSError as exc:
            raise storage_error(exc) from exc
        finally:
            record.offset = part.stat().st_size

    async def _append_verified(
        self, record: UploadRecord, body: AsyncIterator[bytes], checksum: tuple[str, bytes]
    ) -> None:
        algorithm, expected = checksum
        digest = hashlib.new(algorithm)
        side = self._side(record)
        fd = os.open(side, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        written = 0
        try:
            try:
                async for chunk in body:
                    if not chunk:
                        continue
                    if record.offset + written + len(chunk) > record.length:
                        raise TooLarge(f"The body runs past Upload-Length {record.length}.")
                    digest.update(chunk)
                    written += self._write_all(fd, chunk)
            except OSError as exc:
                raise storage_error(exc) from exc
        except BaseException:
            os.close(fd)
            side.unlink(missing_ok=True)
            raise
        os.close(fd)
        if digest.digest() != expected:
            side.unlink(missing_ok=True)
            raise ChecksumMismatch(
                f"The chunk's {algorithm} checksum does not match; it was discarded."
            )
        await asyncio.to_thread(self._append_file, record, side)

    def _append_file(self, record: UploadRecord, side: Path) -> None:
        part = self._part(record)
        try:
            with open(side, "rb") as src, open(part, "ab") as dst:
                while block := src.read(1024 * 1024):
                    self._write_all(dst.fileno(), block)
                dst.flush()
                self.writer.fsync(dst.fileno())
        except OSError as exc:
            # roll back a partial append so the offset stays what it was
            with contextlib.suppress(OSError):
                os.truncate(part, record.offset)
            raise storage_error(exc) from exc
        finally:
            side.unlink(missing_ok=True)
        record.offset = part.stat().st_size

    def _write_all(self, fd: int, data: bytes) -> int:
        view = memoryview(data)
        total = 0
        while total < len(view):
            total += self.writer.write(fd, view[total:])
        return total

    async def complete_empty(self, record: UploadRecord) -> None:
        await self._complete(record)

    async def _complete(self, record: UploadRecord) -> None:
        await self._volumes.publish(record.session_id, record.relative_path, self._part(record))
        record.done = True
        self._save(record)

    def close(self) -> None:
        """Finish the background syncs (at shutdown)."""
        self.syncer.close()

    # -- termination and expiry ----------------------------------------------------
    def terminate(self, record: UploadRecord) -> None:
        if record.upload_id in self._busy:
            raise Locked("This upload is being written; retry the termination in a moment.")
        if record.done:
            raise Conflict("A complete upload cannot be terminated.")
        self._drop(record)

    def _drop(self, record: UploadRecord) -> None:
        self._part(record).unlink(missing_ok=True)
        self._side(record).unlink(missing_ok=True)
        self._record_path(record).unlink(missing_ok=True)
        self._session(record.session_id).records.pop(record.upload_id, None)

    def sweep_expired(self) -> int:
        """Remove every unfinished upload whose expiry has passed; returns how many."""
        now = time.time()
        count = 0
        if self._root.is_dir():
            for folder in self._root.iterdir():
                if folder.is_dir() and len(folder.name) == 32:
                    for record in list(self._session(folder.name).records.values()):
                        busy = record.upload_id in self._busy
                        if not record.done and not busy and record.expires < now:
                            self._drop(record)
                            count += 1
        return count

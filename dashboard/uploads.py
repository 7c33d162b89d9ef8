"""Resumable uploads (tus 1.0.0 semantics), framework-free.

Partial files live in the staging area, outside every volume:
``<staging>/<session>/<upload>.part`` (the bytes) and ``<upload>.json`` (the record).

Durability (as tusd's file store). A PATCH is acknowledged once its bytes are written into
the ``.part`` file: the offset is that file's size as the operating system holds it, so a
killed server process (SIGKILL) or a dropped connection keeps the bytes received, never
more. After a power loss a HEAD may report fewer bytes than were acknowledged; a tus client
asks HEAD before it resumes, so it sends them again. When the last byte is in, the file is
flushed once (``fdatasync``) before it moves into the volume and before ``done`` is
published: a file marked done is on disk. ``sync="chunk"`` (``DASHBOARD_UPLOAD_SYNC``)
flushes every PATCH before acknowledging it instead (power-loss-safe acknowledgements).

Chunks sent with ``Upload-Checksum`` go to a side file first and are appended only once
verified, so a mismatch (460) changes nothing.

Extensions beyond creation: ``creation-defer-length`` (the length arrives on a later PATCH)
and ``concatenation``: partial uploads stay in staging, never in the volume nor in the
session's file list; the final upload is assembled from them in the kernel
(``copy_file_range``, no byte through Python), flushed, published, and the partials removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import hashlib
import logging
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dashboard.errors import (
    ChecksumMismatch,
    Conflict,
    Forbidden,
    Gone,
    InsufficientStorage,
    InvalidInput,
    Locked,
    MalformedRequest,
    NotFound,
    TooLarge,
)
from dashboard.paths import clean_relative_path
from dashboard.storage import read_json, write_json_atomic
from dashboard.volumes import VolumeStore, file_sha256

UPLOAD_ID_LEN = 32
SYNC_MODES = ("complete", "chunk")
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EFBIG})
KICK_STEP = 8 * 1024 * 1024  # start writeback every this many bytes (see WritebackHint)
_SYNC_FILE_RANGE_WRITE = 2  # <linux/fs.h>: start writeback of the range, do not wait
PARTIAL = "partial"
FINAL = "final"
PUBLISH_ATTEMPTS = 4  # a failing publish is retried this often (1, 2, 4 s apart)

# One line per upload (created, completed, terminated, expired): the access log's view of
# tus, whose PATCH and HEAD requests api/access_log.py keeps out of uvicorn's access log.
access_log = logging.getLogger("dashboard.access")
logger = logging.getLogger("dashboard")


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


def name_from_metadata(metadata: dict[str, str]) -> str | None:
    """The file's name as sent: ``relativePath``, unless empty or the string ``null``
    (what Uppy sends for a file not picked from a folder), else ``filename``."""
    relative = metadata.get("relativePath", "").strip()
    if relative and relative != "null":
        return relative
    return metadata.get("filename") or None


@dataclass
class UploadRecord:
    upload_id: str
    session_id: str
    length: int | None  # None while deferred (creation-defer-length)
    relative_path: str  # "" for a partial upload (concatenation): it names no file
    metadata_header: str
    metadata: dict[str, str]
    created: float
    expires: float
    done: bool = False
    concat: str = ""  # "", "partial" or "final"
    parts: list[str] = field(default_factory=list)  # a final upload's partials, in order
    sha256: str | None = None  # of the complete file, saved before it is published
    offset: int = 0  # refreshed from the .part file size, never trusted from the record

    @property
    def partial(self) -> bool:
        return self.concat == PARTIAL

    @property
    def complete(self) -> bool:
        return self.length is not None and self.offset == self.length

    def public(self) -> dict[str, Any]:
        offset = self.length if self.done and self.length is not None else self.offset
        return {
            "path": self.relative_path,
            # while the length is deferred, the bytes received are all that is known
            "length": self.length if self.length is not None else offset,
            "offset": offset,
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

    def copy(self, src: int, dst: int, count: int) -> None:
        """Append ``count`` bytes of ``src`` (from its start) to ``dst``, in the kernel."""
        copied = 0
        dst_at = os.fstat(dst).st_size
        while copied < count:
            try:
                n = os.copy_file_range(src, dst, count - copied, copied, dst_at + copied)
            except OSError as exc:  # EXDEV, ENOSYS, EINVAL: sendfile does file to file too
                if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                    raise
                os.lseek(dst, dst_at + copied, os.SEEK_SET)
                n = os.sendfile(dst, src, copied, count - copied)
            if n == 0:
                raise OSError(errno.EIO, "a partial upload ended before its length")
            copied += n


class WritebackHint:
    """Starts writeback of a growing file every ``KICK_STEP`` bytes.

    Not durability (only the final ``fdatasync`` is): the disk writes while the network
    still delivers, so the one flush at the end of a file has little left to do.
    """

    def __init__(self, writer: FileWriter, fd: int, position: int) -> None:
        self._writer = writer
        self._fd = fd
        self._kicked_to = position
        self.position = position

    def wrote(self, count: int) -> None:
        self.position += count
        if self.position - self._kicked_to >= KICK_STEP:
            self._writer.start_writeback(self._fd, self._kicked_to, self.position - self._kicked_to)
            self._kicked_to = self.position


def sync_file(writer: FileWriter, path: Path) -> None:
    """``fdatasync`` one file (blocking: call it in a thread)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        writer.fsync(fd)
    finally:
        os.close(fd)


def _sync_and_close(writer: FileWriter, fd: int) -> None:
    """Sync then close ``fd``, both in the same thread: a cancelled waiter can never close
    the descriptor under a sync still running on it."""
    try:
        writer.fsync(fd)
    finally:
        os.close(fd)


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
        sync: str = "complete",
    ) -> None:
        if sync not in SYNC_MODES:
            raise ValueError(f"sync must be one of {SYNC_MODES}, got {sync!r}")
        self._root = staging_dir
        self._volumes = volumes
        self._expiry = expiry_s
        self.max_size = max_size
        self.sync = sync
        self._on_progress = on_progress
        self.writer = writer or FileWriter()
        self._sessions: dict[str, _SessionUploads] = {}
        self._busy: set[str] = set()
        # uploads whose bytes are all in, being published in the background
        self._publishing: dict[str, asyncio.Task[None]] = {}
        self.on_publish_failed: Callable[[UploadRecord, str], None] | None = None
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
                    if not record.done or record.partial:
                        part = self._part(record)
                        record.offset = part.stat().st_size if part.exists() else 0
                        self._side(record).unlink(missing_ok=True)
                    uploads.records[record.upload_id] = record
        return uploads

    @staticmethod
    def location(record: UploadRecord) -> str:
        return f"/api/sessions/{record.session_id}/files/{record.upload_id}"

    def records(self, session_id: str) -> list[UploadRecord]:
        """The session's files: every upload but the partials of a concatenation."""
        return sorted(
            (r for r in self._session(session_id).records.values() if not r.partial),
            key=lambda r: r.created,
        )

    def unfinished(self, session_id: str) -> list[UploadRecord]:
        """Uploads still waiting for bytes (not those whose bytes are in, being published)."""
        return [r for r in self.records(session_id) if not r.done and not self.is_publishing(r)]

    def publishing(self, session_id: str) -> list[UploadRecord]:
        """Uploads whose every byte is in, being stored in the session's volume."""
        return [r for r in self.records(session_id) if not r.done and self.is_publishing(r)]

    def is_publishing(self, record: UploadRecord) -> bool:
        return record.upload_id in self._publishing

    async def wait_published(self, session_id: str) -> None:
        """Until no upload of the session is being published (each ends done or failed)."""
        while True:
            tasks = [
                t
                for uid, t in self._publishing.items()
                if self._session(session_id).records.get(uid) is not None
            ]
            if not tasks:
                return
            await asyncio.gather(*tasks, return_exceptions=True)

    def partials(self, session_id: str) -> list[UploadRecord]:
        """Partial uploads (concatenation) still waiting for their final upload."""
        return [r for r in self._session(session_id).records.values() if r.partial]

    def get(self, session_id: str, upload_id: str) -> UploadRecord:
        record = self._session(session_id).records.get(upload_id)
        if record is None:
            raise NotFound("There is no such upload in this session.")
        if (not record.done or record.partial) and record.expires < time.time():
            self._drop(record)
            access_log.info("upload expired: %s", self._describe(record))
            raise Gone("This upload expired before it was finished; start it again.")
        return record

    # -- creation ------------------------------------------------------------------
    def relative_path(self, metadata: dict[str, str]) -> str:
        """The checked relative path that ``metadata`` names (422 if none or unsafe)."""
        raw_path = name_from_metadata(metadata)
        if not raw_path:
            raise InvalidInput.field(
                "relativePath", "Upload-Metadata must name the file (relativePath or filename)."
            )
        return clean_relative_path(raw_path)

    def check_new_path(self, session_id: str, relative: str) -> None:
        for other in self._session(session_id).records.values():
            if other.relative_path == relative and not other.partial:
                # an unfinished twin is named so that a client whose creation response was
                # lost can find it (HEAD it, then resume) instead of being stuck
                headers = {} if other.done else {"Location": self.location(other)}
                raise Conflict(
                    f"A file named {relative!r} is already part of this session.",
                    headers=headers,
                )

    def _check_length(self, length: int | None) -> None:
        if length is not None and length > self.max_size:
            raise TooLarge(f"Upload-Length {length} is over the limit of {self.max_size} bytes.")

    def create(
        self,
        session_id: str,
        length: int | None,
        metadata_header: str,
        metadata: dict[str, str],
    ) -> UploadRecord:
        """A new upload of a named file; ``length`` None defers it to a later PATCH."""
        relative = self.relative_path(metadata)
        self._check_length(length)
        self.check_new_path(session_id, relative)
        record = self._register(session_id, length, relative, metadata_header, metadata)
        self._part(record).touch()
        access_log.info("upload created: %s", self._describe(record))
        return record

    def create_partial(
        self, session_id: str, length: int | None, metadata_header: str, metadata: dict[str, str]
    ) -> UploadRecord:
        """A partial upload (concatenation): bytes for a later final upload, never a file."""
        self._check_length(length)
        record = self._register(session_id, length, "", metadata_header, metadata, concat=PARTIAL)
        self._part(record).touch()
        return record

    def add_staged(self, session_id: str, relative: str, staged: Path, length: int) -> UploadRecord:
        """A file that arrived whole (the legacy form), flushed, in the staging area: it
        becomes an upload whose bytes are all in, and is published like a tus upload's."""
        self.check_new_path(session_id, relative)
        record = self._register(session_id, length, relative, "", {"relativePath": relative})
        os.replace(staged, self._part(record))
        record.offset = length
        self._publish_later(record)
        return record

    def _register(
        self,
        session_id: str,
        length: int | None,
        relative: str,
        metadata_header: str,
        metadata: dict[str, str],
        *,
        done: bool = False,
        concat: str = "",
        parts: list[str] | None = None,
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
            concat=concat,
            parts=list(parts or []),
            offset=length if done and length is not None else 0,
        )
        self._dir(session_id).mkdir(parents=True, exist_ok=True)
        self._save(record)
        self._session(session_id).records[record.upload_id] = record
        return record

    # -- concatenation -------------------------------------------------------------
    def partials_for_final(self, session_id: str, upload_ids: list[str]) -> list[UploadRecord]:
        """The complete partial uploads a final upload names (400/404 otherwise)."""
        if not upload_ids:
            raise MalformedRequest(
                "Upload-Concat: final must list the partial uploads; nothing was stored."
            )
        if len(set(upload_ids)) != len(upload_ids):
            raise MalformedRequest(
                "Upload-Concat: final names a partial upload twice; nothing was stored."
            )
        parts = []
        for upload_id in upload_ids:
            record = self._session(session_id).records.get(upload_id)
            if record is None or (record.expires < time.time() and not record.done):
                raise MalformedRequest(
                    f"Upload-Concat: final names {upload_id!r}, which is not an upload of "
                    "this session; nothing was stored."
                )
            if not record.partial:
                raise MalformedRequest(
                    f"Upload-Concat: final names {upload_id!r}, which was not created with "
                    "Upload-Concat: partial; nothing was stored."
                )
            if not record.done or record.upload_id in self._busy:
                raise MalformedRequest(
                    f"The partial upload {upload_id!r} is not complete yet ({record.offset} "
                    "bytes received); this server assembles only complete partial uploads. "
                    "Nothing was stored."
                )
            parts.append(record)
        return parts

    async def create_final(
        self,
        session_id: str,
        upload_ids: list[str],
        metadata_header: str,
        metadata: dict[str, str],
    ) -> UploadRecord:
        """Assemble complete partial uploads into one file, publish it, drop the partials."""
        relative = self.relative_path(metadata)
        parts = self.partials_for_final(session_id, upload_ids)
        length = sum(p.length or 0 for p in parts)
        self._check_length(length)
        self.check_new_path(session_id, relative)
        record = self._register(
            session_id,
            length,
            relative,
            metadata_header,
            metadata,
            concat=FINAL,
            parts=[p.upload_id for p in parts],
        )
        held = {p.upload_id for p in parts} | {record.upload_id}
        self._busy |= held
        try:
            try:
                await asyncio.to_thread(self._assemble, record, parts)
            except OSError as exc:
                self._drop(record)
                raise storage_error(exc, resumable=False) from exc
            record.offset = length
            try:
                await self._publish(record)
            except BaseException:
                self._drop(record)
                raise
        finally:
            self._busy -= held
        for part in parts:
            self._drop(part)
        self._on_progress(record)
        return record

    def _assemble(self, record: UploadRecord, parts: list[UploadRecord]) -> None:
        """The partials' bytes, in order, into the final's ``.part``, then one flush."""
        fd = os.open(self._part(record), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            for part in parts:
                src = os.open(self._part(part), os.O_RDONLY)
                try:
                    self.writer.copy(src, fd, part.length or 0)
                finally:
                    os.close(src)
            self.writer.fsync(fd)
        finally:
            os.close(fd)

    # -- appending -----------------------------------------------------------------
    def _limit(self, record: UploadRecord) -> int:
        return record.length if record.length is not None else self.max_size

    def begin_append(self, record: UploadRecord, offset: int, content_length: int | None) -> None:
        """Every check that must pass before a byte of a PATCH body is read."""
        if record.concat == FINAL:
            raise Forbidden("A final (concatenated) upload takes no PATCH.")
        if record.upload_id in self._busy:
            raise Locked("Another request is writing to this upload; retry in a moment.")
        if record.upload_id in self._publishing:
            raise Conflict(
                "This upload is complete and being stored in the session's volume; its "
                "upload event says done when it is.",
                headers=self.offset_headers(record),
            )
        if record.done:
            raise Conflict("This upload is already complete.", headers=self.offset_headers(record))
        if offset != record.offset:
            raise Conflict(
                f"Upload-Offset {offset} does not match the server's offset {record.offset}.",
                headers=self.offset_headers(record),
            )
        if content_length is not None and offset + content_length > self._limit(record):
            what = "Upload-Length" if record.length is not None else "the size limit"
            raise TooLarge(
                f"This chunk would end at byte {offset + content_length}, past {what} "
                f"{self._limit(record)}."
            )

    def declare_length(self, record: UploadRecord, length: int, content_length: int | None) -> None:
        """``Upload-Length`` sent on a PATCH: fixes a deferred length (else must match)."""
        if record.length is not None:
            if length != record.length:
                raise MalformedRequest(
                    f"Upload-Length {length} differs from this upload's length {record.length}."
                )
            return
        self._check_length(length)
        if length < record.offset + (content_length or 0):
            raise MalformedRequest(
                f"Upload-Length {length} is less than the bytes already sent in this upload."
            )
        record.length = length
        self._save(record)

    def offset_headers(self, record: UploadRecord) -> dict[str, str]:
        done = record.done or record.upload_id in self._publishing
        offset = record.length if done and record.length is not None else record.offset
        return {"Upload-Offset": str(offset)}

    async def append(
        self,
        record: UploadRecord,
        offset: int,
        body: AsyncIterator[bytes],
        *,
        content_length: int | None,
        checksum: tuple[str, bytes] | None,
        upload_length: int | None = None,
    ) -> UploadRecord:
        """Stream ``body`` onto the upload; returns the record with its new offset.

        Bytes are written as they arrive; a dropped connection keeps them. With a
        checksum, the chunk is kept aside and appended only when it matches.
        """
        self.begin_append(record, offset, content_length)
        if upload_length is not None:
            self.declare_length(record, upload_length, content_length)
        self._busy.add(record.upload_id)
        try:
            if checksum is None:
                await self._append_plain(record, body)
            else:
                await self._append_verified(record, body, checksum)
            record.expires = time.time() + self._expiry
            if record.complete:
                await self._finish(record)
            if not record.partial and record.length is not None:
                self._on_progress(record)
            return record
        finally:
            self._busy.discard(record.upload_id)

    async def _append_plain(self, record: UploadRecord, body: AsyncIterator[bytes]) -> None:
        """Write the body as it arrives; in chunk mode, flush it before the answer."""
        part = self._part(record)
        start = record.offset
        limit = self._limit(record)
        fd = os.open(part, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        hint = WritebackHint(self.writer, fd, start)
        try:
            try:
                async for chunk in body:
                    if not chunk:
                        continue
                    if hint.position + len(chunk) > limit:
                        # refuse the chunk whole: nothing of this PATCH is appended
                        os.ftruncate(fd, start)
                        raise TooLarge(f"The body runs past Upload-Length {limit}.")
                    hint.wrote(self._write_all(fd, chunk))
            except OSError as exc:
                raise storage_error(exc) from exc
            finally:
                if self.sync == "chunk":
                    await self._flush_patch(fd, part, start)
                else:
                    os.close(fd)
        finally:
            record.offset = part.stat().st_size

    async def _flush_patch(self, fd: int, part: Path, start: int) -> None:
        """Chunk mode: the PATCH's bytes are acknowledged only once flushed (closes ``fd``)."""
        try:
            await asyncio.to_thread(_sync_and_close, self.writer, fd)
        except Exception as exc:  # any failure: not known durable, so take it back
            with contextlib.suppress(OSError):
                os.truncate(part, start)
            raise InsufficientStorage(
                "The server could not make the data durable; "
                "the upload can be resumed from its current offset."
            ) from exc

    async def _append_verified(
        self, record: UploadRecord, body: AsyncIterator[bytes], checksum: tuple[str, bytes]
    ) -> None:
        algorithm, expected = checksum
        digest = hashlib.new(algorithm)
        side = self._side(record)
        limit = self._limit(record)
        fd = os.open(side, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        written = 0
        try:
            try:
                async for chunk in body:
                    if not chunk:
                        continue
                    if record.offset + written + len(chunk) > limit:
                        raise TooLarge(f"The body runs past Upload-Length {limit}.")
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
                if self.sync == "chunk":
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
        await self._finish(record)

    async def finish_if_stranded(self, record: UploadRecord) -> bool:
        """Finish an upload whose bytes all arrived but that was never published (the
        server was killed in between); True if it was finished now."""
        busy = record.upload_id in self._busy or record.upload_id in self._publishing
        if record.done or not record.complete or busy:
            return False
        self._busy.add(record.upload_id)
        try:
            await self._finish(record)
        finally:
            self._busy.discard(record.upload_id)
        return True

    # -- completion: flush, then publish ---------------------------------------------
    async def _finish(self, record: UploadRecord) -> None:
        """The last byte is in: flush the file once, then publish it in the background (a
        partial upload is only marked complete: its bytes go with the final file)."""
        if record.partial:
            record.done = True
            self._save(record)
            return
        await self._flush_complete(record)
        self._publish_later(record)

    async def _flush_complete(self, record: UploadRecord) -> None:
        if self.sync == "complete":
            try:
                await asyncio.to_thread(sync_file, self.writer, self._part(record))
            except Exception as exc:
                # which acknowledged bytes the failed flush lost is unknown: none of the
                # file is known durable, so it is taken back whole and the client resends
                with contextlib.suppress(OSError):
                    os.truncate(self._part(record), 0)
                record.offset = 0
                raise InsufficientStorage(
                    "The server could not flush the complete file to disk; nothing of it is "
                    "known to be stored, so the upload starts again from byte 0."
                ) from exc

    # -- publishing: into the volume, in the background, idempotent -------------------
    def _publish_later(self, record: UploadRecord) -> None:
        """Publish after the last PATCH is answered: a multi-GB ``batch_upload`` on Modal
        may outlast a request (150 s) and the client's read timeout. ``done`` arrives with
        the upload event (and the session view); until then HEAD answers the full offset,
        a PATCH is 409 and ``POST /run`` is 409."""
        if record.upload_id in self._publishing:
            return
        task = asyncio.create_task(self._publish_with_retries(record))
        self._publishing[record.upload_id] = task
        task.add_done_callback(lambda _t: self._publishing.pop(record.upload_id, None))

    async def _publish_with_retries(self, record: UploadRecord) -> None:
        delay = 1.0
        for attempt in range(PUBLISH_ATTEMPTS):
            try:
                await self._publish(record)
            except Conflict as exc:  # another file of that name is in the volume: final
                self._publish_failed(record, str(exc))
                return
            except Exception as exc:
                if attempt == PUBLISH_ATTEMPTS - 1:
                    logger.exception("publishing %s failed", self._describe(record))
                    self._publish_failed(record, f"{type(exc).__name__}: {exc}")
                    return
                logger.warning("publishing %s failed, retrying", self._describe(record))
                await asyncio.sleep(delay)
                delay *= 2
            else:
                self._on_progress(record)
                return

    def _publish_failed(self, record: UploadRecord, reason: str) -> None:
        """Give the bytes back: the client resends the file from byte 0."""
        with contextlib.suppress(OSError):
            os.truncate(self._part(record), 0)
        record.offset = 0
        record.sha256 = None
        with contextlib.suppress(OSError):
            self._save(record)
        if self.on_publish_failed is not None:
            self.on_publish_failed(record, reason)
        self._on_progress(record)

    async def _publish(self, record: UploadRecord) -> None:
        """Move the complete, flushed ``.part`` file into the volume and mark it done.

        Idempotent: the file's sha256 is saved with its record before the move, so when a
        crash came between the move and ``done`` (the ``.part`` file may be gone already),
        a volume that holds a file of that name with the same size and sha256 completes
        the record instead of refusing it. Then the staging area is checkpointed (on
        Modal: the staging volume committed), removal and ``done`` together.
        """
        part = self._part(record)
        size = record.length or 0
        if part.exists():
            if record.sha256 is None:
                record.sha256 = await asyncio.to_thread(file_sha256, part)
                self._save(record)
            try:
                await self._volumes.publish(record.session_id, record.relative_path, part)
            except Conflict:
                if not await self._volumes.holds(
                    record.session_id, record.relative_path, size, record.sha256
                ):
                    raise
                part.unlink(missing_ok=True)  # the same bytes are stored already
        elif record.sha256 is None or not await self._volumes.holds(
            record.session_id, record.relative_path, size, record.sha256
        ):
            raise FileNotFoundError(f"the staged file of {self._describe(record)} is gone")
        record.done = True
        record.offset = size
        self._save(record)
        await self._volumes.checkpoint()
        elapsed = time.time() - record.created
        access_log.info("upload completed: %s in %.2f s", self._describe(record), elapsed)

    def forget_session(self, session_id: str) -> None:
        """Remove the session's upload records and leftovers from the staging area."""
        if any(
            uid in self._busy or uid in self._publishing
            for uid in self._session(session_id).records
        ):
            return  # still in use: kept (swept by expiry or the next fold)
        shutil.rmtree(self._dir(session_id), ignore_errors=True)
        self._sessions[session_id] = _SessionUploads(loaded=True)

    def resume_publishing(self) -> int:
        """At start-up: publish again every upload whose bytes were all in when the last
        process stopped (or crashed) before it was marked done; idempotent."""
        count = 0
        if not self._root.is_dir():
            return 0
        for folder in self._root.iterdir():
            if not (folder.is_dir() and len(folder.name) == 32):
                continue
            for record in list(self._session(folder.name).records.values()):
                if record.done or record.partial or record.length is None:
                    continue
                if record.complete or (record.sha256 and not self._part(record).exists()):
                    self._publish_later(record)
                    count += 1
        return count

    async def stop_publishing(self) -> None:
        """Shutdown: cancel publishes in flight (the next start resumes them)."""
        tasks = list(self._publishing.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def close(self) -> None:
        """Nothing runs in the background any more; kept for the workspace's shutdown."""

    # -- termination and expiry ----------------------------------------------------
    def terminate(self, record: UploadRecord) -> None:
        if record.upload_id in self._busy or record.upload_id in self._publishing:
            raise Locked("This upload is being written; retry the termination in a moment.")
        if record.done and not record.partial:
            raise Conflict("A complete upload cannot be terminated.")
        self._drop(record)
        if not record.partial:
            access_log.info(
                "upload terminated: %s after %.2f s",
                self._describe(record),
                time.time() - record.created,
            )

    def _drop(self, record: UploadRecord) -> None:
        self._part(record).unlink(missing_ok=True)
        self._side(record).unlink(missing_ok=True)
        self._record_path(record).unlink(missing_ok=True)
        self._session(record.session_id).records.pop(record.upload_id, None)

    def sweep_expired(self) -> int:
        """Remove every unfinished upload (and every unused partial) past its expiry."""
        now = time.time()
        count = 0
        if self._root.is_dir():
            for folder in self._root.iterdir():
                if folder.is_dir() and len(folder.name) == 32:
                    for record in list(self._session(folder.name).records.values()):
                        busy = (
                            record.upload_id in self._busy or record.upload_id in self._publishing
                        )
                        stale = not record.done or record.partial
                        if stale and not busy and record.expires < now:
                            self._drop(record)
                            access_log.info("upload expired: %s", self._describe(record))
                            count += 1
        return count

    @staticmethod
    def _describe(record: UploadRecord) -> str:
        what = record.relative_path or f"partial upload {record.upload_id}"
        length = "deferred" if record.length is None else str(record.length)
        return (
            f"session {record.session_id} {what!r} ({record.offset}/{length} bytes, "
            f"id {record.upload_id})"
        )

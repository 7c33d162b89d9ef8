"""Uploading one file over tus: streamed PATCHes, retries, resume from the server's offset."""

from __future__ import annotations

import base64
import mimetypes
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin

import httpx

from dashboard.client.chunking import ChunkSizer
from dashboard.client.http import (
    MAX_ATTEMPTS,
    OFFSET_CONTENT_TYPE,
    READ_BLOCK,
    RETRY_STATUSES,
    TUS_VERSION,
    Api,
    ClientError,
    RateLimit,
    ResumeImpossible,
    UsageError,
    backoff,
    problem_detail,
)
from dashboard.client.output import FileProgress, UploadProgress


@dataclass(frozen=True)
class LocalFile:
    path: Path
    relative: str
    size: int
    mtime_ns: int


@dataclass
class Uploader:
    """Sends files over tus; one instance is shared by every upload lane (thread-safe).

    A file that fits in the next chunk goes up with its creation (creation-with-upload):
    one request per small file. Larger ones are created empty and PATCHed in chunks the
    ``sizer`` picks (about a second of transfer each)."""

    api: Api
    session_id: str
    files_url: str
    sizer: ChunkSizer
    save_url: Callable[[str, str], None]
    rate: RateLimit = field(default_factory=lambda: RateLimit(None))
    sent: int = 0  # body bytes this process handed to the network
    requests: int = 0  # tus requests sent
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _count(self, *, sent: int = 0, requests: int = 0) -> None:
        with self._lock:
            self.sent += sent
            self.requests += requests

    def _metadata(self, local: LocalFile) -> str:
        pairs = {"relativePath": local.relative, "filename": local.path.name}
        kind, _ = mimetypes.guess_type(local.path.name)
        if kind:
            pairs["filetype"] = kind
        return ",".join(
            f"{key} {base64.b64encode(value.encode()).decode('ascii')}"
            for key, value in pairs.items()
        )

    def create(self, local: LocalFile, progress: FileProgress) -> tuple[str | None, int]:
        """Create the upload (with the whole file when it fits a chunk): (url, offset).
        The url is None when the server already holds the file complete."""
        endpoint = self.api.url(self.files_url)
        failures = 0
        retried = False  # an earlier attempt may have reached the server
        while True:
            with_body = 0 < local.size <= self.sizer.next()
            headers = {
                "Tus-Resumable": TUS_VERSION,
                "Upload-Length": str(local.size),
                "Upload-Metadata": self._metadata(local),
            }
            if with_body:
                headers["Content-Type"] = OFFSET_CONTENT_TYPE
                headers["Content-Length"] = str(local.size)
                progress.set_position(0)
            self._count(requests=1)
            started = time.monotonic()
            try:
                response = self.api.http.post(
                    endpoint,
                    headers=headers,
                    content=self._body(local, 0, local.size, progress) if with_body else None,
                )
            except httpx.TransportError as exc:
                failures += 1
                if failures >= MAX_ATTEMPTS or not self.api.contacted:
                    raise self.api.unreachable(exc) from exc
                time.sleep(backoff(failures))
                retried = True
                continue
            self.api.contacted = True
            status = response.status_code
            location = response.headers.get("location")
            if status == 201 and location:
                if with_body:
                    self.sizer.record(local.size, time.monotonic() - started)
                url = urljoin(endpoint, location)
                offset = int(response.headers.get("upload-offset") or 0)
                if offset < local.size:
                    self.save_url(local.relative, url)  # only what may need a resume
                return url, offset
            if status == 409 and location:
                # an unfinished upload of this path (ours, whose creation reply was lost)
                url = urljoin(endpoint, location)
                twin_offset = self.head(url)
                if twin_offset is not None:
                    self.save_url(local.relative, url)
                    return url, twin_offset
            if status == 409 and retried:
                return None, local.size  # our lost creation completed the file
            if status in RETRY_STATUSES and failures + 1 < MAX_ATTEMPTS:
                failures += 1
                time.sleep(backoff(failures))
                retried = True
                continue
            if status == 409:
                detail = problem_detail(response)
                raise ResumeImpossible(
                    f"{local.relative}: the session refused a new upload ({detail})"
                )
            if status in (400, 413, 422):
                raise UsageError(f"{local.relative}: {problem_detail(response)}")
            raise ClientError(
                f"{local.relative}: creating the upload failed: {problem_detail(response)}"
            )

    def head(self, url: str) -> int | None:
        """The server's offset, or None when the upload is gone (expired or unknown)."""
        attempt = 0
        while True:
            self._count(requests=1)
            response = self.api.request("HEAD", url, headers={"Tus-Resumable": TUS_VERSION})
            if response.status_code in (404, 410):
                return None
            if response.status_code == 200 and response.headers.get("upload-offset"):
                return int(response.headers["upload-offset"])
            attempt += 1
            if response.status_code == 423 and attempt < MAX_ATTEMPTS:
                time.sleep(backoff(attempt))
                continue
            raise ClientError(f"reading an upload's offset failed: {problem_detail(response)}")

    def _body(
        self, local: LocalFile, offset: int, size: int, progress: FileProgress
    ) -> Iterator[bytes]:
        with open(local.path, "rb") as handle:
            handle.seek(offset)
            remaining = size
            while remaining:
                block = handle.read(min(READ_BLOCK, remaining))
                if not block:
                    raise ClientError(f"{local.path} got shorter while it was being uploaded.")
                remaining -= len(block)
                self.rate.wait(len(block))
                self._count(sent=len(block))
                progress.advance(len(block))
                yield block

    def upload(self, local: LocalFile, url: str | None, board: UploadProgress) -> None:
        """Send ``local`` from the server's offset to the end, resuming after any failure."""
        current = os.stat(local.path)
        if current.st_size != local.size or current.st_mtime_ns != local.mtime_ns:
            raise ClientError(f"{local.path} changed since the command started; re-run it.")
        offset = self.head(url) if url else None
        progress = board.start(local.relative, local.size, offset or 0)
        if url is None or offset is None:
            url, offset = self.create(local, progress)
        failures = 0
        while offset < local.size and url is not None:
            size = min(self.sizer.next(), local.size - offset)
            headers = {
                "Tus-Resumable": TUS_VERSION,
                "Content-Type": OFFSET_CONTENT_TYPE,
                "Upload-Offset": str(offset),
                "Content-Length": str(size),
            }
            self._count(requests=1)
            started = time.monotonic()
            try:
                response = self.api.http.patch(
                    url, content=self._body(local, offset, size, progress), headers=headers
                )
            except httpx.TransportError as exc:
                failures += 1
                if failures >= MAX_ATTEMPTS:
                    raise self.api.unreachable(exc) from exc
                time.sleep(backoff(failures))
                fresh = self._refresh(local, url)
                url, offset = self.create(local, progress) if fresh is None else (url, fresh)
                progress.set_position(offset)
                continue
            status = response.status_code
            if status == 204:
                failures = 0
                self.sizer.record(size, time.monotonic() - started)
                offset = int(response.headers.get("upload-offset", offset + size))
                progress.set_position(offset)
                continue
            failures += 1
            if failures >= MAX_ATTEMPTS:
                raise ClientError(f"{local.relative}: {problem_detail(response)}")
            if status in (404, 410):
                url, offset = self.create(local, progress)
            elif status in (409, 423) or status in RETRY_STATUSES:
                if status != 409:
                    time.sleep(backoff(failures))
                fresh = self._refresh(local, url)
                url, offset = self.create(local, progress) if fresh is None else (url, fresh)
            else:
                raise ClientError(
                    f"{local.relative}: the server refused a chunk: {problem_detail(response)}"
                )
            progress.set_position(offset)
        progress.done()

    def _refresh(self, local: LocalFile, url: str) -> int | None:
        offset = self.head(url)
        if offset is not None and offset > local.size:
            raise ClientError(f"{local.relative}: the server holds more bytes than the file has.")
        return offset


# -- following ----------------------------------------------------------------------------

"""Uploading one file over tus: streamed PATCHes, retries, resume from the server's offset."""

from __future__ import annotations

import base64
import mimetypes
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin

import httpx

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
from dashboard.client.output import UploadProgress


@dataclass(frozen=True)
class LocalFile:
    path: Path
    relative: str
    size: int
    mtime_ns: int


@dataclass
class Uploader:
    api: Api
    session_id: str
    files_url: str
    chunk_size: int
    save_url: Callable[[str, str], None]
    rate: RateLimit = field(default_factory=lambda: RateLimit(None))
    sent: int = 0  # body bytes this process handed to the network

    def _metadata(self, local: LocalFile) -> str:
        pairs = {"relativePath": local.relative, "filename": local.path.name}
        kind, _ = mimetypes.guess_type(local.path.name)
        if kind:
            pairs["filetype"] = kind
        return ",".join(
            f"{key} {base64.b64encode(value.encode()).decode('ascii')}"
            for key, value in pairs.items()
        )

    def create(self, local: LocalFile) -> str:
        response = self.api.request(
            "POST",
            self.files_url,
            headers={
                "Tus-Resumable": TUS_VERSION,
                "Upload-Length": str(local.size),
                "Upload-Metadata": self._metadata(local),
            },
        )
        if response.status_code == 201 and response.headers.get("location"):
            url = urljoin(self.api.url(self.files_url), response.headers["location"])
            self.save_url(local.relative, url)
            return url
        if response.status_code == 409:
            raise ResumeImpossible(
                f"{local.relative}: the session refused a new upload ({problem_detail(response)})"
            )
        if response.status_code in (400, 413, 422):
            raise UsageError(f"{local.relative}: {problem_detail(response)}")
        raise ClientError(
            f"{local.relative}: creating the upload failed: {problem_detail(response)}"
        )

    def head(self, url: str) -> int | None:
        """The server's offset, or None when the upload is gone (expired or unknown)."""
        attempt = 0
        while True:
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
        self, local: LocalFile, offset: int, size: int, progress: UploadProgress
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
                self.sent += len(block)
                progress.advance(len(block))
                yield block

    def upload(self, local: LocalFile, url: str | None, progress: UploadProgress) -> None:
        """Send ``local`` from the server's offset to the end, resuming after any failure."""
        current = os.stat(local.path)
        if current.st_size != local.size or current.st_mtime_ns != local.mtime_ns:
            raise ClientError(f"{local.path} changed since the command started; re-run it.")
        offset = self.head(url) if url else None
        if url is None or offset is None:
            url, offset = self.create(local), 0
        progress.start(local.relative, local.size, offset)
        must_patch = True  # an empty file still needs one (empty) PATCH to complete
        failures = 0
        while offset < local.size or (local.size == 0 and must_patch):
            size = min(self.chunk_size, local.size - offset)
            headers = {
                "Tus-Resumable": TUS_VERSION,
                "Content-Type": OFFSET_CONTENT_TYPE,
                "Upload-Offset": str(offset),
                "Content-Length": str(size),
            }
            try:
                response = self.api.http.patch(
                    url, content=self._body(local, offset, size, progress), headers=headers
                )
            except httpx.TransportError as exc:
                failures += 1
                if failures >= MAX_ATTEMPTS:
                    raise self.api.unreachable(exc) from exc
                time.sleep(backoff(failures))
                offset = self._refresh(local, url)
                if offset is None:
                    url, offset = self.create(local), 0
                progress.set_position(offset)
                continue
            status = response.status_code
            if status == 204:
                failures = 0
                must_patch = False
                offset = int(response.headers.get("upload-offset", offset + size))
                progress.set_position(offset)
                continue
            failures += 1
            if failures >= MAX_ATTEMPTS:
                raise ClientError(f"{local.relative}: {problem_detail(response)}")
            if status in (404, 410):
                url, offset = self.create(local), 0
            elif status in (409, 423) or status in RETRY_STATUSES:
                if status != 409:
                    time.sleep(backoff(failures))
                must_patch = status != 409
                fresh = self._refresh(local, url)
                if fresh is None:
                    url, fresh = self.create(local), 0
                offset = fresh
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

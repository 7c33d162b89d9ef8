"""What the agent wrote under a volume's ``results/``, as the dashboard serves it.

Framework-free rules for the artifact routes (``api/routes/artifacts.py``):

* :class:`Artifact` — one file of ``results/`` (its path inside ``results/``, size, mtime);
  the stores (``dashboard/volumes.py``, ``dashboard_modal/volumes.py``) list them and open
  them as an :class:`ArtifactReader`, which streams any byte range in bounded chunks.
* :func:`clean_artifact_path` — DESIGN's path rules (422), and no dot-file or dot-folder
  (the agent's temporary files): those are simply not artifacts (404).
* :func:`present` — the ``Content-Type`` and whether a browser may show the file inline:
  text, JSON, Markdown, images and PDF inline; the rest as an attachment. HTML, SVG, XML
  and scripts are never a live page on the dashboard's origin: every artifact but a PDF is
  sent with ``Content-Security-Policy: sandbox`` (no script, no same-origin access), and
  HTML, XML and scripts are attachments as well.
* :func:`parse_range` — one ``bytes=`` range (206); an unsatisfiable one is a 416;
  several ranges or a malformed header mean the whole file (RFC 9110 lets a server ignore
  Range).
* :func:`zip_stream` — every artifact as one zip, produced while it is sent: the stdlib
  ``zipfile`` writes to a non-seekable sink (sizes and CRCs go in data descriptors), the
  sink is drained after every chunk, so memory stays flat whatever the artifacts' size.
"""

from __future__ import annotations

import asyncio
import mimetypes
import re
import time
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote

from dashboard.errors import NotFound, RangeNotSatisfiable
from dashboard.paths import clean_relative_path

RESULTS_DIR = "results"
READ_CHUNK = 256 * 1024
"""Bytes read from a volume at a time (local reads, zip members)."""

_TEXT_TYPES = {
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".json": "application/json",
    ".jsonl": "application/x-ndjson",
    ".ndjson": "application/x-ndjson",
    ".csv": "text/csv",
    ".tsv": "text/tab-separated-values",
    ".txt": "text/plain",
    ".log": "text/plain",
    ".yaml": "application/yaml",
    ".yml": "application/yaml",
    ".toml": "application/toml",
    ".parquet": "application/vnd.apache.parquet",
    ".svg": "image/svg+xml",
    ".webp": "image/webp",
}
_INLINE_APPLICATION = frozenset(
    {
        "application/json",
        "application/x-ndjson",
        "application/pdf",
        "application/yaml",
        "application/toml",
    }
)
# shown as text or run by a browser: never inline on our origin
_ACTIVE = frozenset(
    {
        "text/html",
        "application/xhtml+xml",
        "text/xml",
        "application/xml",
        "text/javascript",
        "application/javascript",
        "application/ecmascript",
        "text/ecmascript",
        "application/x-javascript",
    }
)
SANDBOX_CSP = "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'"
"""Sent with every artifact but a PDF (Chromium's PDF viewer refuses a sandboxed document)."""


@dataclass(frozen=True)
class Artifact:
    """One file under ``results/``: ``path`` is relative to ``results/``."""

    path: str
    size: int
    mtime: float

    @property
    def volume_path(self) -> str:
        """The path relative to the volume (as in the session's ``artifacts`` list)."""
        return f"{RESULTS_DIR}/{self.path}"

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def etag(self) -> str:
        return f'"{self.size:x}-{int(self.mtime * 1_000_000):x}"'


class ArtifactReader(Protocol):
    """An opened artifact: ``chunks`` streams ``[start, end)`` in bounded pieces."""

    @property
    def artifact(self) -> Artifact: ...

    def chunks(self, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]: ...

    async def close(self) -> None: ...


ArtifactOpener = Callable[[str], Awaitable[ArtifactReader]]


def clean_artifact_path(raw: str) -> str:
    """A path inside ``results/`` by DESIGN's rules (422), no dot-segment (404)."""
    clean = clean_relative_path(raw, field="path")
    if any(segment.startswith(".") for segment in clean.split("/")):
        raise NotFound(f"There is no artifact {clean!r} in this session.")
    return clean


def not_found(path: str) -> NotFound:
    return NotFound(f"There is no artifact {path!r} in this session.")


# -- how a file is presented -----------------------------------------------------------------
@dataclass(frozen=True)
class Presentation:
    content_type: str
    inline: bool
    sandbox: bool


def media_type(path: str) -> str:
    """The file's media type by its name; a compressed file is its compression's type."""
    name = path.rsplit("/", 1)[-1].lower()
    guessed, encoding = mimetypes.guess_type(name, strict=False)
    if encoding:  # report.csv.gz is gzip data, not text
        return {"gzip": "application/gzip", "bzip2": "application/x-bzip2"}.get(
            encoding, "application/octet-stream"
        )
    suffix = "." + name.rsplit(".", 1)[-1] if "." in name else ""
    return _TEXT_TYPES.get(suffix) or guessed or "application/octet-stream"


def present(path: str) -> Presentation:
    """Content type (with ``charset=utf-8`` for text), inline or attachment, sandboxed."""
    kind = media_type(path)
    if kind in _ACTIVE:
        inline = False
    elif kind.startswith(("text/", "image/")) or kind in _INLINE_APPLICATION:
        inline = True
    else:
        inline = False
    textual = kind.startswith("text/") or kind in _INLINE_APPLICATION - {"application/pdf"}
    content_type = f"{kind}; charset=utf-8" if textual or kind in _ACTIVE else kind
    return Presentation(content_type, inline, sandbox=kind != "application/pdf")


def content_disposition(inline: bool, filename: str) -> str:
    """RFC 6266: an ASCII fallback name and the UTF-8 name."""
    fallback = re.sub(r"[^A-Za-z0-9._ -]", "_", filename) or "artifact"
    kind = "inline" if inline else "attachment"
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def http_date(timestamp: float) -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(timestamp))


# -- Range -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # exclusive

    @property
    def length(self) -> int:
        return self.end - self.start

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end - 1}/{size}"


_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The single range asked for, or ``None`` for the whole file.

    ``bytes=a-b``, ``bytes=a-`` and ``bytes=-n`` are understood; a range starting past the
    end (or a suffix of 0 bytes) raises :class:`RangeNotSatisfiable` carrying
    ``Content-Range: bytes */size``. Several ranges or a malformed header: ``None``.
    """
    if not header or "," in header:
        return None
    match = _RANGE.match(header)
    if match is None:
        return None
    first, last = match.group(1), match.group(2)
    if not first and not last:
        return None
    if not first:  # the last n bytes
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise _unsatisfiable(size)
        return ByteRange(max(0, size - suffix), size)
    start = int(first)
    end = size if not last else int(last) + 1
    if last and end <= start:
        return None  # a-b with b < a is syntactically invalid: ignore it
    if start >= size:
        raise _unsatisfiable(size)
    return ByteRange(start, min(end, size))


def _unsatisfiable(size: int) -> RangeNotSatisfiable:
    return RangeNotSatisfiable(
        f"The requested range is outside the file ({size} bytes).",
        headers={"Content-Range": f"bytes */{size}"},
    )


def if_range_allows(header: str | None, artifact: Artifact) -> bool:
    """``If-Range``: the range applies only if the validator still names this version."""
    if header is None:
        return True
    header = header.strip()
    if header.startswith(('"', "W/")):
        return header == artifact.etag
    return header == http_date(artifact.mtime)


# -- the zip ---------------------------------------------------------------------------------
class _Sink:
    """A write-only, non-seekable file: ``zipfile`` sees no ``seek``/``tell`` and writes
    sizes and CRCs after each member's data (data descriptors)."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self.written = 0

    def write(self, data: bytes) -> int:
        if data:
            self._parts.append(bytes(data))
            self.written += len(data)
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


_STORED_SUFFIXES = (
    ".gz",
    ".zip",
    ".png",
    ".jpg",
    ".jpeg",
    ".gif",
    ".webp",
    ".parquet",
    ".xz",
    ".bz2",
    ".zst",
    ".pdf",
)


def _zip_date(mtime: float) -> tuple[int, int, int, int, int, int]:
    moment = time.gmtime(max(mtime, 315_532_800))  # the zip format starts in 1980
    return (
        moment.tm_year,
        moment.tm_mon,
        moment.tm_mday,
        moment.tm_hour,
        moment.tm_min,
        moment.tm_sec,
    )


async def zip_stream(
    artifacts: Sequence[Artifact], opener: ArtifactOpener, *, folder: str = RESULTS_DIR
) -> AsyncIterator[bytes]:
    """The zip of ``artifacts`` as ``folder/<path>`` entries, produced while it is read.

    Compression runs in a worker thread, one chunk at a time; an artifact that disappears
    between the listing and its turn is left out.
    """
    sink = _Sink()
    archive = zipfile.ZipFile(sink, mode="w", compression=zipfile.ZIP_DEFLATED)
    try:
        for artifact in artifacts:
            try:
                reader = await opener(artifact.path)
            except NotFound:
                continue
            try:
                info = zipfile.ZipInfo(f"{folder}/{artifact.path}", _zip_date(artifact.mtime))
                info.external_attr = 0o644 << 16
                if artifact.path.lower().endswith(_STORED_SUFFIXES):
                    info.compress_type = zipfile.ZIP_STORED
                else:
                    info.compress_type = zipfile.ZIP_DEFLATED
                member = archive.open(info, mode="w", force_zip64=True)
                try:
                    async for chunk in reader.chunks():
                        await asyncio.to_thread(member.write, chunk)
                        if data := sink.take():
                            yield data
                finally:
                    await asyncio.to_thread(member.close)
            finally:
                await reader.close()
            if data := sink.take():
                yield data
        archive.close()
        if data := sink.take():
            yield data
    finally:
        # a client that went away: drop what zipfile still holds, write nothing more
        archive.fp = None

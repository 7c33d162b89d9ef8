"""tus 1.0.0 header rules that do not depend on a web framework."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from email.utils import formatdate

from dashboard.errors import MalformedRequest, PreconditionFailed, UnsupportedMediaType

TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = (
    "creation,creation-with-upload,creation-defer-length,termination,checksum,expiration,"
    "concatenation"
)
CHECKSUM_ALGORITHMS = ("sha1", "sha256", "md5")
OFFSET_CONTENT_TYPE = "application/offset+octet-stream"
_KEY = re.compile(r"^[^\s,]+$")


def check_resumable(headers: Mapping[str, str]) -> None:
    if headers.get("tus-resumable") != TUS_VERSION:
        raise PreconditionFailed(
            f"This server speaks tus {TUS_VERSION}; send the header Tus-Resumable: {TUS_VERSION}.",
            headers={"Tus-Version": TUS_VERSION},
        )


def check_offset_content_type(headers: Mapping[str, str]) -> None:
    ctype = headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != OFFSET_CONTENT_TYPE:
        raise UnsupportedMediaType(f"A tus PATCH must have Content-Type: {OFFSET_CONTENT_TYPE}.")


def parse_non_negative(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    value = value.strip()
    if not value.isdigit() or not value.isascii():
        raise MalformedRequest(f"{name} must be a non-negative integer, got {value[:40]!r}.")
    return int(value)


def parse_defer_length(value: str | None) -> bool:
    """``Upload-Defer-Length``: absent, or exactly ``1`` (the length comes later)."""
    if value is None:
        return False
    if value.strip() != "1":
        raise MalformedRequest(
            f"Upload-Defer-Length must be 1, got {value[:40]!r}; nothing was stored."
        )
    return True


def parse_metadata(header: str | None) -> dict[str, str]:
    """Decode ``Upload-Metadata``: comma-separated ``key base64value`` pairs."""
    if header is None or header.strip() == "":
        return {}
    out: dict[str, str] = {}
    for pair in header.split(","):
        parts = pair.strip().split(" ")
        if not parts[0] or len(parts) > 2 or not _KEY.match(parts[0]):
            raise MalformedRequest(
                "Upload-Metadata must be comma-separated 'key base64value' pairs."
            )
        key = parts[0]
        if key in out:
            raise MalformedRequest(f"Upload-Metadata repeats the key {key!r}.")
        if len(parts) == 1:
            out[key] = ""
            continue
        try:
            raw = base64.b64decode(parts[1], validate=True)
            out[key] = raw.decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise MalformedRequest(
                f"Upload-Metadata value of {key!r} is not base64 of UTF-8 text."
            ) from exc
    return out


def encode_metadata(metadata: Mapping[str, str]) -> str:
    return ",".join(
        f"{k} {base64.b64encode(v.encode()).decode()}" if v != "" else k
        for k, v in metadata.items()
    )


def parse_checksum(header: str | None) -> tuple[str, bytes] | None:
    """``Upload-Checksum: <algorithm> <base64 digest>`` → (algorithm, digest)."""
    if header is None:
        return None
    parts = header.strip().split(" ")
    if len(parts) != 2:
        raise MalformedRequest("Upload-Checksum must be '<algorithm> <base64 digest>'.")
    algorithm = parts[0].lower()
    if algorithm not in CHECKSUM_ALGORITHMS:
        raise MalformedRequest(
            f"Checksum algorithm {parts[0]!r} is not supported; use one of "
            + ", ".join(CHECKSUM_ALGORITHMS)
            + "."
        )
    try:
        digest = base64.b64decode(parts[1], validate=True)
    except binascii.Error as exc:
        raise MalformedRequest("Upload-Checksum digest is not base64.") from exc
    if len(digest) != hashlib.new(algorithm).digest_size:
        raise MalformedRequest(f"Upload-Checksum digest has the wrong length for {algorithm}.")
    return algorithm, digest


def http_date(timestamp: float) -> str:
    return formatdate(timestamp, usegmt=True)

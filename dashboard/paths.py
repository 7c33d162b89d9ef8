"""Relative-path rules for uploaded files: nothing is ever written outside a volume."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

from dashboard.errors import InvalidInput

MAX_SEGMENT_BYTES = 255
MAX_PATH_BYTES = 4096
_DRIVE = re.compile(r"^[A-Za-z]:")


def _has_control(text: str) -> bool:
    return any(unicodedata.category(ch) == "Cc" for ch in text)


def clean_relative_path(raw: str, field: str = "relativePath") -> str:
    """Return ``raw`` as a safe POSIX relative path, or raise a 422 naming ``field``.

    Backslashes are separators. Rejected: empty, absolute, a drive letter, an empty,
    ``.`` or ``..`` segment, NUL or any control character, a segment over 255 bytes
    (UTF-8) or a whole path over 4096 bytes.
    """
    if not isinstance(raw, str) or raw == "":
        raise InvalidInput.field(field, "the file path is empty.")
    if _has_control(raw):
        raise InvalidInput.field(field, "the file path contains a control character.")
    if len(raw.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise InvalidInput.field(field, f"the file path is longer than {MAX_PATH_BYTES} bytes.")
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput.field(field, "the file path is not valid Unicode.") from exc
    text = raw.replace("\\", "/")
    if text.startswith("/") or _DRIVE.match(text):
        raise InvalidInput.field(field, "the file path must be relative, not absolute.")
    segments = text.split("/")
    for segment in segments:
        if segment in ("", ".", ".."):
            raise InvalidInput.field(field, "the file path has an empty, '.' or '..' segment.")
        if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
            raise InvalidInput.field(
                field, f"a file path segment is longer than {MAX_SEGMENT_BYTES} bytes."
            )
    return "/".join(segments)


def resolve_inside(root: Path, relative: str) -> Path:
    """Join a cleaned relative path under ``root`` and prove it stays there.

    Parents that already exist as symlinks are never followed out of ``root``.
    """
    root_resolved = root.resolve()
    target = root_resolved.joinpath(*relative.split("/"))
    probe = target
    while probe != root_resolved:
        if probe.is_symlink():
            raise InvalidInput.field("relativePath", "the file path crosses a symbolic link.")
        probe = probe.parent
    if not target.resolve().is_relative_to(root_resolved):
        raise InvalidInput.field("relativePath", "the file path leaves the volume.")
    return target

"""The server's size limit, learnt before a session exists, and the sentence naming the
files over it ("big50.bin is 52 MB; this dashboard accepts files up to 40 MB")."""

from __future__ import annotations

from collections.abc import Sequence

from dashboard.client.http import TUS_VERSION, Api

LIMITS_PATH = "/api/sessions/files"  # session-less tus discovery (OPTIONS)
UNITS = ("bytes", "KB", "MB", "GB", "TB")
SHOWN = 3  # files named one by one; the rest are counted


def fetch_upload_limit(api: Api) -> int | None:
    """``Tus-Max-Size`` from ``OPTIONS /api/sessions/files``; None if the server does not say
    (an older server: it still refuses an oversize creation, only later)."""
    response = api.request("OPTIONS", LIMITS_PATH, headers={"Tus-Resumable": TUS_VERSION})
    raw = response.headers.get("tus-max-size", "")
    if response.status_code >= 300 or not raw.isdigit():
        return None
    return int(raw)


def _in_unit(nbytes: int, unit: int, digits: int) -> str:
    return f"{nbytes / 1000**unit:.{digits}f} {UNITS[unit]}"


def everyday_size(nbytes: int, other: int | None = None) -> str:
    """``nbytes`` in decimal units, with as many digits as it takes to differ from ``other``."""
    unit = 0
    while unit < len(UNITS) - 1 and nbytes >= 1000 ** (unit + 1):
        unit += 1
    if unit == 0:
        return f"{nbytes} byte" if nbytes == 1 else f"{nbytes} bytes"
    for digits in range(7):
        text = _in_unit(nbytes, unit, digits)
        if other is None or text != _in_unit(other, unit, digits):
            return text
    return f"{nbytes:,} bytes"


def oversize_message(files: Sequence[tuple[str, int]], limit: int | None) -> str:
    """The sentence for every (path, size) over ``limit``, or "" when all fit."""
    if limit is None:
        return ""
    over = [(path, size) for path, size in files if size > limit]
    if not over:
        return ""
    named = ", ".join(f"{path} is {everyday_size(size, limit)}" for path, size in over[:SHOWN])
    more = f" and {len(over) - SHOWN} more files are too" if len(over) > SHOWN else ""
    return (
        f"{named}{more}; this dashboard accepts files up to {everyday_size(limit)}. "
        "Nothing was uploaded."
    )

"""The access log's view of uploads: one line per upload, not one per request.

A tus upload is many requests (a 30 MB file in small chunks is ~1,900 PATCHes and HEADs).
uvicorn's access log keeps every other request; the successful tus requests on upload
addresses (creation, PATCH, HEAD, termination, and their method-override POSTs) are left
out of it, and ``dashboard.uploads`` writes one line per upload instead, on the
``dashboard.access`` logger: created, completed (size and time), terminated, expired.
A refused tus request (4xx/5xx) still appears in the access log.
"""

from __future__ import annotations

import logging
import re
import sys

UPLOAD_PATH = re.compile(r"^/api/sessions/[^/]+/files(/[^/?]+)?/?(\?.*)?$")
QUIET_METHODS = frozenset({"POST", "PATCH", "HEAD", "DELETE"})
ACCESS_LOGGER = "dashboard.access"


class TusRequestFilter(logging.Filter):
    """Drops uvicorn access lines of successful tus requests on upload addresses."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        # uvicorn.access: (client address, method, path with query, HTTP version, status)
        if not isinstance(args, tuple) or len(args) != 5:
            return True
        _client, method, path, _version, status = args
        try:
            ok = int(str(status)) < 400
        except (TypeError, ValueError):
            return True
        return not (ok and method in QUIET_METHODS and UPLOAD_PATH.match(str(path)))


def install() -> None:
    """Filter uvicorn's access log and give the upload lines a place to go (idempotent).

    The upload lines go where uvicorn's access lines go (standard output) at the access
    log's level, unless the process configured the ``dashboard.access`` logger itself.
    """
    uvicorn_access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, TusRequestFilter) for f in uvicorn_access.filters):
        uvicorn_access.addFilter(TusRequestFilter())
    uploads = logging.getLogger(ACCESS_LOGGER)
    if not uploads.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
        uploads.addHandler(handler)
        uploads.propagate = False
        configured = uvicorn_access.handlers or uvicorn_access.level != logging.NOTSET
        level = uvicorn_access.getEffectiveLevel() if configured else logging.INFO
        uploads.setLevel(level)
        if uvicorn_access.disabled:
            uploads.disabled = True

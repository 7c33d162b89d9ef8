"""Waiting until the server has stored every uploaded file in the session's volume.

The last PATCH of a file is answered once its bytes are in; the server then publishes the
file into the session's volume in the background (on Modal a ``batch_upload`` of a big
file can take minutes) and reports ``done`` in the upload event and the session view.
``POST /run`` is refused (409) until every file is done, so the client waits for that
first, by polling ``GET /api/sessions/{id}``.
"""

from __future__ import annotations

import time
from typing import Any

from dashboard.client.http import Api, ClientError
from dashboard.client.output import Output

POLL_S = 0.5
STORE_WAIT_S = 3600.0  # a multi-GB file on Modal: minutes; this is only a backstop


def wait_until_stored(
    api: Api, out: Output, session_id: str, *, within: float = STORE_WAIT_S
) -> None:
    deadline = time.monotonic() + within
    told = False
    while True:
        view = api.session(session_id)
        if view is None:
            raise ClientError(f"session {session_id} is gone.")
        files: list[dict[str, Any]] = view.get("files") or []
        if view.get("run") is not None or all(f.get("done") for f in files):
            return
        for entry in files:
            if not entry.get("done") and entry.get("offset", 0) < entry.get("length", 0):
                raise ClientError(
                    f"the server could not store {entry.get('path')!r}; run the same command "
                    "again to send it again."
                )
        if not told:
            pending = sum(1 for f in files if not f.get("done"))
            out.line(f"storing {pending} file(s) in the session volume…")
            told = True
        if time.monotonic() > deadline:
            raise ClientError(f"the server did not store the files within {within:g} s.")
        time.sleep(POLL_S)

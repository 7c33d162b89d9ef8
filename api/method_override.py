"""``X-HTTP-Method-Override`` (tus 1.0 core): a POST on an upload URL that carries
``X-HTTP-Method-Override: PATCH`` (or ``DELETE``, ``HEAD``) is that method.

tus-js-client's ``overridePatchMethod`` sends it for networks whose proxies block PATCH.
The method is rewritten before routing, in a copy of the scope, so every route, check and
error is exactly the overridden method's.
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Receive, Scope, Send

UPLOAD_URL = re.compile(r"^/api/sessions/[^/]+/files/[^/]+/?$")
OVERRIDABLE = frozenset({"PATCH", "DELETE", "HEAD"})
HEADER = b"x-http-method-override"


class MethodOverride:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and UPLOAD_URL.match(scope["path"])
        ):
            for name, value in scope["headers"]:
                if name == HEADER:
                    method = value.decode("latin-1").strip().upper()
                    if method in OVERRIDABLE:
                        scope = {**scope, "method": method}
                    break
        await self.app(scope, receive, send)

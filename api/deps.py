"""Shared dependencies: the workspace, the session (404 lives here), the public URL."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from dashboard.errors import MalformedRequest, TooLarge
from dashboard.sessions import SessionRecord
from dashboard.workspace import Workspace

MAX_JSON_BODY_BYTES = 4 * 1024 * 1024  # DESIGN: at least 1 MiB; larger → 413
CLIENT_COOKIE = "dashboard_client"


async def get_workspace(conn: HTTPConnection) -> Workspace:
    workspace: Workspace = conn.app.state.workspace
    return workspace


WorkspaceDep = Annotated[Workspace, Depends(get_workspace)]


async def get_session(session_id: str, workspace: WorkspaceDep) -> SessionRecord:
    return workspace.session(session_id)


SessionDep = Annotated[SessionRecord, Depends(get_session)]


def public_url(request: Request) -> str:
    """DASHBOARD_PUBLIC_URL, else the deployment's own URL, else the request's base URL.

    A plain ``def`` on purpose: FastAPI runs it in a worker thread, and the deployment's
    resolver may block (on Modal it asks the platform for the web function's URL).
    """
    workspace: Workspace = request.app.state.workspace
    if workspace.settings.public_url:
        return workspace.settings.public_url
    resolver = getattr(request.app.state, "public_url_resolver", None)
    if resolver is not None:
        resolved = resolver()
        if resolved:
            return str(resolved).rstrip("/")
    return str(request.base_url).rstrip("/")


PublicUrlDep = Annotated[str, Depends(public_url)]


async def read_json_body(request: Request, limit: int = MAX_JSON_BODY_BYTES) -> Any:
    """Read a JSON body without ever holding more than ``limit`` bytes; 413 past it."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"The JSON body is over the limit of {limit} bytes.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"The JSON body is over the limit of {limit} bytes.")
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks))
    except ValueError as exc:
        raise MalformedRequest("The request body is not valid JSON.") from exc


def client_id(conn: HTTPConnection) -> str | None:
    value = conn.cookies.get(CLIENT_COOKIE)
    if value and len(value) == 32 and all(c in "0123456789abcdef" for c in value):
        return value
    return None

"""Session-less tus discovery: a client learns Tus-Max-Size before it creates a session.

``OPTIONS /api/sessions/{sid}/files`` needs a session; the page and the CLI check every
file against the limit *before* one exists, so the same headers are served here too.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from api.deps import WorkspaceDep
from api.routes.tus import discovery_response

router = APIRouter(prefix="/api/sessions/files", tags=["uploads"])


@router.options("", status_code=204)
async def discover_limits(workspace: WorkspaceDep) -> Response:
    return discovery_response(workspace.uploads)

"""The dashboard page and the health check."""

from __future__ import annotations

import asyncio
import uuid

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from api.deps import CLIENT_COOKIE, WorkspaceDep, client_id
from api.schemas import Health

router = APIRouter(tags=["pages"])

COOKIE_MAX_AGE_S = 365 * 24 * 3600


@router.get("/", response_class=HTMLResponse)
async def index(request: Request, workspace: WorkspaceDep) -> HTMLResponse:
    templates = request.app.state.templates
    response: HTMLResponse = templates.TemplateResponse(
        request,
        "index.html",
        {"chunk_size": workspace.settings.chunk_size},
    )
    if client_id(request) is None:
        response.set_cookie(
            CLIENT_COOKIE,
            uuid.uuid4().hex,
            max_age=COOKIE_MAX_AGE_S,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
        )
    return response


@router.get("/healthz", response_model=Health)
async def healthz(workspace: WorkspaceDep) -> Health:
    return Health(
        status="ok",
        sessions_followed=workspace.hub.subscriber_count,
        last_seq=workspace.hub.last_seq,
        tasks=len(asyncio.all_tasks()),  # leak checks: open streams each hold a task
    )

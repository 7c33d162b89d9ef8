"""Sessions: create, inspect, start the run."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.deps import PublicUrlDep, SessionDep, WorkspaceDep, client_id, read_json_body
from api.schemas import CONTEXT_BODY, RunAccepted, SessionCreated, SessionPublic
from dashboard.errors import InvalidInput
from dashboard.sessions import SessionRecord

router = APIRouter(prefix="/api/sessions", tags=["sessions"])


def links(session_id: str) -> dict[str, str]:
    base = f"/api/sessions/{session_id}"
    return {
        "files": f"{base}/files",
        "run": f"{base}/run",
        "ws": f"{base}/ws",
        "events": f"{base}/events",
        "artifacts": f"{base}/artifacts",
    }


def created_body(record: SessionRecord) -> dict[str, Any]:
    return {
        "session_id": record.session_id,
        "volume_name": record.volume_name,
        "state": record.state,
        "links": links(record.session_id),
    }


@router.post("", status_code=201, response_model=SessionCreated, openapi_extra=CONTEXT_BODY)
async def create_session(request: Request, workspace: WorkspaceDep) -> JSONResponse:
    body = await read_json_body(request)
    if not isinstance(body, dict) or "experiment_context" not in body:
        raise InvalidInput.field("experiment_context", "the experiment context is missing.")
    record = await workspace.create_session(body["experiment_context"], client_id(request))
    return JSONResponse(created_body(record), status_code=201)


@router.get("/{session_id}", response_model=SessionPublic)
async def get_session(session: SessionDep, workspace: WorkspaceDep) -> dict[str, Any]:
    view = await workspace.session_view(session.session_id)
    return {**view, "links": links(session.session_id)}


@router.post("/{session_id}/run", status_code=202, response_model=RunAccepted)
async def start_run(
    request: Request, session: SessionDep, workspace: WorkspaceDep, public_url: PublicUrlDep
) -> JSONResponse:
    record = workspace.start_run(session.session_id, public_url)
    body = {
        "session_id": record.session_id,
        "state": record.state,
        "links": links(record.session_id),
    }
    return JSONResponse(body, status_code=202)

"""POST /log: the agent's HTTP logging endpoint, one bearer token per session."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.deps import WorkspaceDep, read_json_body
from api.schemas import LOG_BODY, LogAccepted
from dashboard.errors import InvalidInput

router = APIRouter(tags=["log"])


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


@router.post("/log", status_code=202, response_model=LogAccepted, openapi_extra=LOG_BODY)
async def post_log(request: Request, workspace: WorkspaceDep) -> JSONResponse:
    token = bearer_token(request)
    workspace.session_for_token(token)  # 401 before the body is read
    body = await read_json_body(request)
    records: list[dict[str, Any]]
    if isinstance(body, dict) and isinstance(body.get("records"), list):
        records = body["records"]
        if not all(isinstance(r, dict) for r in records):
            raise InvalidInput.field("records", "every record must be an object.")
    elif isinstance(body, dict) and "message" in body:
        records = [body]
    else:
        raise InvalidInput.field("message", 'send {"message": ...} or {"records": [...]}.')
    accepted = workspace.accept_logs(token, records)
    return JSONResponse({"accepted": accepted}, status_code=202)

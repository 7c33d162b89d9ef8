"""``GET /api/sessions``: the sessions started from this browser (its ``dashboard_client``
cookie, as ``/stream`` scopes), newest first. No cookie, or one no session carries, gives an
empty list: nothing about another browser's sessions is ever listed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request

from api.deps import WorkspaceDep, client_id
from api.routes.sessions import links
from api.schemas import SessionList
from dashboard.sessions import SessionRecord

router = APIRouter(prefix="/api/sessions", tags=["sessions"])

MAX_TITLE_CHARS = 80


def iso_utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def title(record: SessionRecord) -> str:
    """The first line of the experiment context's description, cut short."""
    text = record.experiment_context.description.strip().split("\n", 1)[0].strip()
    return text if len(text) <= MAX_TITLE_CHARS else text[: MAX_TITLE_CHARS - 1] + "…"


def listed(record: SessionRecord) -> dict[str, Any]:
    return {
        "session_id": record.session_id,
        "state": record.state,
        "created": iso_utc(record.created),
        "title": title(record),
        "links": links(record.session_id),
    }


@router.get("", response_model=SessionList)
async def list_sessions(request: Request, workspace: WorkspaceDep) -> dict[str, Any]:
    records = workspace.recent_sessions(client_id(request))
    return {"sessions": [listed(r) for r in records]}

"""The legacy multipart ``POST /upload``: create, store and run in one request."""

from __future__ import annotations

import shutil
import uuid

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.deps import PublicUrlDep, WorkspaceDep, client_id
from api.legacy_form import LegacyFormReader
from api.schemas import LegacyUploadAccepted
from dashboard.errors import InvalidInput
from dashboard.uploads import storage_error

router = APIRouter(tags=["legacy"])

LEGACY_FORM_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["experiment_context", "files"],
                    "properties": {
                        "experiment_context": {"type": "string"},
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
                    },
                }
            }
        },
    }
}


def _ws_base(public_url: str) -> str:
    if public_url.startswith("https://"):
        return "wss://" + public_url[len("https://") :]
    if public_url.startswith("http://"):
        return "ws://" + public_url[len("http://") :]
    return public_url


@router.post(
    "/upload", status_code=202, response_model=LegacyUploadAccepted, openapi_extra=LEGACY_FORM_BODY
)
async def legacy_upload(
    request: Request, workspace: WorkspaceDep, public_url: PublicUrlDep
) -> JSONResponse:
    staging = workspace.settings.staging_dir / f"legacy-{uuid.uuid4().hex}"
    reader = LegacyFormReader(
        request.headers.get("content-type", ""), staging, workspace.uploads.writer
    )
    try:
        try:
            async for chunk in request.stream():
                reader.feed(chunk)
            form = reader.finish()
            await reader.settle()
        except OSError as exc:  # a full or failing disk: 507, and nothing was created
            raise storage_error(exc, resumable=False) from exc
        if not form.files:
            raise InvalidInput.field("files", "choose at least one file to upload.")
        record = await workspace.create_session(
            form.fields.get("experiment_context"), client_id(request), parse_json_text=True
        )
        await workspace.add_legacy_files(record, [(f.relative, f.path, f.size) for f in form.files])
        workspace.start_run(record.session_id, public_url, after_publishing=True)
    finally:
        await reader.aclose()
        shutil.rmtree(staging, ignore_errors=True)
    sid = record.session_id
    body = {
        "session_id": sid,
        "volume_name": record.volume_name,
        "ws_url": f"{_ws_base(public_url)}/api/sessions/{sid}/ws",
        "stream_url": f"{public_url}/stream?session_id={sid}",
    }
    return JSONResponse(body, status_code=202)

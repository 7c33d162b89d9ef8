"""A session's results: the listing, one artifact (with Range), and all of them as a zip.

The rules (content types, inline or attachment, the sandbox, Range) live in
``dashboard/artifacts.py``; the bytes come from the session's volume store, which never
follows a symlink (``dashboard/volumes.py``, ``dashboard_modal/volumes.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse
from starlette.background import BackgroundTask

from api.deps import SessionDep, WorkspaceDep
from api.schemas import PROBLEM_RESPONSE, ArtifactList
from dashboard.artifacts import (
    SANDBOX_CSP,
    ArtifactReader,
    clean_artifact_path,
    content_disposition,
    http_date,
    if_range_allows,
    parse_range,
    present,
    zip_stream,
)
from dashboard.workspace import Workspace

router = APIRouter(prefix="/api/sessions", tags=["artifacts"])

_BINARY: dict[str, Any] = {"schema": {"type": "string", "format": "binary"}}
FILE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The whole file", "content": {"*/*": _BINARY}},
    206: {"description": "The range asked for (Range: bytes=...)", "content": {"*/*": _BINARY}},
    304: {"description": "Not modified (If-None-Match names this version)"},
    416: PROBLEM_RESPONSE,
}
ZIP_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Every artifact, as one zip", "content": {"application/zip": _BINARY}},
}


def artifacts_base(session_id: str) -> str:
    return f"/api/sessions/{session_id}/artifacts"


@router.get("/{session_id}/artifacts", response_model=ArtifactList)
async def list_artifacts(session: SessionDep, workspace: WorkspaceDep) -> dict[str, Any]:
    base = artifacts_base(session.session_id)
    files = await workspace.volumes.artifact_files(session.session_id)
    return {
        "session_id": session.session_id,
        "zip": f"{base}.zip",
        "artifacts": [
            {
                "path": a.volume_path,
                "name": a.path,
                "size": a.size,
                "modified": http_date(a.mtime),
                "content_type": present(a.path).content_type,
                "inline": present(a.path).inline,
                "url": f"{base}/{a.path}",
            }
            for a in files
        ],
    }


async def _stream(reader: ArtifactReader, start: int, end: int) -> AsyncIterator[bytes]:
    try:
        async for chunk in reader.chunks(start, end):
            yield chunk
    finally:
        await reader.close()


@router.get(
    "/{session_id}/artifacts/{path:path}", responses=FILE_RESPONSES, response_class=Response
)
async def get_artifact(
    path: str,
    request: Request,
    session: SessionDep,
    workspace: WorkspaceDep,
    download: Annotated[bool, Query(description="send as an attachment")] = False,
) -> Response:
    return await _serve(path, request, session.session_id, workspace, download)


@router.head(
    "/{session_id}/artifacts/{path:path}", responses=FILE_RESPONSES, response_class=Response
)
async def head_artifact(
    path: str,
    request: Request,
    session: SessionDep,
    workspace: WorkspaceDep,
    download: Annotated[bool, Query(description="send as an attachment")] = False,
) -> Response:
    return await _serve(path, request, session.session_id, workspace, download)


async def _serve(
    path: str, request: Request, session_id: str, workspace: Workspace, download: bool
) -> Response:
    clean = clean_artifact_path(path)
    reader = await workspace.volumes.open_artifact(session_id, clean)
    try:
        artifact = reader.artifact
        shown = present(clean)
        headers = {
            "Accept-Ranges": "bytes",
            "ETag": artifact.etag,
            "Last-Modified": http_date(artifact.mtime),
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
            "Content-Disposition": content_disposition(
                shown.inline and not download, artifact.name
            ),
        }
        if shown.sandbox:
            headers["Content-Security-Policy"] = SANDBOX_CSP
        if request.headers.get("if-none-match") == artifact.etag:
            await reader.close()
            return Response(status_code=304, headers=headers)
        status, start, end = 200, 0, artifact.size
        if if_range_allows(request.headers.get("if-range"), artifact):
            wanted = parse_range(request.headers.get("range"), artifact.size)
            if wanted is not None:
                status, start, end = 206, wanted.start, wanted.end
                headers["Content-Range"] = wanted.content_range(artifact.size)
        headers["Content-Length"] = str(end - start)
        if request.method == "HEAD":
            await reader.close()
            return Response(status_code=status, headers=headers, media_type=shown.content_type)
    except BaseException:
        await reader.close()
        raise
    return StreamingResponse(
        _stream(reader, start, end),
        status_code=status,
        headers=headers,
        media_type=shown.content_type,
        background=BackgroundTask(reader.close),  # also when the client went away
    )


@router.get("/{session_id}/artifacts.zip", responses=ZIP_RESPONSES, response_class=Response)
async def download_zip(session: SessionDep, workspace: WorkspaceDep) -> Response:
    sid = session.session_id
    volumes = workspace.volumes
    files = await volumes.artifact_files(sid)

    async def opener(path: str) -> ArtifactReader:
        return await volumes.open_artifact(sid, path)

    return StreamingResponse(
        zip_stream(files, opener),
        media_type="application/zip",
        headers={
            "Content-Disposition": content_disposition(False, f"results-{sid}.zip"),
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-cache",
        },
    )

"""tus 1.0.0 over HTTP: discovery, creation (+with-upload), offset, append, termination."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter, Request, Response

from api.deps import SessionDep, WorkspaceDep
from api.schemas import TUS_CREATE_PARAMETERS, TUS_PATCH_PARAMETERS, TUS_TERMINATE_PARAMETERS
from dashboard import tus
from dashboard.errors import MalformedRequest, TooLarge
from dashboard.uploads import UploadRecord

router = APIRouter(prefix="/api/sessions/{session_id}/files", tags=["uploads"])

EXPOSED_HEADERS = (
    "Location, Upload-Offset, Upload-Length, Upload-Metadata, Upload-Expires, Tus-Resumable, "
    "Tus-Version, Tus-Extension, Tus-Max-Size, Tus-Checksum-Algorithm"
)


def tus_headers(**extra: str) -> dict[str, str]:
    return {"Tus-Resumable": tus.TUS_VERSION, "Cache-Control": "no-store", **extra}


def upload_headers(upload: UploadRecord) -> dict[str, str]:
    headers = tus_headers(
        **{"Upload-Offset": str(upload.public()["offset"]), "Upload-Length": str(upload.length)}
    )
    if not upload.done:
        headers["Upload-Expires"] = tus.http_date(upload.expires)
    return headers


def body_stream(request: Request) -> AsyncIterator[bytes]:
    return request.stream()


@router.options("", status_code=204)
async def discover(session: SessionDep, workspace: WorkspaceDep) -> Response:
    headers = tus_headers(
        **{
            "Tus-Version": tus.TUS_VERSION,
            "Tus-Extension": tus.TUS_EXTENSIONS,
            "Tus-Max-Size": str(workspace.uploads.max_size),
            "Tus-Checksum-Algorithm": ",".join(tus.CHECKSUM_ALGORITHMS),
        }
    )
    return Response(status_code=204, headers=headers)


PATCH_BODY = {
    "required": True,
    "content": {tus.OFFSET_CONTENT_TYPE: {"schema": {"type": "string", "format": "binary"}}},
}


@router.post("", status_code=201, openapi_extra={"parameters": TUS_CREATE_PARAMETERS})
async def create_upload(request: Request, session: SessionDep, workspace: WorkspaceDep) -> Response:
    headers = request.headers
    tus.check_resumable(headers)
    if headers.get("upload-defer-length") is not None:
        raise MalformedRequest("Upload-Defer-Length is not supported; send Upload-Length.")
    length = tus.parse_non_negative(headers.get("upload-length"), "Upload-Length")
    if length is None:
        raise MalformedRequest("Upload-Length is required.")
    metadata_header = headers.get("upload-metadata", "")
    metadata = tus.parse_metadata(metadata_header)
    content_length = tus.parse_non_negative(headers.get("content-length"), "Content-Length")
    with_body = bool(content_length) or "chunked" in headers.get("transfer-encoding", "")
    checksum = None
    if with_body:
        tus.check_offset_content_type(headers)
        checksum = tus.parse_checksum(headers.get("upload-checksum"))
        if content_length is not None and content_length > length:
            raise TooLarge(f"The body ({content_length} bytes) is longer than Upload-Length.")
    upload = workspace.create_upload(session.session_id, length, metadata_header, metadata)
    upload = await workspace.complete_if_empty(upload)
    if with_body and not upload.done:
        upload = await workspace.append(
            session.session_id,
            upload.upload_id,
            0,
            body_stream(request),
            content_length=content_length,
            checksum=checksum,
        )
    location = workspace.uploads.location(upload)
    out = upload_headers(upload)
    out["Location"] = location
    return Response(status_code=201, headers=out)


@router.head("/{upload_id}", openapi_extra={"parameters": TUS_TERMINATE_PARAMETERS})
async def upload_offset(upload_id: str, session: SessionDep, workspace: WorkspaceDep) -> Response:
    upload = workspace.uploads.get(session.session_id, upload_id)
    headers = upload_headers(upload)
    if upload.metadata_header:
        headers["Upload-Metadata"] = upload.metadata_header
    return Response(status_code=200, headers=headers)


@router.patch(
    "/{upload_id}",
    status_code=204,
    openapi_extra={"parameters": TUS_PATCH_PARAMETERS, "requestBody": PATCH_BODY},
)
async def append(
    upload_id: str, request: Request, session: SessionDep, workspace: WorkspaceDep
) -> Response:
    headers = request.headers
    tus.check_resumable(headers)
    tus.check_offset_content_type(headers)
    offset = tus.parse_non_negative(headers.get("upload-offset"), "Upload-Offset")
    if offset is None:
        raise MalformedRequest("Upload-Offset is required.")
    content_length = tus.parse_non_negative(headers.get("content-length"), "Content-Length")
    checksum = tus.parse_checksum(headers.get("upload-checksum"))
    upload = await workspace.append(
        session.session_id,
        upload_id,
        offset,
        body_stream(request),
        content_length=content_length,
        checksum=checksum,
    )
    return Response(status_code=204, headers=upload_headers(upload))


@router.delete(
    "/{upload_id}", status_code=204, openapi_extra={"parameters": TUS_TERMINATE_PARAMETERS}
)
async def terminate(
    upload_id: str, request: Request, session: SessionDep, workspace: WorkspaceDep
) -> Response:
    tus.check_resumable(request.headers)
    upload = workspace.uploads.get(session.session_id, upload_id)
    workspace.uploads.terminate(upload)
    return Response(status_code=204, headers=tus_headers())

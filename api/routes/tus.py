"""tus 1.0.0 over HTTP: discovery, creation (+with-upload, +defer-length), offset, append,
termination, concatenation. ``X-HTTP-Method-Override`` is applied before routing
(``api/method_override.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlsplit

from fastapi import APIRouter, Request, Response

from api.deps import SessionDep, WorkspaceDep
from api.schemas import TUS_CREATE_PARAMETERS, TUS_PATCH_PARAMETERS, TUS_TERMINATE_PARAMETERS
from dashboard import tus
from dashboard.errors import MalformedRequest, TooLarge
from dashboard.uploads import UploadManager, UploadRecord

router = APIRouter(prefix="/api/sessions/{session_id}/files", tags=["uploads"])

EXPOSED_HEADERS = (
    "Location, Upload-Offset, Upload-Length, Upload-Metadata, Upload-Expires, Tus-Resumable, "
    "Tus-Version, Tus-Extension, Tus-Max-Size, Tus-Checksum-Algorithm, Upload-Defer-Length, "
    "Upload-Concat"
)


def tus_headers(**extra: str) -> dict[str, str]:
    return {"Tus-Resumable": tus.TUS_VERSION, "Cache-Control": "no-store", **extra}


def upload_headers(upload: UploadRecord) -> dict[str, str]:
    headers = tus_headers(**{"Upload-Offset": str(upload.public()["offset"])})
    if upload.length is None:
        headers["Upload-Defer-Length"] = "1"
    else:
        headers["Upload-Length"] = str(upload.length)
    if not upload.done or upload.partial:
        headers["Upload-Expires"] = tus.http_date(upload.expires)
    return headers


def concat_header(upload: UploadRecord) -> str | None:
    if upload.partial:
        return "partial"
    if upload.concat == "final":
        base = UploadManager.location(upload).rsplit("/", 1)[0]
        return "final;" + " ".join(f"{base}/{part}" for part in upload.parts)
    return None


def parse_concat(value: str | None, session_id: str) -> tuple[str, list[str]] | None:
    """``Upload-Concat``: None, ``("partial", [])`` or ``("final", [upload ids])``."""
    if value is None:
        return None
    value = value.strip()
    if value == "partial":
        return "partial", []
    kind, sep, urls = value.partition(";")
    if kind.strip() != "final" or not sep:
        raise MalformedRequest(
            f"Upload-Concat must be 'partial' or 'final;<upload URLs>', got {value[:60]!r}; "
            "nothing was stored."
        )
    prefix = f"/api/sessions/{session_id}/files/"
    ids = []
    for url in urls.split():
        path = urlsplit(url).path.rstrip("/")
        upload_id = path.rsplit("/", 1)[-1]
        if not path.endswith(prefix + upload_id) or not upload_id:
            raise MalformedRequest(
                f"Upload-Concat: final names {url[:100]!r}, which is not an upload URL of "
                "this session; nothing was stored."
            )
        ids.append(upload_id)
    return "final", ids


def body_stream(request: Request) -> AsyncIterator[bytes]:
    return request.stream()


def discovery_response(uploads: UploadManager) -> Response:
    """tus discovery (OPTIONS): the version, the extensions, the size limit, the checksums."""
    headers = tus_headers(
        **{
            "Tus-Version": tus.TUS_VERSION,
            "Tus-Extension": tus.TUS_EXTENSIONS,
            "Tus-Max-Size": str(uploads.max_size),
            "Tus-Checksum-Algorithm": ",".join(tus.CHECKSUM_ALGORITHMS),
        }
    )
    return Response(status_code=204, headers=headers)


@router.options("", status_code=204)
async def discover(session: SessionDep, workspace: WorkspaceDep) -> Response:
    return discovery_response(workspace.uploads)


PATCH_BODY = {
    "required": True,
    "content": {tus.OFFSET_CONTENT_TYPE: {"schema": {"type": "string", "format": "binary"}}},
}


@router.post("", status_code=201, openapi_extra={"parameters": TUS_CREATE_PARAMETERS})
async def create_upload(request: Request, session: SessionDep, workspace: WorkspaceDep) -> Response:
    """Creation; everything is checked before anything is stored, and a creation the server
    cannot serve is refused in words."""
    headers = request.headers
    tus.check_resumable(headers)
    concat = parse_concat(headers.get("upload-concat"), session.session_id)
    deferred = tus.parse_defer_length(headers.get("upload-defer-length"))
    length = tus.parse_non_negative(headers.get("upload-length"), "Upload-Length")
    metadata_header = headers.get("upload-metadata", "")
    metadata = tus.parse_metadata(metadata_header)
    content_length = tus.parse_non_negative(headers.get("content-length"), "Content-Length")
    with_body = bool(content_length) or "chunked" in headers.get("transfer-encoding", "")
    if concat is not None and concat[0] == "final":
        if length is not None or deferred or with_body:
            raise MalformedRequest(
                "A final upload (Upload-Concat: final) takes neither Upload-Length, "
                "Upload-Defer-Length nor a body: its length is its partials'. Nothing was stored."
            )
        upload = await workspace.create_final_upload(
            session.session_id, concat[1], metadata_header, metadata
        )
        return created(workspace, upload)
    if deferred and length is not None:
        raise MalformedRequest(
            "Send Upload-Length or Upload-Defer-Length: 1, not both; nothing was stored."
        )
    if length is None and not deferred:
        raise MalformedRequest(
            "Upload-Length is required (or Upload-Defer-Length: 1 to send it later)."
        )
    checksum = None
    if with_body:
        tus.check_offset_content_type(headers)
        checksum = tus.parse_checksum(headers.get("upload-checksum"))
        if content_length is not None and length is not None and content_length > length:
            raise TooLarge(f"The body ({content_length} bytes) is longer than Upload-Length.")
    upload = workspace.create_upload(
        session.session_id, length, metadata_header, metadata, partial=concat is not None
    )
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
    return created(workspace, upload)


def created(workspace: WorkspaceDep, upload: UploadRecord) -> Response:
    out = upload_headers(upload)
    out["Location"] = workspace.uploads.location(upload)
    return Response(status_code=201, headers=out)


@router.head("/{upload_id}", openapi_extra={"parameters": TUS_TERMINATE_PARAMETERS})
async def upload_offset(upload_id: str, session: SessionDep, workspace: WorkspaceDep) -> Response:
    upload = await workspace.upload_for_head(session.session_id, upload_id)
    headers = upload_headers(upload)
    if upload.metadata_header:
        headers["Upload-Metadata"] = upload.metadata_header
    concat = concat_header(upload)
    if concat is not None:
        headers["Upload-Concat"] = concat
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
    upload_length = tus.parse_non_negative(headers.get("upload-length"), "Upload-Length")
    upload = await workspace.append(
        session.session_id,
        upload_id,
        offset,
        body_stream(request),
        content_length=content_length,
        checksum=checksum,
        upload_length=upload_length,
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

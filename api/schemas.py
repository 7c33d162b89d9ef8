"""Response shapes, declared for the OpenAPI document (and checked by schemathesis)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class SessionLinks(BaseModel):
    files: str
    run: str
    ws: str
    events: str
    artifacts: str | None = None


class SessionCreated(BaseModel):
    session_id: str
    volume_name: str
    state: str
    links: SessionLinks


class FilePublic(BaseModel):
    path: str
    length: int
    offset: int
    done: bool
    url: str | None = None


class RunPublic(BaseModel):
    state: str
    error: str | None = None


class SessionPublic(BaseModel):
    session_id: str
    volume_name: str
    state: str
    files: list[FilePublic]
    run: RunPublic | None
    artifacts: list[str]
    summary: dict[str, Any] | None = None
    links: SessionLinks | None = None


class ArtifactPublic(BaseModel):
    path: str
    name: str
    size: int
    modified: str
    content_type: str
    inline: bool
    url: str


class ArtifactList(BaseModel):
    session_id: str
    zip: str
    artifacts: list[ArtifactPublic]


class RunAccepted(BaseModel):
    session_id: str
    state: str
    links: SessionLinks


class LegacyUploadAccepted(BaseModel):
    session_id: str
    volume_name: str
    ws_url: str
    stream_url: str


class SessionListed(BaseModel):
    session_id: str
    state: str
    created: str
    title: str
    links: SessionLinks


class SessionList(BaseModel):
    sessions: list[SessionListed]


class LogAccepted(BaseModel):
    accepted: int


class Health(BaseModel):
    status: str
    sessions_followed: int = 0
    last_seq: int = 0
    tasks: int = 0


CONTEXT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["experiment_context"],
                    "properties": {
                        "experiment_context": {
                            "oneOf": [
                                {"type": "string"},
                                {
                                    "type": "object",
                                    "required": ["description"],
                                    "properties": {"description": {"type": "string"}},
                                },
                            ]
                        }
                    },
                }
            }
        },
    }
}

LOG_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {
                            "type": "object",
                            "required": ["message"],
                            "properties": {
                                "message": {"type": "string"},
                                "level": {"type": "string"},
                            },
                        },
                        {
                            "type": "object",
                            "required": ["records"],
                            "properties": {
                                "records": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "required": ["message"],
                                        "properties": {
                                            "message": {"type": "string"},
                                            "level": {"type": "string"},
                                            "ts": {"type": "string"},
                                        },
                                    },
                                }
                            },
                        },
                    ]
                }
            }
        },
    }
}


# -- the OpenAPI document ------------------------------------------------------------------
# Every error is application/problem+json (api/problems.py); the document says so once for
# every operation instead of FastAPI's default 422 ``HTTPValidationError``, which the app
# never sends.
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}
PROBLEM_RESPONSE: dict[str, Any] = {
    "description": "The request was refused: application/problem+json",
    "content": {"application/problem+json": {"schema": PROBLEM_SCHEMA}},
}


def _header(
    name: str, description: str, *, required: bool = False, **schema: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": required,
        "description": description,
        "schema": {"type": "string", **schema},
    }


_DECIMAL = r"^[0-9]{1,19}$"


# tus 1.0.0 request headers, for ``openapi_extra={"parameters": ...}`` on the tus routes
TUS_RESUMABLE = _header("Tus-Resumable", "Must be 1.0.0 (else 412).", required=True, enum=["1.0.0"])
TUS_CREATE_PARAMETERS: list[dict[str, Any]] = [
    TUS_RESUMABLE,
    _header(
        "Upload-Length",
        "Size of the whole file in bytes (required unless Upload-Defer-Length: 1 or a final "
        "Upload-Concat).",
        pattern=_DECIMAL,
    ),
    _header("Upload-Defer-Length", "1: the length is sent on a later PATCH.", pattern="^1$"),
    _header(
        "Upload-Concat",
        "'partial' (a part of a parallel upload) or 'final;<partial upload URLs>'.",
    ),
    _header("Upload-Metadata", "Comma-separated 'key base64value' pairs; relativePath names it."),
    _header("Upload-Checksum", "'<algorithm> <base64 digest>' of a body sent with creation."),
]
TUS_PATCH_PARAMETERS: list[dict[str, Any]] = [
    TUS_RESUMABLE,
    _header(
        "Upload-Offset",
        "Where this chunk starts; must equal the server's offset (else 409).",
        required=True,
        pattern=_DECIMAL,
    ),
    _header("Upload-Checksum", "'<algorithm> <base64 digest>' of this chunk (else 460)."),
    _header(
        "Upload-Length",
        "The length of an upload created with Upload-Defer-Length: 1.",
        pattern=_DECIMAL,
    ),
]
TUS_TERMINATE_PARAMETERS: list[dict[str, Any]] = [TUS_RESUMABLE]


# routes that return an EventSourceResponse themselves (FastAPI cannot see their media type)
SSE_PATHS = frozenset({"/api/sessions/{session_id}/events", "/stream"})


def _is_unknown_body(response: dict[str, Any]) -> bool:
    """FastAPI's guess for a route that returns a Response object: JSON of any shape."""
    return response.get("content") == {"application/json": {"schema": {}}}


def document(app: Any) -> None:
    """Make ``app.openapi()`` declare what the app really sends.

    Every operation answers its errors as problem+json ("4XX", plus 507 on the routes that
    store uploads: tus and the legacy form);
    routes that return a bare ``Response`` declare no body, the SSE routes declare
    ``text/event-stream``, instead of FastAPI's guess of JSON.
    """
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema  # type: ignore[no-any-return]
        doc = get_openapi(
            title=app.title, version=app.version, routes=app.routes, description=app.description
        )
        for path, path_item in doc.get("paths", {}).items():
            for operation in path_item.values():
                responses = operation.setdefault("responses", {})
                if "HTTPValidationError" in str(responses.get("422", {})):
                    responses.pop("422")
                responses["4XX"] = PROBLEM_RESPONSE
                if "/files" in path or path == "/upload":
                    responses["507"] = PROBLEM_RESPONSE
                for status, response in responses.items():
                    if status.startswith("2") and _is_unknown_body(response):
                        if path in SSE_PATHS:
                            response["content"] = {"text/event-stream": {"schema": {}}}
                        else:
                            response.pop("content")
        components = doc.get("components", {}).get("schemas", {})
        for unused in ("HTTPValidationError", "ValidationError"):
            if unused in components and unused not in str(doc.get("paths")):
                components.pop(unused)
        app.openapi_schema = doc
        return doc

    app.openapi = openapi

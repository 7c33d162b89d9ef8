"""Response shapes, declared for the OpenAPI document (and checked by schemathesis)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class SessionLinks(BaseModel):
    files: str
    run: str
    ws: str
    events: str


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


class RunAccepted(BaseModel):
    session_id: str
    state: str
    links: SessionLinks


class LegacyUploadAccepted(BaseModel):
    session_id: str
    volume_name: str
    ws_url: str
    stream_url: str


class LogAccepted(BaseModel):
    accepted: int


class Health(BaseModel):
    status: str
    sessions_followed: int = 0
    last_seq: int = 0


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

"""Typed domain errors. Each carries the HTTP status it maps to; ``api/problems.py``
turns every one of them into the same application/problem+json shape."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar


class DashboardError(Exception):
    """Base class: a request the dashboard refuses, with a sentence a person understands."""

    status: ClassVar[int] = 400
    title: ClassVar[str] = "Bad request"
    slug: ClassVar[str] = "bad-request"

    def __init__(
        self,
        detail: str,
        *,
        errors: list[Mapping[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = list(errors) if errors else None
        self.headers = dict(headers) if headers else {}


class InvalidInput(DashboardError):
    status = 422
    title = "Invalid input"
    slug = "invalid-input"

    @classmethod
    def field(cls, name: str, message: str) -> InvalidInput:
        return cls(f"{name}: {message}", errors=[{"field": name, "message": message}])


class MalformedRequest(DashboardError):
    status = 400
    title = "Malformed request"
    slug = "malformed-request"


class Unauthorized(DashboardError):
    status = 401
    title = "Unauthorized"
    slug = "unauthorized"


class Forbidden(DashboardError):
    status = 403
    title = "Forbidden"
    slug = "forbidden"


class NotFound(DashboardError):
    status = 404
    title = "Not found"
    slug = "not-found"


class Conflict(DashboardError):
    status = 409
    title = "Conflict"
    slug = "conflict"


class Gone(DashboardError):
    status = 410
    title = "Gone"
    slug = "gone"


class PreconditionFailed(DashboardError):
    status = 412
    title = "Precondition failed"
    slug = "precondition-failed"


class TooLarge(DashboardError):
    status = 413
    title = "Payload too large"
    slug = "too-large"


class UnsupportedMediaType(DashboardError):
    status = 415
    title = "Unsupported media type"
    slug = "unsupported-media-type"


class Locked(DashboardError):
    status = 423
    title = "Locked"
    slug = "locked"


class RangeNotSatisfiable(DashboardError):
    status = 416
    title = "Range not satisfiable"
    slug = "range-not-satisfiable"


class ChecksumMismatch(DashboardError):
    status = 460
    title = "Checksum mismatch"
    slug = "checksum-mismatch"


class InsufficientStorage(DashboardError):
    status = 507
    title = "Insufficient storage"
    slug = "insufficient-storage"


ALL_ERRORS: tuple[type[DashboardError], ...] = (
    MalformedRequest,
    InvalidInput,
    Unauthorized,
    Forbidden,
    NotFound,
    Conflict,
    Gone,
    PreconditionFailed,
    TooLarge,
    UnsupportedMediaType,
    Locked,
    RangeNotSatisfiable,
    ChecksumMismatch,
    InsufficientStorage,
)

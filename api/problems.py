"""One error shape everywhere: application/problem+json, mapped in one place."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from python_multipart.exceptions import ParseError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Mount

from api.schemas import document
from dashboard.errors import DashboardError

logger = logging.getLogger("dashboard.api")

PROBLEM_TYPE_BASE = "https://dataset-dashboard.dev/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"
TUS_HEADERS = {"Tus-Resumable": "1.0.0"}


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    slug: str | None = None,
    errors: list[Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + (slug or str(status)),
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = errors
    all_headers = dict(headers or {})
    return JSONResponse(
        body, status_code=status, headers=all_headers, media_type=PROBLEM_MEDIA_TYPE
    )


def _is_tus(request: Request) -> bool:
    return "/files" in request.url.path


async def dashboard_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DashboardError)
    headers = dict(exc.headers)
    if _is_tus(request):
        headers.update(TUS_HEADERS)
    return problem(
        exc.status, exc.title, exc.detail, slug=exc.slug, errors=exc.errors, headers=headers
    )


async def validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {
            "field": ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query")),
            "message": str(err.get("msg", "invalid")),
        }
        for err in exc.errors()
    ]
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors) or "invalid request"
    return problem(422, "Invalid input", detail, slug="invalid-input", errors=errors)


CANDIDATE_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app serves at this path.

    Starlette's 405 names only the methods of the first route whose path matched; a path
    served by several routes (tus: HEAD, PATCH and DELETE each have their own) has more.
    Each method is tried against the app's routes as the router would (a full match).
    """
    routes = request.app.router.routes
    if any(isinstance(r, Mount) and r.matches(request.scope)[0] != Match.NONE for r in routes):
        return ["GET", "HEAD"]  # the static files
    allowed = []
    for method in CANDIDATE_METHODS:
        scope = {**request.scope, "type": "http", "method": method}
        if any(route.matches(scope)[0] == Match.FULL for route in routes):
            allowed.append(method)
    return allowed


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    titles = {404: "Not found", 405: "Method not allowed"}
    detail = exc.detail if isinstance(exc.detail, str) else "request refused"
    headers = dict(exc.headers or {})
    if exc.status_code == 404 and detail == "Not Found":
        detail = "There is nothing at this address."
    if exc.status_code == 405:
        allowed = allowed_methods(request) or sorted(
            m.strip() for m in headers.get("Allow", "").split(",") if m.strip()
        )
        headers["Allow"] = ", ".join(allowed)
        detail = f"{request.method} is not a method of this address; it takes {headers['Allow']}."
    if _is_tus(request):
        headers.update(TUS_HEADERS)
    return problem(exc.status_code, titles.get(exc.status_code, "Error"), detail, headers=headers)


async def malformed_body(request: Request, exc: Exception) -> Response:
    """The multipart parser refused the body (a bare CR in a part header, a broken boundary)."""
    assert isinstance(exc, ParseError)
    return problem(
        400,
        "Malformed request",
        "The multipart/form-data body cannot be parsed.",
        slug="malformed-request",
    )


async def unexpected_error(request: Request, exc: Exception) -> Response:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem(500, "Internal error", "The server hit an unexpected error; it was logged.")


def install(app: FastAPI) -> None:
    app.add_exception_handler(DashboardError, dashboard_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(ParseError, malformed_body)
    app.add_exception_handler(Exception, unexpected_error)
    document(app)  # the OpenAPI document declares this one error shape for every operation

"""The FastAPI app factory: the same ``create_app()`` serves locally and on Modal."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from api import access_log, problems
from api.heartbeats import Heartbeats
from api.method_override import MethodOverride
from api.routes import (
    artifacts,
    legacy,
    log,
    pages,
    recent,
    sessions,
    streams,
    tus,
    upload_limits,
)
from api.send_deadline import SendDeadlines
from api.sse import FrameCache
from api.transports import DashboardApp
from dashboard.config import Settings
from dashboard.runner import AgentLauncher
from dashboard.uploads import FileWriter
from dashboard.volumes import VolumeStore
from dashboard.workspace import Workspace

ROOT = Path(__file__).resolve().parent.parent
TUS_EXPOSED_HEADERS = [
    "Location",
    "Upload-Offset",
    "Upload-Length",
    "Upload-Metadata",
    "Upload-Expires",
    "Tus-Resumable",
    "Tus-Version",
    "Tus-Extension",
    "Tus-Max-Size",
    "Tus-Checksum-Algorithm",
    "Upload-Defer-Length",
    "Upload-Concat",
]


def create_app(
    settings: Settings | None = None,
    *,
    volumes: VolumeStore | None = None,
    launcher: AgentLauncher | None = None,
    writer: FileWriter | None = None,
    public_url_resolver: Callable[[], str | None] | None = None,
) -> FastAPI:
    """Build the app. Services are created in the lifespan, so each app is a fresh world."""
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        access_log.install()
        workspace = Workspace(settings, volumes=volumes, launcher=launcher, writer=writer)
        app.state.workspace = workspace
        await workspace.startup()
        try:
            yield
        finally:
            await workspace.shutdown()

    app = DashboardApp(
        title="Dataset dashboard",
        version="1.0.0",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.frames = FrameCache()
    app.state.send_deadlines = SendDeadlines(streams.SEND_DEADLINE_S)
    app.state.heartbeats = Heartbeats(streams.HEARTBEAT_S)
    app.state.templates = Jinja2Templates(directory=str(ROOT / "templates"))
    app.state.public_url_resolver = public_url_resolver
    problems.install(app)
    for module in (pages, recent, sessions, tus, streams, legacy, log, artifacts):
        app.include_router(module.router)
    app.include_router(upload_limits.router)  # session-less Tus-Max-Size discovery
    app.mount("/static", StaticFiles(directory=str(ROOT / "static")), name="static")
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "HEAD", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=["*"],
            expose_headers=TUS_EXPOSED_HEADERS,
        )
    # outermost: the overridden method is the one CORS, routing and the handlers see
    app.add_middleware(MethodOverride)
    return app

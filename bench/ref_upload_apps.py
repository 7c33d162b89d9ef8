"""Reference upload servers for bench/upload.py, on the dashboard's stack (uvicorn factories).

* ``raw_app``: one streaming POST written straight to a file: the ceiling for an HTTP
  upload in Python on this stack (no tus bookkeeping, no fsync).
* ``tuspyserver_app``: tuspyserver 4.4.3's router mounted in a minimal FastAPI app.

Both write under ``$BENCH_FILES_DIR``.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI, Request, Response


def _files_dir() -> Path:
    folder = Path(os.environ["BENCH_FILES_DIR"])
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def raw_app() -> FastAPI:
    app = FastAPI()
    folder = _files_dir()

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/raw/{name}")
    async def raw(name: str, request: Request) -> Response:
        fd = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            async for chunk in request.stream():
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        return Response(status_code=201)

    return app


def tuspyserver_app() -> FastAPI:
    from tuspyserver import create_tus_router

    app = FastAPI()

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.include_router(create_tus_router(prefix="files", files_dir=str(_files_dir())))
    return app

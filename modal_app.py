"""The Modal deployment: ``modal deploy modal_app.py`` (or ``modal serve modal_app.py``).

A thin shell. The cloud shape maps onto the local one like this:

=======================  ==============================  ======================================
                         local (``make run``)            Modal (this file)
=======================  ==============================  ======================================
web app                  uvicorn + ``create_app()``      ``web``: ``@modal.asgi_app()`` returning
                                                         the same ``create_app()``
data dir (sessions,      ``./.dashboard-data``           the staging volume, mounted at
partial uploads)                                         ``DASHBOARD_DATA_DIR``
session volume           a folder, ``LocalVolumeStore``  a Modal Volume, ``ModalVolumeStore``
the agent                a child process,                ``run_agent_remotely``, a Modal Function
                         ``LocalProcessLauncher``        with the session volume mounted at call
                                                         time, ``ModalAgentLauncher``
agent log URL            the request's base URL          ``DASHBOARD_PUBLIC_URL``, else this
                                                         web function's own URL
=======================  ==============================  ======================================

Project modules are imported inside the function bodies, so ``modal deploy`` needs only
``pip install modal`` on the deploying machine; the image has everything else.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import modal

if TYPE_CHECKING:
    from fastapi import FastAPI

logger = logging.getLogger("dashboard.modal")

ROOT = Path(__file__).resolve().parent
APP_NAME = "dataset-dashboard"
STAGING_VOLUME = "dataset-dashboard-staging"
STAGING_MOUNT = "/dashboard-data"  # DASHBOARD_DATA_DIR of the web container
AGENT_MOUNT = "/volume"  # where the session's volume appears to the agent

# One image for both functions: requirements.txt, then the project's own packages and the
# page's templates/static files (added at container start, so code edits need no rebuild).
image = (
    modal.Image.debian_slim(python_version="3.11")
    .uv_pip_install(requirements=[str(ROOT / "requirements.txt")])
    .add_local_python_source("dashboard", "api", "dashboard_modal")
    .add_local_dir(ROOT / "templates", remote_path="/root/templates")
    .add_local_dir(ROOT / "static", remote_path="/root/static")
)

app = modal.App(APP_NAME, image=image)

# Sessions records and partial uploads: on a volume, so a container restart keeps them.
staging_volume = modal.Volume.from_name(STAGING_VOLUME, create_if_missing=True)


def volume_by_name(name: str) -> Any:
    """The cloud seam for volumes: ``dataset-volume-{session_id}`` and the staging volume."""
    return modal.Volume.from_name(name, create_if_missing=True)


def function_call_by_id(call_id: str) -> Any:
    """The cloud seam for re-attaching to a run after a restart (the id is in its record)."""
    return modal.FunctionCall.from_id(call_id)


# -- the agent ---------------------------------------------------------------------------
@app.function(cpu=2.0, memory=4096, timeout=4 * 3600)
def run_agent_remotely(
    volume_name: str,
    volume_path: str,
    experiment_context: Any,
    log_url: str,
    log_token: str,
    agent: str,
) -> dict[str, Any]:
    """Run the agent (``DASHBOARD_AGENT``, the same code as locally) on the mounted volume.

    Spawned by the web function as
    ``run_agent_remotely.with_options(volumes={AGENT_MOUNT: <session volume>}).spawn(...)``;
    logs go over HTTP to ``log_url`` with ``log_token``; the volume is committed before the
    outcome is returned.
    """
    from dashboard_modal.launcher import run_agent_job

    return run_agent_job(
        volume_path=volume_path,
        experiment_context=experiment_context,
        log_url=log_url,
        log_token=log_token,
        agent=agent,
        commit=lambda: volume_by_name(volume_name).commit(),
    )


# -- the web app -------------------------------------------------------------------------
def public_url() -> str | None:
    """``DASHBOARD_PUBLIC_URL``, else this web function's own URL, else None.

    None makes the app use the request's base URL. Never a hard-coded host.
    """
    configured = os.environ.get("DASHBOARD_PUBLIC_URL", "").strip().rstrip("/")
    if configured:
        return configured
    if modal.is_local():  # not in a deployed container: there is no web URL to ask for
        return None
    if "url" not in _web_url:
        try:
            url = web.get_web_url()  # blocking, but FastAPI runs this dependency in a thread
        except Exception:
            logger.warning("could not look up the web function's URL", exc_info=True)
            return None
        if not url:
            return None
        _web_url["url"] = url.rstrip("/")
    return _web_url["url"]


_web_url: dict[str, str] = {}  # the deployment's URL never changes within a container


def build_web_app() -> FastAPI:
    """The same ``create_app()`` as locally, with the Modal store and launcher injected."""
    from api.app import create_app
    from dashboard_modal import ModalAgentLauncher, ModalVolumeStore
    from dashboard_modal.launcher import AgentFunctionLike

    return create_app(
        volumes=ModalVolumeStore(volume_by_name, staging_volume=STAGING_VOLUME),
        launcher=ModalAgentLauncher(
            cast(AgentFunctionLike, run_agent_remotely),
            volume_by_name,
            mount_path=AGENT_MOUNT,
            function_call=function_call_by_id,
        ),
        public_url_resolver=public_url,
    )


@app.function(
    volumes={STAGING_MOUNT: staging_volume},
    env={"DASHBOARD_DATA_DIR": STAGING_MOUNT},
    # The event hub (live feeds, replay history, run tasks) is in memory: exactly one
    # container must hold it, so it never scales to zero and never scales out.
    min_containers=1,
    max_containers=1,
    # Not placed on a preemptible instance: a preemption would drop every open feed and
    # upload at once. Runs survive it anyway (their FunctionCall ids are in the session
    # records and the next container re-attaches), but uploads and viewers reconnect.
    nonpreemptible=True,
    # With min_containers=1 the container is never idle-scaled away; this is how long an
    # idle container above that minimum would wait, so it has no effect in this shape.
    scaledown_window=15 * 60,
    timeout=60 * 60,  # per input: a WebSocket/SSE stream is cut after this and resumes
)
@modal.concurrent(max_inputs=1000)  # every open WebSocket/SSE stream is one input
@modal.asgi_app()
def web() -> FastAPI:
    return build_web_app()

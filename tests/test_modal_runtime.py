"""The app inside Modal's own ASGI wrapper and lifespan manager, with a staging volume that
loses uncommitted writes in a crash (``tests/modal_runtime.py``).

Only Modal's cloud is faked: the session volumes (``FakeModalVolumes``), the staging volume
(``CrashLosingVolume``, the data dir itself), and the agent Function (``FakeAgentFunction``,
which runs the real ``run_agent_remotely`` body in a thread of this process, so a run really
outlives the web container it was started from, and logs over HTTP to whichever container
serves the URL then).
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

import modal_app
from api.transports import TRANSPORT_KEY
from tests.feeds import tus_upload
from tests.modal_runtime import CrashLosingVolume, ModalWebContainer
from tests.test_modal_app import FakeAgentFunction, real_body
from tests.test_volume_store_contract import FakeModalVolumes

WAIT_S = 30.0


class World:
    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in ("DASHBOARD_PUBLIC_URL", "DASHBOARD_RUN_TIMEOUT"):
            monkeypatch.delenv(name, raising=False)
        self.data_dir = tmp_path / "staging-volume"
        monkeypatch.setenv("DASHBOARD_DATA_DIR", str(self.data_dir))
        monkeypatch.setenv("DASHBOARD_AGENT", "tests.agents:gated")
        self.volumes = FakeModalVolumes(tmp_path / "modal")
        self.staging = CrashLosingVolume(modal_app.STAGING_VOLUME, self.data_dir)
        self.volumes.volumes[modal_app.STAGING_VOLUME] = self.staging
        self.function = FakeAgentFunction(real_body(modal_app.run_agent_remotely))
        monkeypatch.setattr(modal_app, "volume_by_name", self.volumes)
        monkeypatch.setattr(modal_app, "run_agent_remotely", self.function)
        monkeypatch.setattr(modal_app, "function_call_by_id", self.function.from_id)
        self.gate = tmp_path / "gate"
        # the @modal.asgi_app() function's own body, called as the container calls it
        body: Callable[[], Any] = modal_app.web.local
        self.container = ModalWebContainer(body, self.staging)

    def committed_record(self, sid: str) -> dict[str, Any]:
        return json.loads(self.staging.committed_file(f"sessions/{sid}.json").read_text())

    def committed_history(self, sid: str) -> str:
        path = self.staging.committed_file(f"events/{sid}.jsonl")
        return path.read_text() if path.is_file() else ""


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will not have access to the mounted Volume")
        made = World(tmp_path, monkeypatch)
        try:
            yield made
        finally:
            made.gate.touch()  # let a waiting agent end
            made.container.stop()


def read_until(
    ws: ClientConnection, done: Callable[[list[dict[str, Any]]], bool], within: float = WAIT_S
) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + within
    while not done(events):
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"waited {within} s; got {events}"
        events.extend(json.loads(ws.recv(timeout=remaining)))
    return events


def logs(events: list[dict[str, Any]]) -> list[str]:
    return [e["data"]["message"] for e in events if e.get("type") == "log"]


def states(events: list[dict[str, Any]]) -> list[str]:
    return [e["data"]["state"] for e in events if e.get("type") == "status"]


def start_gated_run(world: World, url: str) -> str:
    created = httpx.post(
        f"{url}/api/sessions",
        json={
            "experiment_context": {"description": "outlives its container", "gate": str(world.gate)}
        },
        timeout=10,
    )
    assert created.status_code == 201, created.text
    sid = str(created.json()["session_id"])
    tus_upload(url, sid, "a.csv", b"id,value\n1,2\n")
    started = httpx.post(f"{url}/api/sessions/{sid}/run", timeout=10)
    assert started.status_code == 202, started.text
    return sid


def wait_for(check: Callable[[], bool], what: str, within: float = WAIT_S) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


# -- the harness itself ----------------------------------------------------------------------
def test_the_app_runs_inside_modals_wrapper_with_modals_scope(world: World) -> None:
    with world.container as container:
        health = httpx.get(f"{container.url}/healthz", timeout=10)
        assert health.status_code == 200 and health.json()["status"] == "ok"
        sid = httpx.post(
            f"{container.url}/api/sessions", json={"experiment_context": "x"}, timeout=10
        ).json()["session_id"]
        with ws_connect(f"{container.ws_url}/api/sessions/{sid}/ws?since=0") as ws:
            assert states(json.loads(ws.recv(timeout=10))) == ["created"]
        assert container.proxy is not None
        http_scope, _, ws_scope = container.proxy.scopes
        # what Modal's wire format carries, and nothing a server like uvicorn adds
        assert http_scope["type"] == "http" and http_scope["path"] == "/healthz"
        assert "server" not in http_scope and "root_path" not in http_scope
        assert ws_scope["type"] == "websocket"
        # Modal's send is a plain function: no transport to reset a stuck viewer with
        assert TRANSPORT_KEY not in ws_scope
        # the lifespan ran inside Modal's LifespanManager: the workspace is up
        assert container.proxy.lifespan is not None
        assert container.proxy.lifespan._startup.done()


# -- point 1: runs outlive the web container ------------------------------------------------------
def test_a_graceful_restart_does_not_cancel_the_run_and_the_next_container_reattaches(
    world: World,
) -> None:
    container = world.container.start()
    sid = start_gated_run(world, container.url)
    with ws_connect(f"{container.ws_url}/api/sessions/{sid}/ws?since=0") as ws:
        read_until(ws, lambda ev: "before the gate" in logs(ev))
    container.stop()  # a redeploy or a scale-in: Modal runs the lifespan shutdown
    (call,) = world.function.calls
    assert not call.cancelled, "the web container's shutdown must not cancel a remote run"
    record = world.committed_record(sid)
    assert record["state"] == "running" and record["run"]["call_id"] == call.object_id

    container.start()
    with ws_connect(f"{container.ws_url}/api/sessions/{sid}/ws?since=0") as ws:
        # the page re-attaching after the restart sees the log so far
        replay = read_until(ws, lambda ev: "before the gate" in logs(ev))
        assert "running" in states(replay)
        world.gate.touch()
        events = replay + read_until(ws, lambda ev: "succeeded" in states(ev))
    assert logs(events) == ["before the gate", "after the gate"]
    assert world.function.looked_up == [call.object_id], "re-attached by FunctionCall.from_id"
    assert states(events)[-1] == "succeeded"
    view = httpx.get(f"{container.url}/api/sessions/{sid}", timeout=10).json()
    assert view["state"] == "succeeded" and view["summary"] == {"gated": True}
    assert "call_id" not in json.dumps(view), "the call id is not part of the API"


def test_after_a_crash_the_run_is_reattached_and_its_logs_and_result_are_accepted(
    world: World,
) -> None:
    container = world.container.start()
    sid = start_gated_run(world, container.url)
    with ws_connect(f"{container.ws_url}/api/sessions/{sid}/ws?since=0") as ws:
        read_until(ws, lambda ev: "before the gate" in logs(ev))
    # what a crash keeps is what was committed: the call id, and the log flushed so far
    wait_for(lambda: "before the gate" in world.committed_history(sid), "history committed")
    assert world.committed_record(sid)["run"]["call_id"]
    container.crash()  # SIGKILL / preemption: no lifespan shutdown, uncommitted writes lost

    container.start()
    with ws_connect(f"{container.ws_url}/api/sessions/{sid}/ws?since=0") as ws:
        replay = read_until(ws, lambda ev: "before the gate" in logs(ev))
        world.gate.touch()  # the agent goes on: its next /log reaches the new container
        events = replay + read_until(ws, lambda ev: "succeeded" in states(ev))
    assert logs(events) == ["before the gate", "after the gate"]
    assert "failed" not in states(events), "the restart did not mark the run failed"
    (call,) = world.function.calls
    assert not call.cancelled
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(set(seqs)), "seq increases across the crash, no duplicates"

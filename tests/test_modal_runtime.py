"""The app inside Modal's own ASGI wrapper and lifespan manager, with a staging volume that
loses uncommitted writes in a crash (``tests/modal_runtime.py``).

Only Modal's cloud is faked: the session volumes (``FakeModalVolumes``), the staging volume
(``CrashLosingVolume``, the data dir itself), and the agent Function (``FakeAgentFunction``,
which runs the real ``run_agent_remotely`` body in a thread of this process, so a run really
outlives the web container it was started from, and logs over HTTP to whichever container
serves the URL then).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

import modal_app
from api.routes import streams
from api.transports import TRANSPORT_KEY
from tests.feeds import TUS, tus_create, tus_upload, wait_stored
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


# -- heartbeats and the stuck viewer on Modal's ASGI runtime ------------------------------------
def test_idle_feeds_heartbeat_under_modals_wrapper(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """WebSocket: an empty-array text frame (the app cannot send a ping through ASGI);
    SSE: a comment. Both within the interval, through Modal's serialization."""
    monkeypatch.setattr(streams, "HEARTBEAT_S", 0.6)
    with world.container as container:
        sid = httpx.post(
            f"{container.url}/api/sessions", json={"experiment_context": "idle"}, timeout=10
        ).json()["session_id"]
        with ws_connect(f"{container.ws_url}/api/sessions/{sid}/ws?since=0") as ws:
            assert states(json.loads(ws.recv(timeout=10))) == ["created"]
            last, gaps = time.monotonic(), []
            for _ in range(4):
                assert json.loads(ws.recv(timeout=5)) == []  # a heartbeat, no envelope
                now = time.monotonic()
                gaps.append(now - last)
                last = now
        assert max(gaps) < 0.6 * 2, gaps  # never much more than the interval apart
        comments = 0
        with httpx.stream(
            "GET", f"{container.url}/api/sessions/{sid}/events", timeout=10
        ) as response:
            for line in response.iter_lines():
                if line.startswith(":"):
                    comments += 1
                    if comments == 2:
                        break
        assert comments == 2


def never_reading_viewer(port: int, path: str, *, websocket: bool) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    upgrade = (
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        if websocket
        else "Accept: text/event-stream\r\n"
    )
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{upgrade}\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101" if websocket else b"HTTP/1.1 200"), head
    return sock


def test_a_stuck_viewer_is_cut_off_under_modals_wrapper_and_the_others_get_everything(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Modal's runtime has no transport to reset, and buffers a viewer's output in the
    container (a 1024-message queue, then up to 16 MiB per ``put_data_out``) before a send
    blocks; once it does, the send deadline still cuts the viewer off, its close is queued
    within a bound, and the hub lets go of it while the other viewers get everything."""
    monkeypatch.setattr(streams, "SEND_DEADLINE_S", 1.0)
    with world.container as container:
        url = container.url
        sid = httpx.post(
            f"{url}/api/sessions", json={"experiment_context": "stuck"}, timeout=10
        ).json()["session_id"]
        token = world.committed_record(sid)["log_token"]
        path = f"/api/sessions/{sid}/ws?since=0"
        stuck = never_reading_viewer(container.port, path, websocket=True)
        stuck_sse = never_reading_viewer(
            container.port, f"/api/sessions/{sid}/events", websocket=False
        )
        # one frame per POST of 64 KiB: past 16 MiB and 1024 messages, and the sockets
        posts, per_post = 1400, 4
        filler = "x" * 16_000

        def followed() -> int:
            return int(httpx.get(f"{url}/healthz", timeout=10).json()["sessions_followed"])

        got: list[int] = []

        def read_all(ws: ClientConnection) -> None:
            while len(got) < posts * per_post:
                frame = json.loads(ws.recv(timeout=30))
                got.extend(int(e["data"]["message"][:6]) for e in frame if e["type"] == "log")

        try:
            with ws_connect(f"{container.ws_url}{path}", max_size=None) as healthy:
                wait_for(lambda: followed() == 3, "all three viewers subscribed")
                reader = threading.Thread(target=read_all, args=(healthy,), daemon=True)
                reader.start()
                with httpx.Client(
                    base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30
                ) as poster:
                    for i in range(posts):
                        records = [
                            {"message": f"{i * per_post + k:06d}{filler}"} for k in range(per_post)
                        ]
                        assert poster.post("/log", json={"records": records}).status_code == 202
                reader.join(60)
                assert got == list(range(posts * per_post)), "the reader got every line, in order"
                wait_for(lambda: followed() == 1, "the stuck viewers were let go", within=15)
            assert container.proxy is not None
            assert not any(TRANSPORT_KEY in s for s in container.proxy.scopes)
        finally:
            stuck.close()
            stuck_sse.close()


# -- point 2: a crash around the publish never strands an upload ---------------------------------
def resume(upload_url: str, data: bytes, chunk: int = 16_384) -> int:
    """HEAD the upload and PATCH whatever it lacks; the number of PATCHes sent."""
    head = httpx.head(upload_url, headers={"Tus-Resumable": "1.0.0"}, timeout=10)
    assert head.status_code == 200, head.text
    offset, sent = int(head.headers["Upload-Offset"]), 0
    with httpx.Client(timeout=30) as client:
        while offset < len(data):
            r = client.patch(
                upload_url,
                content=data[offset : offset + chunk],
                headers={
                    "Tus-Resumable": "1.0.0",
                    "Upload-Offset": str(offset),
                    "Content-Type": "application/offset+octet-stream",
                },
            )
            assert r.status_code == 204, r.text
            offset, sent = int(r.headers["Upload-Offset"]), sent + 1
    return sent


def crash_around_the_publish(world: World, sid: str, when: str) -> None:
    """Arm the staging volume to die at the first commit after ``data/`` is written into
    the session volume (``batch_upload``, which is its own commit on Modal)."""
    volume = world.volumes(f"dataset-volume-{sid}")
    real = volume.batch_upload

    class Armed:
        @contextlib.asynccontextmanager
        async def aio(self, force: bool = False) -> AsyncIterator[Any]:
            async with real.aio(force=force) as batch:
                yield batch
            if not force:  # a data/ file (context.json goes with force=True)
                world.staging.die_at_next_commit(when)

    volume.batch_upload = Armed()  # type: ignore[assignment]


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_crash_around_the_publish_completes_the_upload_after_restart(
    world: World, when: str
) -> None:
    """The file reached the session volume; the crash came before ("before") or after
    ("after") the next staging commit, but in any case before ``done=True`` was committed.
    The next container finds the same bytes in the volume and completes the record: HEAD,
    the session view and POST /run all agree."""
    world.gate.touch()
    container = world.container.start()
    data = b"id,value\n" + b"".join(b"%d,%d\n" % (i, i * i) for i in range(5000))
    created = httpx.post(
        f"{container.url}/api/sessions",
        json={"experiment_context": {"description": "crash", "gate": str(world.gate)}},
        timeout=10,
    )
    sid = created.json()["session_id"]
    crash_around_the_publish(world, sid, when)

    def upload() -> None:
        with contextlib.suppress(Exception):  # the last PATCH may die with the container
            tus_upload(container.url, sid, "night/a.csv", data, 16_384)

    uploader = threading.Thread(target=upload, daemon=True)
    uploader.start()
    assert world.staging.died.wait(WAIT_S), "the publish reached the session volume"
    container.crash()
    uploader.join(WAIT_S)
    stored = world.volumes(f"dataset-volume-{sid}").root / "data" / "night" / "a.csv"
    assert stored.read_bytes() == data, "the session volume kept the file"

    container.start()
    url = container.url
    # the client resumes as tus clients do: HEAD, then what the server lacks (on Modal a
    # crash also loses acknowledged bytes the staging volume had not committed)
    # (the upload itself may not have been committed yet: then its URL is a 404 and the
    # client creates it again, as tus-js-client does)
    files = httpx.get(f"{url}/api/sessions/{sid}", timeout=10).json()["files"]
    if files:
        resume(url + files[0]["url"], data)
    else:
        tus_upload(url, sid, "night/a.csv", data, 16_384)

    def done() -> bool:
        files = httpx.get(f"{url}/api/sessions/{sid}", timeout=10).json()["files"]
        return bool(files) and all(f["done"] for f in files)

    wait_for(done, "the upload was completed from what is in the volume")
    (entry,) = httpx.get(f"{url}/api/sessions/{sid}", timeout=10).json()["files"]
    assert entry["offset"] == entry["length"] == len(data)
    head = httpx.head(url + entry["url"], headers={"Tus-Resumable": "1.0.0"}, timeout=10)
    assert head.headers["Upload-Offset"] == str(len(data))
    started = httpx.post(f"{url}/api/sessions/{sid}/run", timeout=10)
    assert started.status_code == 202, started.text
    with ws_connect(f"{container.ws_url}/api/sessions/{sid}/ws?since=0") as ws:
        events = read_until(ws, lambda ev: bool({"succeeded", "failed"} & set(states(ev))))
    assert states(events)[-1] == "succeeded"
    assert stored.read_bytes() == data


# -- point 3: publishing in the background, after the last PATCH is answered -----------------------
class HeldBatches:
    """Session-volume ``batch_upload``s of ``data/`` files wait until ``release()``: a
    multi-GB ``batch_upload`` that takes longer than Modal's 150 s request limit."""

    def __init__(self, world: World, sid: str) -> None:
        self.release_event = threading.Event()
        self.entered = threading.Event()
        volume = world.volumes(f"dataset-volume-{sid}")
        real = volume.batch_upload
        held = self

        class Held:
            @contextlib.asynccontextmanager
            async def aio(self, force: bool = False) -> AsyncIterator[Any]:
                if not force:
                    held.entered.set()
                    await asyncio.to_thread(held.release_event.wait, WAIT_S)
                async with real.aio(force=force) as batch:
                    yield batch

        volume.batch_upload = Held()  # type: ignore[assignment]

    def release(self) -> None:
        self.release_event.set()


def new_session(url: str, world: World) -> str:
    created = httpx.post(
        f"{url}/api/sessions",
        json={"experiment_context": {"description": "bg", "gate": str(world.gate)}},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    return str(created.json()["session_id"])


def test_the_last_patch_is_answered_before_the_publish_and_run_waits_for_done(
    world: World,
) -> None:
    world.gate.touch()
    container = world.container.start()
    url = container.url
    sid = new_session(url, world)
    held = HeldBatches(world, sid)
    data = b"id,value\n1,2\n3,4\n"
    with ws_connect(f"{container.ws_url}/api/sessions/{sid}/ws?since=0") as ws:
        created = tus_create(url, sid, "slow.csv", len(data))
        upload_url = url + created.headers["Location"]
        last = httpx.patch(
            upload_url,
            content=data,
            headers={
                **TUS,
                "Upload-Offset": "0",
                "Content-Type": "application/offset+octet-stream",
            },
            timeout=10,
        )
        # answered while the volume write has not even begun: within any request limit
        assert last.status_code == 204 and last.headers["Upload-Offset"] == str(len(data))
        assert held.entered.wait(WAIT_S) and not held.release_event.is_set()
        head = httpx.head(upload_url, headers=TUS, timeout=10)
        assert head.headers["Upload-Offset"] == str(len(data))
        (entry,) = httpx.get(f"{url}/api/sessions/{sid}", timeout=10).json()["files"]
        assert entry["offset"] == len(data) and entry["done"] is False
        refused = httpx.post(f"{url}/api/sessions/{sid}/run", timeout=10)
        assert refused.status_code == 409
        assert refused.headers["content-type"] == "application/problem+json"
        assert "still being stored" in refused.json()["detail"]
        resend = httpx.patch(
            upload_url,
            content=b"",
            headers={
                **TUS,
                "Upload-Offset": str(len(data)),
                "Content-Type": "application/offset+octet-stream",
            },
            timeout=10,
        )
        assert resend.status_code == 409 and resend.headers["Upload-Offset"] == str(len(data))
        held.release()
        uploads = read_until(
            ws, lambda ev: any(e["type"] == "upload" and e["data"]["done"] for e in ev)
        )
    progress = [e["data"] for e in uploads if e["type"] == "upload"]
    assert progress[-2:] == [
        {"path": "slow.csv", "offset": len(data), "length": len(data), "done": False},
        {"path": "slow.csv", "offset": len(data), "length": len(data), "done": True},
    ]
    (entry,) = httpx.get(f"{url}/api/sessions/{sid}", timeout=10).json()["files"]
    assert entry["done"] is True
    assert httpx.post(f"{url}/api/sessions/{sid}/run", timeout=10).status_code == 202


def test_a_crash_during_the_background_publish_is_resumed_by_the_next_container(
    world: World,
) -> None:
    world.gate.touch()
    container = world.container.start()
    url = container.url
    sid = new_session(url, world)
    held = HeldBatches(world, sid)
    data = b"id,value\n" + b"5,6\n" * 1000
    created = tus_create(url, sid, "big.csv", len(data))
    upload_url = url + created.headers["Location"]
    last = httpx.patch(
        upload_url,
        content=data,
        headers={**TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"},
        timeout=10,
    )
    assert last.status_code == 204
    assert held.entered.wait(WAIT_S)
    # the acknowledged upload reached a commit (the event history's, within a second)
    wait_for(
        lambda: (
            '"done":false' in world.committed_history(sid)
            and world.staging.committed_file(f"staging/{sid}").is_dir()
        ),
        "the complete upload was committed",
    )
    wait_for(
        lambda: any(
            p.suffix == ".part" and p.stat().st_size == len(data)
            for p in world.staging.committed_file(f"staging/{sid}").iterdir()
        ),
        "the complete .part was committed",
    )
    container.crash()  # mid batch_upload: nothing reached the session volume
    held.release()
    container.start()  # resumes the publish at start-up, no client action needed
    wait_stored(url, sid)
    (entry,) = httpx.get(f"{url}/api/sessions/{sid}", timeout=10).json()["files"]
    assert entry["done"] is True
    stored = world.volumes(f"dataset-volume-{sid}").root / "data" / "big.csv"
    assert stored.read_bytes() == data


def test_the_legacy_form_publishes_in_the_background_and_its_run_waits(world: World) -> None:
    world.gate.touch()
    container = world.container.start()
    url = container.url
    # the form creates its session itself: hold every session volume created from now on
    holders: list[HeldBatches] = []
    factory = world.volumes
    real_call = factory.__class__.__call__

    def volume(self: FakeModalVolumes, name: str) -> Any:
        fresh = name not in self.volumes
        handle = real_call(self, name)
        if fresh and name.startswith("dataset-volume-"):
            holders.append(HeldBatches(world, name.removeprefix("dataset-volume-")))
        return handle

    with contextlib.ExitStack() as stack:
        stack.callback(lambda: [h.release() for h in holders])
        patch = pytest.MonkeyPatch()
        stack.callback(patch.undo)
        patch.setattr(FakeModalVolumes, "__call__", volume)
        form = {
            "experiment_context": json.dumps({"description": "legacy", "gate": str(world.gate)})
        }
        files = [("files", ("l/a.csv", b"id,v\n1,2\n", "text/csv"))]
        r = httpx.post(f"{url}/upload", data=form, files=files, timeout=10)
        assert r.status_code == 202, r.text  # answered before the file is in the volume
        sid = r.json()["session_id"]
        (holder,) = holders
        assert holder.entered.wait(WAIT_S)
        view = httpx.get(f"{url}/api/sessions/{sid}", timeout=10).json()
        assert view["state"] == "queued" and [f["done"] for f in view["files"]] == [False]
        holder.release()
        with ws_connect(f"{container.ws_url}/api/sessions/{sid}/ws?since=0") as ws:
            events = read_until(ws, lambda ev: bool({"succeeded", "failed"} & set(states(ev))))
    assert states(events)[-1] == "succeeded", events
    view = httpx.get(f"{url}/api/sessions/{sid}", timeout=10).json()
    assert [(f["path"], f["done"]) for f in view["files"]] == [("l/a.csv", True)]


def test_finished_upload_records_leave_the_staging_volume_when_the_run_starts(
    world: World,
) -> None:
    world.gate.touch()
    container = world.container.start()
    url = container.url
    sid = new_session(url, world)
    for name in ("a.csv", "b/c.csv"):
        tus_upload(url, sid, name, b"id,v\n1,2\n")
    staged = world.data_dir / "staging" / sid
    assert sorted(p.suffix for p in staged.iterdir()) == [".json", ".json"]  # .part consumed
    assert httpx.post(f"{url}/api/sessions/{sid}/run", timeout=10).status_code == 202
    with ws_connect(f"{container.ws_url}/api/sessions/{sid}/ws?since=0") as ws:
        read_until(ws, lambda ev: "succeeded" in states(ev))
    assert not staged.exists(), "no record, no .part left: Modal volumes cap inodes"
    assert not world.staging.committed_file(f"staging/{sid}").exists(), "and committed so"
    view = httpx.get(f"{url}/api/sessions/{sid}", timeout=10).json()
    assert [(f["path"], f["done"]) for f in view["files"]] == [("a.csv", True), ("b/c.csv", True)]
    container.stop()
    container.start()  # the file list outlives the records, also after a restart
    again = httpx.get(f"{url}/api/sessions/{sid}", timeout=10).json()
    assert again["files"] == view["files"]

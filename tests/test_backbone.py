"""The backbone end to end against a real server process and real agent processes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import websockets

from tests.feeds import create_session, follow_ws, read_sse, start_run, tus_upload

pytestmark = pytest.mark.anyio

FILES = [
    ("files", ("exp/a.csv", b"id,value\n1,0.5\n2,0.25\n", "text/csv")),
    ("files", ("exp/sub/b.csv", b"id,value\n3,4\n", "text/csv")),
]


def terminal(ev) -> bool:
    data = ev.json()
    return data.get("type") == "status" and data["data"]["state"] in ("succeeded", "failed")


def volume(server, sid: str) -> Path:
    return server.data_dir / "volumes" / f"dataset-volume-{sid}"


async def test_legacy_flow_end_to_end_on_both_stream_kinds(shared_server) -> None:
    server = shared_server
    resp = httpx.post(
        server.url + "/upload",
        files=FILES,
        data={"experiment_context": "Values by id; the value column matters."},
    )
    assert resp.status_code == 202, resp.text
    body = resp.json()
    sid = body["session_id"]
    assert body["volume_name"] == f"dataset-volume-{sid}"
    ws, sse = await asyncio.gather(
        follow_ws(body["ws_url"] + "?since=0"),
        read_sse(server.url, f"/api/sessions/{sid}/events", {"Last-Event-ID": "0"}),
    )
    assert ws.close_code == 1000
    states = [e["data"]["state"] for e in ws.of_type("status")]
    assert states[0] == "created" and states[-1] == "succeeded"
    assert "running" in states
    assert ws.of_type("log"), "the agent's log lines arrive over HTTP and fan out"
    assert ws.of_type("result")[0]["data"]["artifacts"]
    assert sse[-1].event == "end"
    assert [int(e.id) for e in sse if e.id] == [e["seq"] for e in ws.events]
    assert {e.event for e in sse} >= {"status", "log", "upload", "result", "end"}
    vol = volume(server, sid)
    assert (vol / "data/exp/sub/b.csv").read_bytes() == b"id,value\n3,4\n"
    assert json.loads((vol / "context.json").read_text())["value"].startswith("Values by id")
    assert (vol / "results/summary.json").is_file()
    legacy = await read_sse(server.url, f"/stream?session_id={sid}", until=terminal)
    assert all(e.event is None for e in legacy)
    assert [e.json()["seq"] for e in legacy] == [e["seq"] for e in ws.events]


async def test_replay_with_since_and_last_event_id_is_exact(shared_server) -> None:
    server = shared_server
    sid = create_session(server.url)
    tus_upload(server.url, sid, "t.csv", b"a,b\n1,2\n")
    start_run(server.url, sid)
    full = await follow_ws(f"{server.ws_url}/api/sessions/{sid}/ws?since=0")
    seqs = [e["seq"] for e in full.events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    pivot = seqs[len(seqs) // 2]
    rest = [s for s in seqs if s > pivot]
    again = await follow_ws(f"{server.ws_url}/api/sessions/{sid}/ws?since={pivot}")
    assert [e["seq"] for e in again.events] == rest
    for headers, query in (({"Last-Event-ID": str(pivot)}, ""), ({}, f"?last_event_id={pivot}")):
        sse = await read_sse(server.url, f"/api/sessions/{sid}/events{query}", headers)
        assert [int(e.id) for e in sse if e.id] == rest
        assert sse[-1].event == "end"


async def test_log_needs_the_sessions_own_token(shared_server) -> None:
    server = shared_server
    a = create_session(server.url)
    b = create_session(server.url)
    r = httpx.post(server.url + "/log", json={"message": "x"})
    assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
    r = httpx.post(
        server.url + "/log", json={"message": "x"}, headers={"Authorization": "Bearer nope"}
    )
    assert r.status_code == 401
    record_a = json.loads((server.data_dir / "sessions" / f"{a}.json").read_text())
    r = httpx.post(
        server.url + "/log",
        json={"records": [{"message": "for a", "level": "warning"}]},
        headers={"Authorization": f"Bearer {record_a['log_token']}"},
    )
    assert r.status_code == 202
    feed_b = await read_sse(server.url, f"/stream?session_id={b}", until=lambda e: True)
    assert all(e.json()["session_id"] == b for e in feed_b)
    feed_a = await read_sse(
        server.url, f"/stream?session_id={a}", until=lambda e: e.json()["type"] == "log"
    )
    assert feed_a[-1].json()["data"] == {"level": "warning", "message": "for a"}
    for body in (httpx.get(f"{server.url}/api/sessions/{a}").text, r.text):
        assert record_a["log_token"] not in body


async def test_two_concurrent_sessions_see_only_their_own_events(server_factory) -> None:
    live = server_factory(DASHBOARD_AGENT="tests.agents:chatty")
    sids = [create_session(live.url, {"description": f"run {i}", "lines": 50}) for i in range(2)]
    for sid in sids:
        tus_upload(live.url, sid, "x.csv", b"1\n")
    feeds = [follow_ws(f"{live.ws_url}/api/sessions/{s}/ws?since=0") for s in sids]
    for sid in sids:
        start_run(live.url, sid)
    results = await asyncio.gather(*feeds)
    for sid, result in zip(sids, results, strict=True):
        assert {e["session_id"] for e in result.events} == {sid}
        lines = [e["data"]["message"] for e in result.of_type("log")]
        assert lines == [f"line {i}" for i in range(50)]


async def test_cookie_scoped_stream_shows_only_my_sessions(shared_server) -> None:
    server = shared_server
    with httpx.Client(base_url=server.url) as me, httpx.Client(base_url=server.url) as other:
        assert me.get("/").cookies.get("dashboard_client")
        other.get("/")
        mine = me.post("/upload", files=FILES[:1], data={"experiment_context": "mine"}).json()
        theirs = other.post("/upload", files=FILES[:1], data={"experiment_context": "theirs"})
        assert theirs.status_code == 202
        cookies = {"dashboard_client": me.cookies["dashboard_client"]}
    events = await read_sse(server.url, "/stream", cookies=cookies, until=terminal)
    assert {e.json()["session_id"] for e in events} == {mine["session_id"]}
    ws_url = f"{server.ws_url}/ws"
    async with websockets.connect(
        ws_url, additional_headers={"Cookie": f"dashboard_client={cookies['dashboard_client']}"}
    ) as ws:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert {e["session_id"] for e in frame} == {mine["session_id"]}
    no_cookie = httpx.get(server.url + "/stream")
    assert no_cookie.status_code == 404


@pytest.mark.parametrize(
    ("agent", "expected"),
    [
        ("tests.agents:raises", "ValueError: the dataset has no header row"),
        ("tests.agents:exits", "exited with code 3"),
        ("tests.agents:hangs", "timed out after 2 s"),
    ],
)
async def test_agent_failures_become_readable_failed_status(server_factory, agent, expected):
    # only the hanging agent gets a short timeout: a loaded machine may start the others slowly
    timeout = "2" if agent.endswith("hangs") else "120"
    live = server_factory(DASHBOARD_AGENT=agent, DASHBOARD_RUN_TIMEOUT=timeout)
    sid = create_session(live.url)
    tus_upload(live.url, sid, "a.csv", b"x\n")
    start_run(live.url, sid)
    ws = await follow_ws(f"{live.ws_url}/api/sessions/{sid}/ws?since=0")
    last = ws.of_type("status")[-1]["data"]
    assert last["state"] == "failed"
    assert expected in last["error"]
    assert "Traceback" not in last["error"]
    view = httpx.get(f"{live.url}/api/sessions/{sid}").json()
    assert view["run"]["state"] == "failed" and expected in view["run"]["error"]
    assert httpx.get(live.url + "/healthz").json()["status"] == "ok"


async def test_agent_may_post_by_itself_with_mapping_style_log(server_factory) -> None:
    live = server_factory(DASHBOARD_AGENT="tests.agents:uses_mapping")
    sid = create_session(live.url)
    tus_upload(live.url, sid, "a.csv", b"x\n")
    start_run(live.url, sid)
    ws = await follow_ws(f"{live.ws_url}/api/sessions/{sid}/ws?since=0")
    assert ws.of_type("log")[0]["data"] == {"level": "warning", "message": "posted by hand"}
    assert ws.of_type("status")[-1]["data"]["state"] == "succeeded"


async def test_slow_websocket_client_does_not_stall_others(server_factory) -> None:
    live = server_factory(DASHBOARD_AGENT="tests.agents:chatty")
    sid = create_session(live.url, {"description": "big", "lines": 20000})
    tus_upload(live.url, sid, "a.csv", b"x\n")
    url = f"{live.ws_url}/api/sessions/{sid}/ws?since=0"
    # never reads; tiny receive buffer so the server's sends back up quickly
    stuck = await websockets.connect(url, max_queue=1, max_size=None)
    stuck.transport.set_write_buffer_limits(0)  # type: ignore[attr-defined]
    sock = stuck.transport.get_extra_info("socket")
    import socket as _socket

    sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_RCVBUF, 4096)
    stuck.transport.pause_reading()  # type: ignore[attr-defined]
    started = time.monotonic()
    follower = asyncio.create_task(follow_ws(url, timeout=90))
    start_run(live.url, sid)
    result = await follower
    elapsed = time.monotonic() - started
    assert result.close_code == 1000
    assert len(result.of_type("log")) == 20000
    assert result.of_type("status")[-1]["data"]["state"] == "succeeded"
    assert elapsed < 60
    await stuck.close()


async def test_bad_context_and_bad_paths_are_422_and_write_nothing(server) -> None:
    for ctx in ("", "   ", "\x00", {"description": ""}, {"nodesc": 1}):
        r = httpx.post(server.url + "/api/sessions", json={"experiment_context": ctx})
        assert r.status_code == 422, ctx
        problem = r.json()
        assert r.headers["content-type"] == "application/problem+json"
        assert {"type", "title", "status", "detail", "errors"} <= set(problem)
        assert problem["errors"][0]["field"] == "experiment_context"
    r = httpx.post(server.url + "/upload", files=FILES, data={"experiment_context": " "})
    assert r.status_code == 422
    for bad in ("../evil.csv", "/abs.csv", "a/../../b", "C:\\x.csv", "a//b.csv"):
        r = httpx.post(
            server.url + "/upload",
            files=[("files", (bad, b"x", "text/csv"))],
            data={"experiment_context": "fine"},
        )
        assert r.status_code == 422, (bad, r.text)
    sessions = list((server.data_dir / "sessions").glob("*.json"))
    volumes = list((server.data_dir / "volumes").glob("*"))
    assert sessions == [] and volumes == []
    assert not (server.data_dir.parent / "evil.csv").exists()


async def test_unknown_and_malformed_ids_are_404(shared_server) -> None:
    server = shared_server
    for path in ("/api/sessions/" + "0" * 32, "/api/sessions/..%2F..%2Fetc", "/api/sessions/ABC"):
        r = httpx.get(server.url + path)
        assert r.status_code == 404
    r = httpx.get(server.url + "/api/sessions/" + "0" * 32 + "/events")
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    with pytest.raises(websockets.InvalidStatus):
        async with websockets.connect(f"{server.ws_url}/api/sessions/{'0' * 32}/ws"):
            pass


async def test_session_state_survives_a_restart_and_running_becomes_failed(server_factory):
    live = server_factory(DASHBOARD_AGENT="tests.agents:hangs")
    done = create_session(live.url)
    tus_upload(live.url, done, "a.csv", b"keep me\n")
    running = create_session(live.url)
    tus_upload(live.url, running, "a.csv", b"x\n")
    start_run(live.url, running)
    deadline = time.monotonic() + 20
    while httpx.get(f"{live.url}/api/sessions/{running}").json()["state"] != "running":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    first_seq = httpx.get(live.url + "/healthz").json()["last_seq"]
    live.restart()
    view = httpx.get(f"{live.url}/api/sessions/{done}").json()
    assert view["state"] == "uploading"
    assert [{k: f[k] for k in ("path", "length", "offset", "done")} for f in view["files"]] == [
        {"path": "a.csv", "length": 8, "offset": 8, "done": True}
    ]
    after = httpx.get(f"{live.url}/api/sessions/{running}").json()
    assert after["state"] == "failed"
    assert "interrupted by a server restart" in after["run"]["error"]
    ws = await follow_ws(f"{live.ws_url}/api/sessions/{running}/ws")
    assert ws.close_code == 1000
    assert ws.of_type("status")[-1]["data"]["state"] == "failed"
    assert ws.events[0]["seq"] > first_seq  # one increasing counter, across restarts too
    orphans = subprocess.run(
        ["pgrep", "-f", f"dashboard.agent.worker .*{running}"], capture_output=True, check=False
    )
    assert orphans.stdout == b"", "the hanging agent of the killed server was reaped"


async def test_healthz_and_page_cookie(shared_server) -> None:
    server = shared_server
    assert httpx.get(server.url + "/healthz").json()["status"] == "ok"
    page = httpx.get(server.url + "/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert len(page.cookies["dashboard_client"]) == 32

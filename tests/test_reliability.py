"""Reliability under crashes, oversized input, floods and connection churn (real servers)."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
import websockets

from tests.feeds import create_session, tus_create, tus_upload, wait_stored
from tests.servers import LiveServer

MIB = 1024 * 1024
JSON_LIMIT = 4 * MIB  # api/deps.MAX_JSON_BODY_BYTES
SETTLE_S = 15.0


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def log_token(server: LiveServer, sid: str) -> str:
    record = json.loads((server.data_dir / "sessions" / f"{sid}.json").read_text())
    return str(record["log_token"])


def is_problem(r: httpx.Response, status: int) -> bool:
    return r.status_code == status and r.headers["content-type"] == "application/problem+json"


# -- crash during a legacy upload ------------------------------------------------------------


def test_sigkill_during_a_legacy_upload_leaves_nothing_half_written(server: LiveServer) -> None:
    done = create_session(server.url)  # a complete session that must survive the crash
    httpx.post(
        f"{server.url}/api/sessions/{done}/files",
        headers={
            "Tus-Resumable": "1.0.0",
            "Upload-Length": "3",
            "Upload-Metadata": "relativePath YS5jc3Y=",
            "Content-Type": "application/offset+octet-stream",
        },
        content=b"abc",
    ).raise_for_status()
    boundary = "crashboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="experiment_context"\r\n\r\n'
        f'crash test\r\n--{boundary}\r\nContent-Disposition: form-data; name="files"; '
        f'filename="crash/half.bin"\r\nContent-Type: application/octet-stream\r\n\r\n'
    ).encode()
    release = threading.Event()

    def body() -> Iterator[bytes]:
        yield head
        yield b"x" * 256 * 1024
        release.wait(30)  # the server is killed while this part is half sent
        yield b"y" * 1024
        yield f"\r\n--{boundary}--\r\n".encode()

    errors: list[BaseException] = []

    def send() -> None:
        try:
            httpx.post(
                server.url + "/upload",
                content=body(),
                headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
                timeout=30,
            )
        except httpx.HTTPError as exc:
            errors.append(exc)

    sender = threading.Thread(target=send)
    sender.start()
    staging = server.data_dir / "staging"

    def half_written() -> bool:
        return any(p.stat().st_size > 0 for p in staging.glob("legacy-*/*.part"))

    wait_until(half_written, 20, "the legacy part to reach the staging area")
    sessions_before = set((server.data_dir / "sessions").glob("*.json"))
    server.restart()
    release.set()
    sender.join(30)
    assert errors, "the upload could not have succeeded: its server was killed"
    sessions_after = set((server.data_dir / "sessions").glob("*.json"))
    assert sessions_after == sessions_before, "no session was half-created by the crash"
    for record in sessions_after:
        sid = record.stem
        view = httpx.get(f"{server.url}/api/sessions/{sid}", timeout=10)
        assert view.status_code == 200, view.text
        data = server.data_dir / "volumes" / f"dataset-volume-{sid}" / "data"
        on_disk = {p.relative_to(data).as_posix(): p.stat().st_size for p in data.rglob("*")}
        on_disk = {k: v for k, v in on_disk.items() if (data / k).is_file()}
        listed = {f["path"]: f["length"] for f in view.json()["files"] if f["done"]}
        assert on_disk == listed, "every file in data/ is a complete, listed upload"
    for volume in (server.data_dir / "volumes").iterdir():
        assert not (volume / "data" / "crash").exists(), "the half-sent file was published"
    assert httpx.get(f"{server.url}/api/sessions/{done}").json()["files"][0]["done"] is True
    assert list(staging.glob("legacy-*")) == [], "the cut-off form's staged parts are cleared"


# -- bounded JSON bodies ---------------------------------------------------------------------


def chunked(payload: bytes) -> Iterator[bytes]:
    for start in range(0, len(payload), 256 * 1024):
        yield payload[start : start + 256 * 1024]


def test_json_bodies_up_to_1_mib_pass_and_over_the_limit_are_413(shared_server) -> None:
    server = shared_server
    big_context = {"description": "one mebibyte of context", "notes": ["n" * 1000] * 1050}
    body = json.dumps({"experiment_context": big_context}).encode()
    assert len(body) > MIB
    r = httpx.post(f"{server.url}/api/sessions", content=body, timeout=30)
    assert r.status_code == 201, r.text
    sid = create_session(server.url)
    auth = {"Authorization": f"Bearer {log_token(server, sid)}"}
    records = {"records": [{"message": "m" * 1000} for _ in range(1050)]}
    r = httpx.post(f"{server.url}/log", json=records, headers=auth, timeout=30)
    assert r.status_code == 202 and r.json() == {"accepted": 1050}
    oversized = b'{"experiment_context": "' + b"a" * JSON_LIMIT + b'"}'
    for path, headers in (("/api/sessions", {}), ("/log", auth)):
        declared = httpx.post(server.url + path, content=oversized, headers=headers, timeout=30)
        assert is_problem(declared, 413), (path, declared.status_code)
        streamed = httpx.post(
            server.url + path, content=chunked(oversized), headers=headers, timeout=30
        )
        assert is_problem(streamed, 413), (path, "chunked", streamed.status_code)
    assert httpx.get(server.url + "/healthz").json()["status"] == "ok"


# -- a flood of log lines --------------------------------------------------------------------


async def flood_and_probe(
    server: LiveServer, seconds: float, lines_per_s: int
) -> tuple[list[float], int]:
    """Post ``lines_per_s`` log lines a second for ``seconds``; probe /healthz meanwhile."""
    sid = create_session(server.url)
    auth = {"Authorization": f"Bearer {log_token(server, sid)}"}
    batch = 100
    posts_per_s = lines_per_s // batch
    latencies: list[float] = []
    sent = 0
    stop = asyncio.Event()

    async def probe() -> None:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            while not stop.is_set():
                started = time.perf_counter()
                r = await client.get("/healthz")
                latencies.append(time.perf_counter() - started)
                assert r.status_code == 200
                await asyncio.sleep(0.02)

    async def flood() -> None:
        nonlocal sent
        limits = httpx.Limits(max_connections=8)
        async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits) as client:
            started = time.monotonic()
            tick = 0
            while time.monotonic() - started < seconds:
                records = [{"message": f"line {tick}-{i}"} for i in range(batch)]
                posts = [
                    client.post("/log", json={"records": records}, headers=auth)
                    for _ in range(posts_per_s // 10)
                ]
                for r in await asyncio.gather(*posts):
                    assert r.status_code == 202, r.text
                    sent += batch
                tick += 1
                # pace to 10 rounds a second; a slow round is not made up for
                await asyncio.sleep(max(0.0, started + tick / 10 - time.monotonic()))
        stop.set()

    await asyncio.gather(probe(), flood())
    return latencies, sent


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) >= 2 else values[0]


@pytest.mark.anyio
async def test_a_log_flood_keeps_healthz_responsive(shared_server) -> None:
    latencies, sent = await flood_and_probe(shared_server, seconds=3.0, lines_per_s=10_000)
    figure = p99(latencies)
    print(
        f"log flood: {sent} lines in 3 s; /healthz p99 {figure * 1000:.1f} ms over "
        f"{len(latencies)} probes (max {max(latencies) * 1000:.1f} ms)"
    )
    assert sent >= 15_000, "the flood really flooded (10,000 lines/s is 30,000)"
    assert len(latencies) >= 20
    assert figure < 1.0  # the 100 ms target is asserted by the soak (tests/soak)


# -- connection churn --------------------------------------------------------------------------


def server_fds(server: LiveServer) -> int:
    assert server.proc is not None
    return psutil.Process(server.proc.pid).num_fds()


def followed(server: LiveServer) -> int:
    return int(httpx.get(server.url + "/healthz", timeout=10).json()["sessions_followed"])


async def churn(server: LiveServer, sid: str, count: int, concurrency: int = 40) -> None:
    """Open ``count`` WebSocket and ``count`` SSE connections and drop each one."""
    gate = asyncio.Semaphore(concurrency)

    async def ws_once(i: int) -> None:
        async with gate:
            ws = await websockets.connect(f"{server.ws_url}/api/sessions/{sid}/ws?since=0")
            await asyncio.wait_for(ws.recv(), 10)
            if i % 2:
                ws.transport.abort()  # dropped without a close handshake
            else:
                await ws.close()

    async def sse_once(client: httpx.AsyncClient) -> None:
        async with gate, client.stream("GET", f"/api/sessions/{sid}/events?since=0") as r:
            assert r.status_code == 200
            async for _chunk in r.aiter_raw():
                break  # got the replay; drop the connection

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=server.url, timeout=20, limits=limits) as client:
        await asyncio.gather(
            *(ws_once(i) for i in range(count)), *(sse_once(client) for _ in range(count))
        )


def server_tasks(server: LiveServer) -> int:
    return int(httpx.get(server.url + "/healthz", timeout=10).json()["tasks"])


def churn_leaves_nothing_behind(server: LiveServer, count: int) -> tuple[int, int, int]:
    sid = create_session(server.url)
    # warm-up: the first SSE response starts sse-starlette's one shutdown-watcher task
    asyncio.run(churn(server, sid, 1))
    fds_before, subs_before = server_fds(server), followed(server)
    tasks_before = server_tasks(server)
    asyncio.run(churn(server, sid, count))

    def settled() -> bool:
        return (
            followed(server) <= subs_before
            and server_fds(server) <= fds_before + 5
            and server_tasks(server) <= tasks_before
        )

    wait_until(settled, SETTLE_S, "subscribers, tasks and descriptors to be released")
    return (
        server_fds(server) - fds_before,
        followed(server) - subs_before,
        server_tasks(server) - tasks_before,
    )


def test_opening_and_dropping_1000_ws_and_sse_connections_leaks_nothing(tmp_path: Path) -> None:
    live = LiveServer(tmp_path / "data").start()
    try:
        started = time.monotonic()
        fd_delta, sub_delta, task_delta = churn_leaves_nothing_behind(live, 1000)
        print(
            f"churn: 2000 connections in {time.monotonic() - started:.1f} s; "
            f"fd delta {fd_delta}, subscriber delta {sub_delta}, task delta {task_delta}"
        )
        assert sub_delta <= 0 and fd_delta <= 5 and task_delta <= 0
        assert httpx.get(live.url + "/healthz").json()["status"] == "ok"
    finally:
        live.stop()


# -- descriptors of uploads ------------------------------------------------------------------


def test_uploads_leave_no_descriptor_open(server: LiveServer) -> None:
    """Every file an upload opened is closed (tus PATCHes, refused ones, legacy parts)."""
    payload = os.urandom(3 * MIB + 5)
    warm = create_session(server.url)
    tus_upload(server.url, warm, "warm.bin", b"w" * 10)
    fds_before = server_fds(server)
    sid = create_session(server.url)
    assert tus_upload(server.url, sid, "deep/big.bin", payload, chunk=MIB)
    url = server.url + tus_create(server.url, sid, "short.bin", 10).headers["Location"]
    refused = httpx.patch(
        url,
        content=b"x" * MIB,
        headers={
            "Tus-Resumable": "1.0.0",
            "Upload-Offset": "0",
            "Content-Type": "application/offset+octet-stream",
        },
    )
    assert refused.status_code == 413  # Content-Length past Upload-Length: refused up front

    def past_the_length() -> Iterator[bytes]:  # chunked: found out only while streaming
        yield b"y" * MIB

    streamed = httpx.patch(
        url,
        content=past_the_length(),
        headers={
            "Tus-Resumable": "1.0.0",
            "Upload-Offset": "0",
            "Content-Type": "application/offset+octet-stream",
        },
    )
    assert streamed.status_code == 413 and "Content-Length" not in streamed.request.headers
    files = [("files", (f"legacy/{i}.bin", payload, "application/octet-stream")) for i in range(2)]
    r = httpx.post(
        server.url + "/upload", files=files, data={"experiment_context": "fd check"}, timeout=60
    )
    assert r.status_code == 202, r.text
    legacy = r.json()["session_id"]
    stored_files = [(sid, "deep/big.bin"), (legacy, "legacy/0.bin"), (legacy, "legacy/1.bin")]
    for session, name in stored_files:
        wait_stored(server.url, session)  # published in the background
        stored = server.data_dir / "volumes" / f"dataset-volume-{session}" / "data" / name
        assert stored.read_bytes() == payload
    wait_until(
        lambda: server_fds(server) <= fds_before,
        SETTLE_S,
        f"the server's descriptors to come back to {fds_before}",
    )

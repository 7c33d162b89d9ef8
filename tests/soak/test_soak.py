"""Soak: minutes of mixed traffic against one real server (``make soak``).

Sessions upload over tus and run the chatty agent (which logs over HTTP), viewers come and
go over WebSocket and SSE. Afterwards: server RSS grew less than 10 % after warm-up, no
unexpected error answer, every completed upload byte-exact. SOAK_SECONDS sets the length
(default 600). A full-length log flood (10,000 lines/s for 10 s) keeps /healthz p99 under
100 ms.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest
import websockets

from tests.feeds import TUS, metadata, read_sse
from tests.servers import LiveServer
from tests.test_reliability import flood_and_probe, p99

pytestmark = [pytest.mark.slow, pytest.mark.timeout(0)]

SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "600"))
WARM_UP_FRACTION = 0.25
RSS_GROWTH_LIMIT = 0.10
SAMPLE_EVERY_S = 2.0
OCTET = {"Content-Type": "application/offset+octet-stream"}


@dataclass
class Tally:
    sessions: int = 0
    files: int = 0
    bytes: int = 0
    runs: int = 0
    views: int = 0
    errors: list[str] = field(default_factory=list)
    rss: list[tuple[float, int]] = field(default_factory=list)


@pytest.fixture
def soak_server(tmp_path: Path) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path / "data", {"DASHBOARD_AGENT": "tests.agents:chatty"}).start()
    yield live
    live.stop()


async def upload_session(client: httpx.AsyncClient, live: LiveServer, tally: Tally) -> str | None:
    lines = random.randint(50, 400)
    r = await client.post(
        "/api/sessions", json={"experiment_context": {"description": "soak", "lines": lines}}
    )
    if r.status_code != 201:
        tally.errors.append(f"create session: {r.status_code} {r.text[:200]}")
        return None
    sid = r.json()["session_id"]
    tally.sessions += 1
    expected: dict[str, bytes] = {}
    for n in range(random.randint(1, 3)):
        data = os.urandom(random.randint(1, 1_500_000))
        relative = f"batch/{n}/file-{n}.bin"
        headers = {
            **TUS,
            "Upload-Length": str(len(data)),
            "Upload-Metadata": metadata(relativePath=relative),
        }
        r = await client.post(f"/api/sessions/{sid}/files", headers=headers)
        if r.status_code != 201:
            tally.errors.append(f"tus create: {r.status_code} {r.text[:200]}")
            return None
        url = r.headers["Location"]
        offset, chunk = 0, random.choice([64 * 1024, 256 * 1024, 1024 * 1024])
        while offset < len(data):
            r = await client.patch(
                url,
                content=data[offset : offset + chunk],
                headers={**TUS, **OCTET, "Upload-Offset": str(offset)},
            )
            if r.status_code != 204:
                tally.errors.append(f"tus patch: {r.status_code} {r.text[:200]}")
                return None
            offset = int(r.headers["Upload-Offset"])
        expected[relative] = data
        tally.files += 1
        tally.bytes += len(data)
    volume = live.data_dir / "volumes" / f"dataset-volume-{sid}" / "data"
    for relative, data in expected.items():
        stored = (volume / relative).read_bytes()
        if hashlib.sha256(stored).digest() != hashlib.sha256(data).digest():
            tally.errors.append(f"{sid}/{relative} is not byte-exact")
    r = await client.post(f"/api/sessions/{sid}/run")
    if r.status_code != 202:
        tally.errors.append(f"run: {r.status_code} {r.text[:200]}")
        return None
    return sid


async def wait_terminal(client: httpx.AsyncClient, sid: str, tally: Tally) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        state = (await client.get(f"/api/sessions/{sid}")).json()["state"]
        if state in ("succeeded", "failed"):
            if state != "succeeded":
                tally.errors.append(f"run of {sid} ended {state}")
            tally.runs += 1
            return
        await asyncio.sleep(0.25)
    tally.errors.append(f"run of {sid} did not finish in 120 s")


async def uploader(live: LiveServer, tally: Tally, until: float, recent: list[str]) -> None:
    async with httpx.AsyncClient(base_url=live.url, timeout=60) as client:
        while time.monotonic() < until:
            sid = await upload_session(client, live, tally)
            if sid is None:
                continue
            recent.append(sid)
            del recent[:-20]
            await wait_terminal(client, sid, tally)


async def viewer(live: LiveServer, tally: Tally, until: float, recent: list[str]) -> None:
    while time.monotonic() < until:
        if not recent:
            await asyncio.sleep(0.1)
            continue
        sid = random.choice(recent)
        stay = random.uniform(0.1, 2.0)
        try:
            if random.random() < 0.5:
                async with websockets.connect(
                    f"{live.ws_url}/api/sessions/{sid}/ws?since=0", max_size=None
                ) as ws:
                    end = time.monotonic() + stay
                    while time.monotonic() < end:
                        await asyncio.wait_for(ws.recv(), max(0.01, end - time.monotonic()))
            else:
                await read_sse(live.url, f"/api/sessions/{sid}/events?since=0", timeout=stay)
        except (TimeoutError, websockets.ConnectionClosedOK):
            pass  # left on its own schedule, or the session ended: both expected
        except Exception as exc:
            tally.errors.append(f"viewer: {type(exc).__name__}: {exc}")
        tally.views += 1


async def sample_rss(live: LiveServer, tally: Tally, until: float) -> None:
    assert live.proc is not None
    proc = psutil.Process(live.proc.pid)
    started = time.monotonic()
    while time.monotonic() < until:
        tally.rss.append((time.monotonic() - started, proc.memory_info().rss))
        await asyncio.sleep(SAMPLE_EVERY_S)


def test_mixed_traffic_soak(soak_server: LiveServer) -> None:
    tally = Tally()
    recent: list[str] = []

    async def main() -> None:
        until = time.monotonic() + SOAK_SECONDS
        await asyncio.gather(
            sample_rss(soak_server, tally, until),
            *(uploader(soak_server, tally, until, recent) for _ in range(2)),
            *(viewer(soak_server, tally, until, recent) for _ in range(4)),
        )

    asyncio.run(main())
    warm = [rss for t, rss in tally.rss if t >= SOAK_SECONDS * WARM_UP_FRACTION]
    baseline = statistics.median(warm[:5])
    final = statistics.median(warm[-5:])
    growth = (final - baseline) / baseline
    print(
        f"soak {SOAK_SECONDS:.0f} s: {tally.sessions} sessions, {tally.files} files "
        f"({tally.bytes / 1e6:.1f} MB), {tally.runs} runs, {tally.views} views; RSS after "
        f"warm-up {baseline / 1e6:.1f} MB -> {final / 1e6:.1f} MB ({growth:+.1%}); "
        f"peak {max(r for _, r in tally.rss) / 1e6:.1f} MB; errors {len(tally.errors)}"
    )
    assert tally.errors == []
    assert tally.runs >= 2 and tally.views >= 10, "the soak really ran traffic"
    assert growth < RSS_GROWTH_LIMIT, f"RSS grew {growth:.1%} after warm-up"


def test_full_log_flood_keeps_healthz_p99_under_100_ms(soak_server: LiveServer) -> None:
    latencies, sent = asyncio.run(flood_and_probe(soak_server, seconds=10.0, lines_per_s=10_000))
    figure = p99(latencies)
    print(f"log flood 10 s: {sent} lines; /healthz p99 {figure * 1000:.1f} ms")
    assert sent >= 90_000
    assert figure < 0.100

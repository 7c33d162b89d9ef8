"""Benchmark: 1,000 idle WebSocket followers of one session in one server process.

    .venv/bin/python bench/scale.py [--clients 1000] [--broadcasts 5] [--runs 3]

Per round, one dashboard (``python -m dashboard serve``, uvicorn[standard]) and
``--clients`` WebSocket followers of one session in 2 load-generator processes
(bench/loadgen.py). The open-file limit is raised with ``resource.setrlimit`` first (the
server and the clients inherit it). Once every client is subscribed, the server's RSS is
read (idle), then ``--broadcasts`` single-line POSTs go out 0.5 s apart and the latency
from each POST to each client's receipt is recorded; peak RSS is sampled throughout.

Targets: server RSS <= 250 MiB with every client connected; broadcast p99 <= 250 ms.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (
    MIB,
    RssSampler,
    Targets,
    create_session,
    dashboard,
    log_token,
    median,
    percentile,
    table,
)
from loadgen import HELLO, ClientFleet, latencies


def raise_nofile(want: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--broadcasts", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    limit = raise_nofile(args.clients * 2 + 1024)
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    rounds = []
    try:
        for round_no in range(args.runs):
            data_dir = work / f"dash-{round_no}"
            with dashboard(data_dir, work) as dash, RssSampler(dash, 0.05) as rss:
                sid = create_session(dash, "Scale benchmark.")
                token = log_token(data_dir, sid)
                fleet = ClientFleet(
                    "127.0.0.1",
                    dash.port,
                    ws_path=f"/api/sessions/{sid}/ws",
                    sse_path="",
                    n_ws=args.clients,
                    n_sse=0,
                    expected=args.broadcasts,
                    processes=2,
                    timeout=120,
                )
                post_times: list[float] = []
                with httpx.Client(
                    base_url=dash.url, timeout=30, headers={"Authorization": f"Bearer {token}"}
                ) as poster:
                    fleet.wait_ready(
                        lambda: poster.post("/log", json={"records": [{"message": HELLO}]}),
                        timeout=180,
                    )
                    time.sleep(1.0)
                    followed = httpx.get(f"{dash.url}/healthz", timeout=5).json()
                    idle_rss = dash.rss()
                    for i in range(args.broadcasts):
                        post_times.append(time.monotonic())
                        r = poster.post("/log", json={"records": [{"message": str(i)}]})
                        assert r.status_code == 202, r.text
                        time.sleep(0.5)
                results = fleet.results(timeout=180)
            lat: list[float] = []
            failures = 0
            for _kind, received, error, marks in results:
                failures += bool(error) or received != args.broadcasts
                lat.extend(latencies(marks, post_times, 1)[0])
            rounds.append(
                {
                    "followed": followed["sessions_followed"],
                    "idle_rss": idle_rss / MIB,
                    "peak_rss": rss.peak / MIB,
                    "p50": percentile(lat, 50) * 1e3,
                    "p99": percentile(lat, 99) * 1e3,
                    "failures": failures,
                }
            )
            print(f"round {round_no + 1}/{args.runs}: {rounds[-1]}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    med = {k: median([r[k] for r in rounds]) for k in rounds[0]}
    failures = sum(r["failures"] for r in rounds)
    print()
    print(
        table(
            [
                "clients",
                "subscribed",
                "idle RSS MiB",
                "peak RSS MiB",
                "p50 ms",
                "p99 ms",
                "failed clients",
                "nofile limit",
            ],
            [
                (
                    args.clients,
                    med["followed"],
                    med["idle_rss"],
                    med["peak_rss"],
                    med["p50"],
                    med["p99"],
                    failures,
                    limit,
                )
            ],
        )
    )
    targets = Targets()
    targets.check("every client got every broadcast", f"{failures} failures", failures == 0)
    targets.check(
        "server RSS <= 250 MiB", f"peak {med['peak_rss']:.0f} MiB", med["peak_rss"] <= 250
    )
    targets.check("broadcast p99 <= 250 ms", f"{med['p99']:.0f} ms", med["p99"] <= 250)
    summary = (
        f"scale {args.clients} idle WS x{args.runs}: RSS idle {med['idle_rss']:.0f} MiB, peak "
        f"{med['peak_rss']:.0f} MiB; broadcast p50 {med['p50']:.0f} ms, p99 {med['p99']:.0f} ms"
    )
    return targets.finish(summary, {"bench": "scale", "median": med})


if __name__ == "__main__":
    sys.exit(main())

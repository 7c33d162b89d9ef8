"""Benchmark: log fan-out to 100 WebSocket + 100 SSE clients against a naive hub and Flask.

    .venv/bin/python bench/fanout.py [--lines 5000] [--batch 50] [--ws 100] [--sse 100]
                                     [--runs 3] [--procs 2]

Per round, four servers in turn, each a child process on a free 127.0.0.1 port:

* ``dashboard``: ``python -m dashboard serve`` (uvicorn[standard]), session routes
  ``/api/sessions/{sid}/ws`` and ``/events``, lines posted to ``/log`` with the session's
  log token (read from ``<data_dir>/sessions/<sid>.json``);
* ``naive``: bench/naive_hub.py on the same stack (per-client JSON encoding, one send per
  line per client, awaited in a loop; sse-starlette one event per line);
* ``dashboard`` and ``flask`` with 100 SSE clients only: bench/flask_original.py under
  gunicorn's gthread worker.

The poster sends ``--lines`` lines in POSTs of ``--batch`` records, back to back on one
keep-alive connection, after every client is connected. Clients (bench/loadgen.py, in
``--procs`` processes) check that every line arrives once and in order. Figures: server
CPU (psutil user+system of the server process tree) per delivered line, deliveries per
second (lines x clients / first POST to last receipt), p50/p99 POST -> receipt latency.
Ratios are taken within a round; the median round is reported.

Targets: CPU/line <= 2 us and <= 1/7 of naive; deliveries/s >= 5x naive; WS p99 <= 60 ms;
SSE p99 <= 250 ms; SSE-only deliveries/s >= 3x Flask with a lower SSE p99.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (
    PY,
    Server,
    Targets,
    create_session,
    dashboard,
    free_port,
    log_token,
    median,
    percentile,
    table,
    uvicorn_app,
)
from loadgen import HELLO, ClientFleet, latencies


def flask_server(log_dir: Path, threads: int) -> Server:
    port = free_port()
    argv = [
        PY,
        "-m",
        "gunicorn",
        "-k",
        "gthread",
        "-w",
        "1",
        "--threads",
        str(threads),
        "-b",
        f"127.0.0.1:{port}",
        "--log-level",
        "warning",
        "flask_original:app",
    ]
    return Server("flask", argv, port, log_dir)


def open_session(server: Server, data_dir: Path | None) -> tuple[str, str]:
    """A session id and its log token."""
    if data_dir is None:
        sid = "0" * 32
        token = httpx.post(f"{server.url}/bench/token/{sid}", timeout=10).json()["log_token"]
        return sid, token
    sid = create_session(server, "Fan-out benchmark.")
    return sid, log_token(data_dir, sid)


def measure(
    server: Server, data_dir: Path | None, args: argparse.Namespace, n_ws: int, n_sse: int
) -> dict[str, Any]:
    sid, token = open_session(server, data_dir)
    fleet = ClientFleet(
        "127.0.0.1",
        server.port,
        ws_path=f"/api/sessions/{sid}/ws",
        sse_path=f"/api/sessions/{sid}/events",
        n_ws=n_ws,
        n_sse=n_sse,
        expected=args.lines,
        processes=args.procs,
        timeout=args.timeout,
    )
    with httpx.Client(
        base_url=server.url, timeout=60, headers={"Authorization": f"Bearer {token}"}
    ) as poster:
        fleet.wait_ready(lambda: poster.post("/log", json={"records": [{"message": HELLO}]}))
        time.sleep(0.3)  # let the last hellos drain
        post_times: list[float] = []
        post_lat: list[float] = []
        cpu0 = server.cpu_seconds()
        for start in range(0, args.lines, args.batch):
            records = [
                {"message": str(i)} for i in range(start, min(start + args.batch, args.lines))
            ]
            t = time.monotonic()
            post_times.append(t)
            resp = poster.post("/log", json={"records": records})
            post_lat.append(time.monotonic() - t)
            assert resp.status_code == 202, resp.text
    results = fleet.results(timeout=args.timeout + 60)
    cpu = server.cpu_seconds() - cpu0
    lat: dict[str, list[float]] = {"ws": [], "sse": []}
    last = 0.0
    errors = []
    delivered = 0
    for kind, received, error, marks in results:
        delivered += received
        if error or received != args.lines:
            errors.append(error or f"{received}/{args.lines}")
        values, end = latencies(marks, post_times, args.batch)
        lat[kind].extend(values)
        last = max(last, end)
    duration = last - post_times[0]
    return {
        "clients": len(results),
        "delivered": delivered,
        "errors": errors,
        "rate": delivered / duration if duration > 0 else 0.0,
        "cpu_us": cpu / delivered * 1e6 if delivered else float("inf"),
        "ws_p50": percentile(lat["ws"], 50) * 1e3,
        "ws_p99": percentile(lat["ws"], 99) * 1e3,
        "sse_p50": percentile(lat["sse"], 50) * 1e3,
        "sse_p99": percentile(lat["sse"], 99) * 1e3,
        "post_p99": percentile(post_lat, 99) * 1e3,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--ws", type=int, default=100)
    parser.add_argument("--sse", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--procs", type=int, default=2, help="load-generator processes")
    parser.add_argument("--timeout", type=float, default=180.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-fanout-"))
    rounds: list[dict[str, dict[str, Any]]] = []
    try:
        for round_no in range(args.runs):
            got: dict[str, dict[str, Any]] = {}
            data_dir = work / f"dash-{round_no}"
            with dashboard(data_dir, work) as dash:
                got["dashboard ws+sse"] = measure(dash, data_dir, args, args.ws, args.sse)
                got["dashboard sse"] = measure(dash, data_dir, args, 0, args.sse)
            with uvicorn_app("naive", "naive_hub:create_app", work) as naive:
                got["naive ws+sse"] = measure(naive, None, args, args.ws, args.sse)
            with flask_server(work, threads=args.sse + 16) as flask:
                got["flask sse"] = measure(flask, None, args, 0, args.sse)
            rounds.append(got)
            print(
                f"round {round_no + 1}/{args.runs}: "
                + ", ".join(
                    f"{k} {v['rate'] / 1e3:.0f}k/s {v['cpu_us']:.2f}us" for k, v in got.items()
                ),
                flush=True,
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)

    names = list(rounds[0])
    med = {
        n: {
            k: median([r[n][k] for r in rounds])
            for k in ("rate", "cpu_us", "ws_p50", "ws_p99", "sse_p50", "sse_p99", "post_p99")
        }
        for n in names
    }
    errors = {n: sum(len(r[n]["errors"]) for r in rounds) for n in names}
    for n in names:
        first = next((e for r in rounds for e in r[n]["errors"]), None)
        if first:
            print(f"{n}: first client failure: {first}")
    print()
    print(
        table(
            [
                "server / clients",
                "deliveries/s",
                "CPU us/line",
                "WS p50 ms",
                "WS p99 ms",
                "SSE p50 ms",
                "SSE p99 ms",
                "POST p99 ms",
                "clients failed",
            ],
            [
                (
                    n,
                    m["rate"],
                    m["cpu_us"],
                    m["ws_p50"],
                    m["ws_p99"],
                    m["sse_p50"],
                    m["sse_p99"],
                    m["post_p99"],
                    errors[n],
                )
                for n, m in med.items()
            ],
        )
    )

    def ratio(a: str, b: str, key: str) -> float:
        return median([r[a][key] / r[b][key] for r in rounds])

    speed_naive = ratio("dashboard ws+sse", "naive ws+sse", "rate")
    cpu_naive = ratio("naive ws+sse", "dashboard ws+sse", "cpu_us")
    speed_flask = ratio("dashboard sse", "flask sse", "rate")
    d, f = med["dashboard ws+sse"], med["flask sse"]
    targets = Targets()
    targets.check(
        "every client got every line once, in order",
        "all" if not any(errors.values()) else f"failures {errors}",
        not any(errors.values()),
    )
    targets.check("CPU per delivered line <= 2 us", f"{d['cpu_us']:.2f} us", d["cpu_us"] <= 2)
    targets.check("CPU per line <= 1/7 naive", f"1/{cpu_naive:.1f}", cpu_naive >= 7)
    targets.check("deliveries/s >= 5x naive", f"{speed_naive:.1f}x", speed_naive >= 5)
    targets.check("WS p99 <= 60 ms", f"{d['ws_p99']:.0f} ms", d["ws_p99"] <= 60)
    targets.check("SSE p99 <= 250 ms", f"{d['sse_p99']:.0f} ms", d["sse_p99"] <= 250)
    targets.check("SSE-only deliveries/s >= 3x Flask", f"{speed_flask:.1f}x", speed_flask >= 3)
    ds = med["dashboard sse"]
    targets.check(
        "SSE-only p99 lower than Flask",
        f"{ds['sse_p99']:.0f} vs {f['sse_p99']:.0f} ms",
        ds["sse_p99"] < f["sse_p99"],
    )
    summary = (
        f"fanout {args.lines} lines x ({args.ws} WS + {args.sse} SSE), {args.runs} rounds: "
        f"{d['rate'] / 1e3:.0f}k deliveries/s = {speed_naive:.1f}x naive, "
        f"{d['cpu_us']:.2f} us/line "
        f"= 1/{cpu_naive:.1f} naive, WS p99 {d['ws_p99']:.0f} ms, SSE p99 {d['sse_p99']:.0f} ms; "
        f"SSE-only {ds['rate'] / 1e3:.0f}k/s = {speed_flask:.1f}x Flask, p99 {ds['sse_p99']:.0f} "
        f"vs {f['sse_p99']:.0f} ms"
    )
    return targets.finish(summary, {"bench": "fanout", "median": med})


if __name__ == "__main__":
    sys.exit(main())

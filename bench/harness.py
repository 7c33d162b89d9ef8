"""What every benchmark script shares: servers on free loopback ports, sampling, tables.

Servers are child processes (the dashboard through ``python -m dashboard serve``, the
references through uvicorn or gunicorn) so their CPU time and RSS are read from their
own pids with psutil. Only 127.0.0.1 is ever used.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
PY = sys.executable
START_TIMEOUT_S = 30.0
MIB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASHBOARD_")}
    env.update({"PYTHONPATH": f"{ROOT}{os.pathsep}{BENCH}", "PYTHONUNBUFFERED": "1"})
    env.update(extra or {})
    return env


class Server:
    """A server child process on a free loopback port, ready once ``health`` answers 200."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        port: int,
        log_dir: Path,
        *,
        env: Mapping[str, str] | None = None,
        health: str = "/healthz",
    ) -> None:
        self.name = name
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.ws_url = f"ws://127.0.0.1:{port}"
        self.log_path = log_dir / f"{name}-{port}.log"
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            list(argv), cwd=ROOT, env=child_env(env), stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        self.ps = psutil.Process(self.proc.pid)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name} exited early:\n{self.log()}")
            try:
                if httpx.get(self.url + health, timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{name} did not start in {START_TIMEOUT_S} s:\n{self.log()}")
            time.sleep(0.05)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def _procs(self) -> list[psutil.Process]:
        try:
            return [self.ps, *self.ps.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpu_seconds(self) -> float:
        """User + system CPU of the server and its children (gunicorn's worker)."""
        total = 0.0
        for proc in self._procs():
            try:
                times = proc.cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                pass
        return total

    def rss(self) -> int:
        total = 0
        for proc in self._procs():
            try:
                total += proc.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total

    def stop(self) -> None:
        """Stop the server and every child (gunicorn's worker would outlive a killed master)."""
        children = self._procs()[1:]
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        for child in children:
            try:
                child.kill()
            except psutil.NoSuchProcess:
                pass

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def dashboard(
    data_dir: Path,
    log_dir: Path,
    env: Mapping[str, str] | None = None,
    *,
    patch: str = "",
    name: str = "dashboard",
) -> Server:
    """The project itself, exactly as ``make run`` starts it (uvicorn[standard]).

    ``patch`` is Python run in the server process first: for diagnostic variants only.
    """
    port = free_port()
    args = ["serve", "--port", str(port), "--data-dir", str(data_dir), "--log-level", "warning"]
    if patch:
        code = f"{patch}\nimport sys\nfrom dashboard.cli import main\nsys.exit(main({args!r}))"
        return Server(name, [PY, "-c", code], port, log_dir, env=env)
    return Server(name, [PY, "-m", "dashboard", *args], port, log_dir, env=env)


def create_session(server: Server, context: str) -> str:
    """A new dashboard session's id."""
    resp = httpx.post(
        f"{server.url}/api/sessions", json={"experiment_context": context}, timeout=10
    )
    resp.raise_for_status()
    return str(resp.json()["session_id"])


def log_token(data_dir: Path, session_id: str) -> str:
    """A session's log token, read from its record (no response ever carries it)."""
    record = json.loads((data_dir / "sessions" / f"{session_id}.json").read_text())
    return str(record["log_token"])


def uvicorn_app(name: str, app: str, log_dir: Path, env: Mapping[str, str] | None = None) -> Server:
    """A reference ASGI app on the dashboard's stack: uvicorn with httptools + uvloop."""
    port = free_port()
    argv = [
        PY,
        "-m",
        "uvicorn",
        app,
        "--factory",
        "--port",
        str(port),
        "--host",
        "127.0.0.1",
        "--http",
        "httptools",
        "--loop",
        "uvloop",
        "--log-level",
        "warning",
    ]
    return Server(name, argv, port, log_dir, env=env)


class RssSampler:
    """Peak RSS of a server, sampled every ``interval`` s on a thread while in the block."""

    def __init__(self, server: Server, interval: float = 0.01) -> None:
        self.server = server
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.server.rss())
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self.peak = self.server.rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.server.rss())


def percentile(values: Sequence[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = [
        "  ".join(
            c.rjust(w) if j else c.ljust(w) for j, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != value:
            return "-"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    return str(value)


class Targets:
    """Named pass/fail checks; ``finish`` prints them and the summary line, returns the exit
    code."""

    def __init__(self) -> None:
        self.checks: list[tuple[str, str, bool]] = []

    def check(self, name: str, measured: str, ok: bool) -> None:
        self.checks.append((name, measured, ok))

    def finish(self, summary: str, extra: Mapping[str, Any] | None = None) -> int:
        print()
        print(
            table(
                ["target", "measured", "met"],
                [(n, m, "yes" if ok else "NO") for n, m, ok in self.checks],
            )
        )
        failed = [n for n, _, ok in self.checks if not ok]
        if extra and os.environ.get("BENCH_JSON"):
            with open(os.environ["BENCH_JSON"], "a") as out:
                out.write(json.dumps(dict(extra)) + "\n")
        verdict = "ALL TARGETS MET" if not failed else f"MISSED: {', '.join(failed)}"
        print(f"{summary} | {verdict}", flush=True)
        return 1 if failed else 0

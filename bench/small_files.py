"""Benchmark: a folder of many small files, uploaded by the CLI and by the page.

    .venv/bin/python bench/small_files.py [--files 1000] [--size 8192] [--runs 3]

1,000 files of 8 KiB in a nested folder (10 x 10 folders of 10 files) go to one dashboard
(``python -m dashboard serve`` on 127.0.0.1, agent tests.agents:chatty with no lines, so
the run after each upload costs little), each round into a new session:

* (a) ``cli``: ``python -m dashboard upload`` (default ``--parallel``) straight to the server;
* (b) ``cli+proxy``: the same through a delay proxy written here (asyncio TCP, loopback
  only) that holds every byte 25 ms in each direction, i.e. a 50 ms round trip;
* (c) ``page``: the dashboard page in headless Chromium (/usr/bin/chromium) choosing the
  folder, with 50 ms of latency per request emulated by the DevTools protocol
  (``Network.emulateNetworkConditions``).

The time is the upload phase as the client reports it (the CLI's "uploaded ... in X s"
line; the page's ``data-upload-ms``, from the first creation to the last reply), so
process start-up and the run are outside it. The floor is ``files x round trip / files in
flight``: what the round trips alone cost with the client's lanes, had the server no cost.
Every round checks that every file is stored byte-exact. Medians of ``--runs`` rounds.

Targets: (a) >= 300 files/s; (b) and (c) within 1.5x of their floor.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import deque
from pathlib import Path
from typing import Any

import httpx
import psutil
from harness import PY, ROOT, Targets, child_env, dashboard, free_port, median, table

CONTEXT = '{"description": "many small files", "lines": 0}'
AGENT = "tests.agents:chatty"
CHROMIUM = Path("/usr/bin/chromium")
PROXY_DELAY_S = 0.025  # each way
PAGE_LATENCY_MS = 50.0
UPLOADED = re.compile(r"in ([0-9.]+) s \(([0-9.]+) files/s, (\d+) requests, (\d+) in flight\)")


# -- the dataset ---------------------------------------------------------------------------


def make_dataset(root: Path, files: int, size: int) -> dict[str, str]:
    """``files`` files of ``size`` bytes under root/dataset/aN/bM/, each different."""
    digests: dict[str, str] = {}
    for i in range(files):
        relative = f"dataset/a{i // 100:02d}/b{(i // 10) % 10}/sample-{i:05d}.bin"
        seed = hashlib.sha256(str(i).encode()).digest()
        content = (seed * (size // len(seed) + 1))[:size]
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        digests[relative] = hashlib.sha256(content).hexdigest()
    return digests


def verify(data_dir: Path, session_id: str, digests: dict[str, str]) -> bool:
    volume = data_dir / "volumes" / f"dataset-volume-{session_id}" / "data"
    for relative, digest in digests.items():
        try:
            stored = (volume / relative).read_bytes()
        except OSError:
            return False
        if hashlib.sha256(stored).hexdigest() != digest:
            return False
    return True


# -- the delay proxy -----------------------------------------------------------------------


class DelayProxy:
    """A TCP proxy on 127.0.0.1 that delivers every byte ``delay`` seconds after it arrived,
    in order, in each direction (latency, not a bandwidth limit). Runs its own event loop in
    a thread."""

    def __init__(self, target_port: int, delay: float) -> None:
        self.target_port = target_port
        self.delay = delay
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.server: asyncio.Server | None = None
        self.connections = 0

    def __enter__(self) -> DelayProxy:
        self.thread.start()
        if not self.ready.wait(10):
            raise RuntimeError("the delay proxy did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", self.port)
        )
        self.ready.set()
        self.loop.run_forever()
        self.server.close()
        for task in asyncio.all_tasks(self.loop):
            task.cancel()
        with contextlib.suppress(Exception):
            self.loop.run_until_complete(asyncio.sleep(0))
        self.loop.close()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(
            self._pipe(client_r, server_w), self._pipe(server_r, client_w), return_exceptions=True
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: deque[tuple[float, bytes]] = deque()
        arrived = asyncio.Event()
        loop = asyncio.get_running_loop()

        async def deliver() -> None:
            while True:
                while not queue:
                    arrived.clear()
                    await arrived.wait()
                due, data = queue.popleft()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:  # end of stream, delayed like the bytes before it
                    with contextlib.suppress(OSError):
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()

        sender = asyncio.ensure_future(deliver())
        try:
            while True:
                data = await reader.read(256 * 1024)
                queue.append((loop.time() + self.delay, data))
                arrived.set()
                if not data:
                    break
            await sender
        except (ConnectionError, OSError):
            sender.cancel()
        finally:
            with contextlib.suppress(Exception):
                writer.close()


# -- the clients ---------------------------------------------------------------------------


def cli_upload(url: str, folder: Path, state: Path) -> dict[str, Any]:
    """One CLI upload; the figures from its 'uploaded ... in X s' line and the session id."""
    env = child_env({"DASHBOARD_CLIENT_STATE": str(state)})
    result = subprocess.run(
        [PY, "-m", "dashboard", "upload", str(folder), "--context", CONTEXT, "--url", url,
         "--no-follow", "--new-session"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    if result.returncode != 0:
        raise RuntimeError(f"the CLI failed ({result.returncode}):\n{result.stderr[-3000:]}")
    match = UPLOADED.search(result.stdout)
    session = re.search(r"^session ([0-9a-f]{32})", result.stdout, re.MULTILINE)
    if not match or not session:
        raise RuntimeError(f"unexpected CLI output:\n{result.stdout[-3000:]}")
    return {
        "seconds": float(match.group(1)),
        "requests": int(match.group(3)),
        "lanes": int(match.group(4)),
        "session": session.group(1),
    }


class PageClient:
    """The dashboard page in headless Chromium with emulated latency on every request."""

    def __init__(self, latency_ms: float) -> None:
        from playwright.sync_api import sync_playwright

        self.latency_ms = latency_ms
        self.playwright = sync_playwright().start()
        self.browser = self.playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update"],
        )

    def close(self) -> None:
        self.browser.close()
        self.playwright.stop()

    def upload(self, url: str, folder: Path, expected_files: int) -> dict[str, Any]:
        context = self.browser.new_context()
        try:
            page = context.new_page()
            cdp = context.new_cdp_session(page)
            cdp.send("Network.enable")
            cdp.send("Network.emulateNetworkConditions", {
                "offline": False, "latency": self.latency_ms,
                "downloadThroughput": -1, "uploadThroughput": -1,
            })
            page.goto(url + "/")
            page.wait_for_selector("[data-dashboard][data-ready=true]", timeout=30_000)
            page.locator("[data-folder-input]").set_input_files(str(folder))
            page.wait_for_function(
                f"() => document.querySelector('[data-selection-summary]')?.textContent"
                f".startsWith('{expected_files} files')",
                timeout=60_000,
            )
            page.get_by_label("2. Describe the experiment").fill(CONTEXT)
            with page.expect_response("**/api/sessions", timeout=60_000) as created:
                page.get_by_role("button", name="Upload").click()
            session = created.value.json()["session_id"]
            page.wait_for_function(
                "() => document.querySelector('[data-dashboard]').dataset.uploadMs",
                timeout=600_000,
            )
            root = page.locator("[data-dashboard]")
            seconds = float(root.get_attribute("data-upload-ms") or "nan") / 1000
            requests = int(root.get_attribute("data-upload-requests") or 0)
            lanes = int(root.get_attribute("data-upload-lanes") or 0)
            return {"seconds": seconds, "requests": requests, "lanes": lanes, "session": session}
        finally:
            context.close()


# -- the run -------------------------------------------------------------------------------


def machine_state() -> str:
    load = os.getloadavg()
    busy = psutil.cpu_percent(interval=1.0)
    return (
        f"{psutil.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, "
        f"CPU {busy:.0f} % busy in the second before the run, "
        f"{psutil.virtual_memory().available / 2**30:.1f} GiB free"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-page", action="store_true", help="no Chromium case")
    args = parser.parse_args()

    print(f"machine: {machine_state()}")
    work = Path(tempfile.mkdtemp(prefix="bench-small-"))
    rows: list[list[Any]] = []
    results: dict[str, dict[str, float]] = {}
    all_exact = True
    try:
        source = work / "source"
        digests = make_dataset(source, args.files, args.size)
        folder = source / "dataset"
        data_dir = work / "data"
        server = dashboard(data_dir, work, {"DASHBOARD_AGENT": AGENT})
        page = None if args.skip_page or not CHROMIUM.exists() else PageClient(PAGE_LATENCY_MS)
        rounds: dict[str, list[dict[str, Any]]] = {"cli": [], "cli+proxy": [], "page": []}
        try:
            with server, DelayProxy(server.port, PROXY_DELAY_S) as proxy:
                proxy_url = f"http://127.0.0.1:{proxy.port}"
                httpx.get(proxy_url + "/healthz", timeout=10).raise_for_status()
                cases: list[tuple[str, float]] = [
                    ("cli", 0.0),
                    ("cli+proxy", 2 * PROXY_DELAY_S),
                ]
                if page is not None:
                    cases.append(("page", PAGE_LATENCY_MS / 1000))
                for run in range(args.runs):
                    for name, rtt in cases:
                        state = work / f"state-{name}-{run}.json"
                        if name == "cli":
                            figures = cli_upload(server.url, folder, state)
                        elif name == "cli+proxy":
                            figures = cli_upload(proxy_url, folder, state)
                        else:
                            assert page is not None
                            figures = page.upload(server.url, folder, args.files)
                        exact = verify(data_dir, figures["session"], digests)
                        all_exact &= exact
                        floor = args.files * rtt / max(figures["lanes"], 1)
                        figures.update(
                            files_s=args.files / figures["seconds"],
                            floor=floor,
                            ratio=figures["seconds"] / floor if floor else float("nan"),
                            exact=exact,
                        )
                        rounds[name].append(figures)
                        print(
                            f"round {run + 1} {name:9s}: {figures['seconds']:.3f} s, "
                            f"{figures['files_s']:.0f} files/s, {figures['requests']} requests, "
                            f"{figures['lanes']} in flight, floor {floor:.2f} s, "
                            f"ratio {figures['ratio']:.2f}, byte-exact {exact}",
                            flush=True,
                        )
        finally:
            if page is not None:
                page.close()
        for name, figures in rounds.items():
            if not figures:
                continue
            med = {k: median([f[k] for f in figures]) for k in ("seconds", "files_s", "ratio")}
            results[name] = {**med, "floor": figures[0]["floor"], "lanes": figures[0]["lanes"],
                             "requests": median([f["requests"] for f in figures])}
            rows.append([name, med["seconds"], med["files_s"], results[name]["requests"],
                         figures[0]["lanes"], figures[0]["floor"], med["ratio"]])
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print()
    print(f"{args.files} files of {args.size} bytes, medians of {args.runs} rounds")
    print(table(["client", "upload s", "files/s", "requests", "in flight", "floor s",
                 "ratio to floor"], rows))
    targets = Targets()
    if "cli" in results:
        fps = results["cli"]["files_s"]
        targets.check("(a) CLI on loopback >= 300 files/s", f"{fps:.0f} files/s", fps >= 300)
    for name, label in (("cli+proxy", "(b) CLI, 25 ms each way"), ("page", "(c) page, 50 ms")):
        if name in results:
            ratio = results[name]["ratio"]
            targets.check(f"{label}: within 1.5x of the floor", f"{ratio:.2f}x", ratio <= 1.5)
    targets.check("every file byte-exact", str(all_exact), all_exact)
    return targets.finish(
        "small_files: " + ", ".join(f"{k} {v['files_s']:.0f} files/s" for k, v in results.items()),
        {"bench": "small_files", **{k: v for k, v in results.items()}},
    )


if __name__ == "__main__":
    sys.exit(main())

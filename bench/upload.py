"""Benchmark: uploads through the dashboard against a raw streaming POST and tuspyserver.

    .venv/bin/python bench/upload.py [--size-mib 200] [--chunk-mib 8] [--runs 3] [--dir DIR]

Servers (each a child process on a free 127.0.0.1 port, all on uvicorn with httptools +
uvloop, i.e. uvicorn[standard]):

* ``dashboard``: ``python -m dashboard serve`` (agent: tests.agents:chatty, so the legacy
  upload's run costs little);
* ``raw``: one streaming POST of the whole file written straight to disk by a minimal
  FastAPI endpoint (bench/ref_upload_apps.py:raw_app) -- the ceiling, reference (a);
* ``tuspyserver``: tuspyserver 4.4.3 mounted in a minimal FastAPI app -- reference (b).

Clients: ``stream`` is a keep-alive client over one socket that streams each request
body with sendfile (bench/rawhttp.py); ``tuspy`` is tusclient 1.1 (reads each chunk into
memory). Every contender runs once per round, ``--runs`` rounds, ratios are taken within
a round and the median round is reported. Every upload's sha256 is verified; dirty pages
are flushed (``os.sync``) between uploads, outside the timings. Server peak RSS is sampled
every 10 ms with psutil, and the server process's CPU seconds (user + system) per upload are
printed beside the rates: on a machine shared with other jobs they vary far less than the
wall-clock rates do.

The dashboard runs in its default durability mode (``DASHBOARD_UPLOAD_SYNC=complete``: a
PATCH is acknowledged once written, the file is flushed once when complete); a second
dashboard in ``chunk`` mode (every PATCH flushed before its acknowledgement) is measured
beside it with the stream client, not a target.

Targets (default mode): tus/stream >= 0.9 x raw/stream; tus >= 1.1 x tuspyserver with each
client; legacy multipart /upload >= 0.85 x raw/stream; dashboard peak RSS <= 80 MiB on the
200 MiB upload; every sha256 matches.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (
    MIB,
    RssSampler,
    Server,
    Targets,
    create_session,
    dashboard,
    median,
    table,
    uvicorn_app,
)
from rawhttp import Connection

TUS = {"Tus-Resumable": "1.0.0"}
AGENT = "tests.agents:chatty"
CHUNK = "tus/stream chunk mode"
# --diag: the same server code with one part of the durability path switched off, to see
# what each costs (never a target)
DIAG_PATCHES = {
    "(diag) tus/stream no writeback hint": (
        "import dashboard.uploads as u\nu._sync_file_range = None"
    ),
    "(diag) tus/stream no final flush": (
        "import dashboard.uploads as u\nu.FileWriter.fsync = lambda self, fd: None"
    ),
}
DISK = "(ref) disk: write + fdatasync"


def server_cpu(server: Server) -> float:
    """CPU seconds (user + system) the server process has used so far."""
    times = server.ps.cpu_times()
    return float(times.user + times.system)


def make_file(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        left = size
        while left:
            block = os.urandom(min(left, 4 * MIB))
            digest.update(block)
            out.write(block)
            left -= len(block)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as src:
        while block := src.read(4 * MIB):
            digest.update(block)
    return digest.hexdigest()


def metadata(**values: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


# -- contenders: each uploads ``src`` and returns where the server stored it -------------


def disk_durable(src: Path, dest: Path) -> None:
    """The disk's own ceiling for a durable store: write the file, then one fdatasync.

    No network and no server: what any upload that acknowledges only durable bytes
    (DESIGN's tus rule) is bound by, on this disk, in this run.
    """
    with open(src, "rb") as f_in:
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            while block := f_in.read(MIB):
                view = memoryview(block)
                while view:
                    view = view[os.write(fd, view) :]
            os.fdatasync(fd)
        finally:
            os.close(fd)


def raw_stream(server: Server, src: Path, size: int, chunk: int, files_dir: Path) -> Path:
    name = uuid.uuid4().hex
    with Connection(server.url) as conn, open(src, "rb") as f:
        resp = conn.request(
            "POST", f"/raw/{name}", {"Content-Type": "application/octet-stream"}, file=f, count=size
        )
        assert resp.status == 201, resp.body
    return files_dir / name


def tus_stream_to(create_path: str, headers: dict[str, str]) -> Callable[..., str]:
    """Creation, then PATCHes of ``chunk`` bytes, all on one keep-alive socket."""

    def run(server: Server, src: Path, size: int, chunk: int) -> str:
        with Connection(server.url) as conn, open(src, "rb") as f:
            resp = conn.request("POST", create_path, {**TUS, "Upload-Length": str(size), **headers})
            assert resp.status == 201, (resp.status, resp.body)
            location = resp.headers["location"]
            offset = 0
            while offset < size:
                count = min(chunk, size - offset)
                resp = conn.request(
                    "PATCH",
                    location,
                    {
                        **TUS,
                        "Upload-Offset": str(offset),
                        "Content-Type": "application/offset+octet-stream",
                    },
                    file=f,
                    offset=offset,
                    count=count,
                )
                assert resp.status == 204, (resp.status, resp.body)
                offset = int(resp.headers["upload-offset"])
        return location

    return run


def tus_tuspy(server: Server, create_path: str, src: Path, chunk: int, name: str) -> str:
    from tusclient import client

    tus = client.TusClient(server.url + create_path)
    uploader = tus.uploader(
        file_path=str(src), chunk_size=chunk, metadata={"relativePath": name, "filename": name}
    )
    uploader.upload()
    return str(uploader.url)


def legacy_stream(server: Server, src: Path, size: int, name: str) -> str:
    boundary = uuid.uuid4().hex
    prefix = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="experiment_context"\r\n\r\n'
        f"Benchmark upload of one random file.\r\n"
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    suffix = f"\r\n--{boundary}--\r\n".encode()
    with Connection(server.url) as conn, open(src, "rb") as f:
        resp = conn.request(
            "POST",
            "/upload",
            {"Content-Type": f"multipart/form-data; boundary={boundary}"},
            file=f,
            count=size,
            prefix=prefix,
            suffix=suffix,
        )
        assert resp.status == 202, (resp.status, resp.body)
    import json

    return str(json.loads(resp.body)["session_id"])


def wait_run_done(server: Server, sid: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = httpx.get(f"{server.url}/api/sessions/{sid}", timeout=10).json().get("run")
        if run and run.get("state") in ("succeeded", "failed"):
            return
        time.sleep(0.1)


def new_session(server: Server) -> str:
    return create_session(server, "Benchmark upload of one random file.")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=200)
    parser.add_argument("--chunk-mib", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--diag", action="store_true", help="add the diagnostic variants (see DIAG_PATCHES)"
    )
    parser.add_argument(
        "--dir", type=Path, default=None, help="scratch folder (default: a temp dir)"
    )
    args = parser.parse_args()
    size = args.size_mib * MIB
    chunk = args.chunk_mib * MIB
    work = Path(tempfile.mkdtemp(prefix="bench-upload-", dir=args.dir))
    src = work / "random.bin"
    expected = make_file(src, size)
    data_dir = work / "dashboard-data"
    raw_dir = work / "raw-files"
    tps_dir = work / "tuspyserver-files"
    chunk_dir = work / "dashboard-chunk-data"  # DASHBOARD_UPLOAD_SYNC=chunk, beside
    times: dict[str, list[float]] = {}
    peaks: dict[str, int] = {}
    bad_hashes: list[str] = []
    cpu: dict[str, list[float]] = {}  # server CPU seconds per upload (robust under load)
    try:
        with (
            dashboard(data_dir, work, {"DASHBOARD_AGENT": AGENT}) as dash,
            uvicorn_app(
                "raw", "ref_upload_apps:raw_app", work, {"BENCH_FILES_DIR": str(raw_dir)}
            ) as raw,
            uvicorn_app(
                "tuspyserver",
                "ref_upload_apps:tuspyserver_app",
                work,
                {"BENCH_FILES_DIR": str(tps_dir)},
            ) as tps,
            dashboard(
                chunk_dir,
                work,
                {"DASHBOARD_AGENT": AGENT, "DASHBOARD_UPLOAD_SYNC": "chunk"},
                name="dashboard-chunk",
            ) as chunk_mode,
            contextlib.ExitStack() as stack,
        ):
            diags = {
                label: (
                    stack.enter_context(
                        dashboard(
                            work / f"diag{i}",
                            work,
                            {"DASHBOARD_AGENT": AGENT},
                            name=f"dashboard-diag{i}",
                            patch=code,
                        )
                    ),
                    work / f"diag{i}",
                )
                for i, (label, code) in enumerate(DIAG_PATCHES.items())
                if args.diag
            }
            # warm each server's code paths once with a small upload (not timed)
            small = work / "small.bin"
            make_file(small, MIB)
            tus_stream_to("/files", {"Upload-Metadata": metadata(filename="w")})(
                tps, small, MIB, chunk
            )
            raw_stream(raw, small, MIB, chunk, raw_dir)
            sid = new_session(dash)
            tus_stream_to(
                f"/api/sessions/{sid}/files", {"Upload-Metadata": metadata(relativePath="w")}
            )(dash, small, MIB, chunk)

            def timed(label: str, server: Server, fn: Callable[[], Path]) -> None:
                os.sync()
                with RssSampler(server) as rss:
                    cpu_before = server_cpu(server)
                    start = time.perf_counter()
                    stored = fn()
                    elapsed = time.perf_counter() - start
                    cpu.setdefault(label, []).append(server_cpu(server) - cpu_before)
                times.setdefault(label, []).append(elapsed)
                peaks[label] = max(peaks.get(label, 0), rss.peak)
                if sha256_of(stored) != expected:
                    bad_hashes.append(label)
                stored.unlink(missing_ok=True)

            def dash_file(sid: str, name: str, root: Path = data_dir) -> Path:
                return root / "volumes" / f"dataset-volume-{sid}" / "data" / name

            def dash_tus_stream(label: str, server: Server, root: Path, name: str) -> None:
                """One tus upload with the streaming client into a new session of ``server``."""
                sid = new_session(server)
                run_tus = tus_stream_to(
                    f"/api/sessions/{sid}/files", {"Upload-Metadata": metadata(relativePath=name)}
                )
                timed(
                    label,
                    server,
                    lambda: (run_tus(server, src, size, chunk), dash_file(sid, name, root))[1],
                )

            def one_round(round_no: int) -> None:
                timed("raw/stream", raw, lambda: raw_stream(raw, src, size, chunk, raw_dir))

                os.sync()
                start = time.perf_counter()
                disk_durable(src, work / "durable.bin")
                times.setdefault(DISK, []).append(time.perf_counter() - start)
                (work / "durable.bin").unlink()

                dash_tus_stream("tus/stream", dash, data_dir, f"r{round_no}-stream.bin")

                run_tps = tus_stream_to("/files", {"Upload-Metadata": metadata(filename="f")})
                timed(
                    "tuspyserver/stream",
                    tps,
                    lambda: tps_dir / run_tps(tps, src, size, chunk).rstrip("/").split("/")[-1],
                )

                sid2 = new_session(dash)
                name2 = f"r{round_no}-tuspy.bin"
                timed(
                    "tus/tuspy",
                    dash,
                    lambda: (
                        tus_tuspy(dash, f"/api/sessions/{sid2}/files", src, chunk, name2),
                        dash_file(sid2, name2),
                    )[1],
                )

                timed(
                    "tuspyserver/tuspy",
                    tps,
                    lambda: (
                        tps_dir
                        / tus_tuspy(tps, "/files", src, chunk, "f").rstrip("/").split("/")[-1]
                    ),
                )

                name3 = f"r{round_no}-legacy.bin"
                holder: dict[str, str] = {}

                def legacy() -> Path:
                    holder["sid"] = legacy_stream(dash, src, size, name3)
                    return dash_file(holder["sid"], name3)

                timed("legacy/stream", dash, legacy)
                wait_run_done(dash, holder["sid"])

                # beside the targets: the same upload with every PATCH flushed
                dash_tus_stream(CHUNK, chunk_mode, chunk_dir, f"r{round_no}-chunk.bin")
                for label, (diag_server, diag_dir) in diags.items():
                    dash_tus_stream(label, diag_server, diag_dir, f"r{round_no}-diag.bin")
                print(
                    f"round {round_no + 1}/{args.runs}: "
                    + ", ".join(f"{k} {size / MIB / v[-1]:.0f} MiB/s" for k, v in times.items()),
                    flush=True,
                )

            for round_no in range(args.runs):
                one_round(round_no)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def ratio(a: str, b: str) -> float:
        return median([tb / ta for ta, tb in zip(times[a], times[b], strict=True)])

    mbps = {k: size / 1e6 / median(v) for k, v in times.items()}
    print()
    print(
        table(
            ["contender", "median MB/s", "median s", "server CPU s", "server peak RSS MiB"],
            [
                (
                    k,
                    mbps[k],
                    median(v),
                    median(cpu[k]) if k in cpu else "",
                    peaks[k] / MIB if k in peaks else "",
                )
                for k, v in times.items()
            ],
        )
    )
    r_tus_raw = ratio("tus/stream", "raw/stream")
    r_tus_tps_stream = ratio("tus/stream", "tuspyserver/stream")
    r_tus_tps_tuspy = ratio("tus/tuspy", "tuspyserver/tuspy")
    r_legacy_raw = ratio("legacy/stream", "raw/stream")
    dash_peak = max(peaks["tus/stream"], peaks["tus/tuspy"], peaks["legacy/stream"]) / MIB
    r_chunk_raw = ratio(CHUNK, "raw/stream")
    r_chunk_tps = ratio(CHUNK, "tuspyserver/stream")
    targets = Targets()
    targets.check("tus/stream >= 0.9 x raw/stream", f"{r_tus_raw:.2f}x", r_tus_raw >= 0.9)
    targets.check(
        "tus >= 1.1 x tuspyserver (stream)", f"{r_tus_tps_stream:.2f}x", r_tus_tps_stream >= 1.1
    )
    targets.check(
        "tus >= 1.1 x tuspyserver (tuspy)", f"{r_tus_tps_tuspy:.2f}x", r_tus_tps_tuspy >= 1.1
    )
    targets.check("legacy >= 0.85 x raw/stream", f"{r_legacy_raw:.2f}x", r_legacy_raw >= 0.85)
    targets.check("dashboard peak RSS <= 80 MiB", f"{dash_peak:.1f} MiB", dash_peak <= 80)
    targets.check(
        "sha256 verified every upload",
        "all match" if not bad_hashes else f"mismatch: {bad_hashes}",
        not bad_hashes,
    )
    summary = (
        f"upload {args.size_mib} MiB x{args.runs}: tus/stream {mbps['tus/stream']:.0f} MB/s = "
        f"{r_tus_raw:.2f}x raw ({mbps['raw/stream']:.0f}), {r_tus_tps_stream:.2f}x tuspyserver "
        f"({mbps['tuspyserver/stream']:.0f}); tus/tuspy {mbps['tus/tuspy']:.0f} = "
        f"{r_tus_tps_tuspy:.2f}x tuspyserver/tuspy ({mbps['tuspyserver/tuspy']:.0f}); legacy "
        f"{mbps['legacy/stream']:.0f} = {r_legacy_raw:.2f}x raw; peak RSS {dash_peak:.0f} MiB; "
        f"chunk mode tus/stream {mbps[CHUNK]:.0f} = {r_chunk_raw:.2f}x raw, "
        f"{r_chunk_tps:.2f}x tuspyserver; server CPU s per upload: raw "
        f"{median(cpu['raw/stream']):.2f}, tus {median(cpu['tus/stream']):.2f}, legacy "
        f"{median(cpu['legacy/stream']):.2f}, tuspyserver {median(cpu['tuspyserver/stream']):.2f}; "
        f"durable disk ceiling {mbps[DISK]:.0f} MB/s = {ratio(DISK, 'raw/stream'):.2f}x raw, "
        f"tus/stream = {ratio('tus/stream', DISK):.2f}x that ceiling"
    )
    return targets.finish(summary, {"bench": "upload", "mbps": mbps})


if __name__ == "__main__":
    sys.exit(main())

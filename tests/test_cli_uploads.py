"""The CLI's upload strategy against a real server, the CLI as a real subprocess: the size
limit checked before a session exists, progress that moves within a large file on a slow
link, and many small files one request each with several in flight."""

from __future__ import annotations

import asyncio
import hashlib
import re
from pathlib import Path
from typing import Any

from dashboard.client.chunking import ChunkSizer
from dashboard.client.limits import everyday_size, oversize_message
from tests.feeds import follow_ws
from tests.tcp_proxy import CountingProxy
from tests.test_cli import SESSION_LINE, output, run_cli, session_files, volume_data, volumes

KIB = 1024
MIB = 1024 * KIB
QUIET = "tests.agents:chatty"
QUIET_CONTEXT = '{"description": "many small files", "lines": 0}'
UPLOADED = re.compile(r"\((\d+\.\d) files/s, (\d+) requests, (\d+) in flight\)")


def test_files_over_the_limit_exit_2_before_any_session(server_factory: Any, tmp_path: Path):
    server = server_factory(DASHBOARD_AGENT=QUIET, DASHBOARD_MAX_UPLOAD_SIZE="40000000")
    folder = tmp_path / "picked"
    folder.mkdir()
    with open(folder / "big50.bin", "wb") as handle:
        handle.truncate(50 * MIB)  # 52,428,800 bytes
    (folder / "fine.csv").write_text("a\n1\n")
    result = run_cli(tmp_path, "upload", str(folder), "--context", "limits", "--url", server.url)
    assert result.returncode == 2, output(result)
    assert (
        "picked/big50.bin is 52 MB; this dashboard accepts files up to 40 MB" in result.stderr
    ), output(result)
    assert session_files(server) == set() and volumes(server) == set()

    # the files that fit go up
    fits = run_cli(
        tmp_path, "upload", str(folder / "fine.csv"), "--context", "limits", "--url", server.url
    )
    assert fits.returncode == 0, output(fits)
    assert len(session_files(server)) == 1


def test_progress_moves_several_times_within_a_large_file_at_a_slow_rate(
    server_factory: Any, tmp_path: Path
) -> None:
    # With the default 8 MiB chunk a 3 MiB file would be one PATCH: the server, and so every
    # viewer's bar, would see 0 % then 100 %. At 1 MiB/s each request carries about 1 s.
    server = server_factory(DASHBOARD_AGENT=QUIET)
    big = tmp_path / "slow.bin"
    content = bytes(range(256)) * (3 * MIB // 256) + b"tail"
    big.write_bytes(content)
    result = run_cli(
        tmp_path, "upload", str(big), "--context", QUIET_CONTEXT, "--url", server.url,
        "--limit-rate", "1M",
    )
    assert result.returncode == 0, output(result)
    sid = SESSION_LINE.search(result.stdout)
    assert sid, output(result)
    feed = asyncio.run(follow_ws(f"{server.ws_url}/api/sessions/{sid.group(1)}/ws?since=0"))
    positions = [
        e["data"]["offset"]
        for e in feed.of_type("upload")
        if e["data"]["path"] == "slow.bin" and not e["data"]["done"]
    ]
    between = sorted({p for p in positions if 0 < p < len(content)})
    assert len(between) >= 3, f"viewers saw the file at {between} before it completed"
    # and the CLI's own plain progress names the 25/50/75 % marks as the bytes stream
    marks = [ln for ln in result.stdout.splitlines() if re.search(r"slow\.bin: \d+% of", ln)]
    assert len(marks) >= 4, output(result)
    assert (volume_data(server, sid.group(1)) / "slow.bin").read_bytes() == content


def test_many_small_files_go_one_request_each_with_several_in_flight(
    server_factory: Any, tmp_path: Path
) -> None:
    server = server_factory(DASHBOARD_AGENT=QUIET)
    folder = tmp_path / "shards"
    digests = {}
    for i in range(300):
        relative = f"g{i % 3}/h{i % 7}/item-{i:03d}.json"
        data = f'{{"item": {i}}}\n'.encode() * (1 + i % 40)
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_bytes(data)
        digests[f"shards/{relative}"] = hashlib.sha256(data).hexdigest()
    with CountingProxy(server.port) as proxy:
        result = run_cli(
            tmp_path, "upload", str(folder), "--context", QUIET_CONTEXT, "--url", proxy.url,
            "--parallel", "6", "--no-follow",
        )
    assert result.returncode == 0, output(result)
    sid = SESSION_LINE.search(result.stdout)
    assert sid, output(result)
    tus = [(m, p) for m, p in proxy.requests if "/files" in p]
    creations = [p for m, p in tus if m == "POST"]
    assert len(creations) == 300, tus[:5]
    assert not [p for m, p in tus if m in ("PATCH", "HEAD")], "one request per small file"
    assert ("OPTIONS", "/api/sessions/files") in proxy.requests  # the limit, asked first
    assert proxy.most_open >= 4, f"at most {proxy.most_open} connections were open at once"
    figures = UPLOADED.search(result.stdout)
    assert figures and figures.group(2) == "300" and figures.group(3) == "6", output(result)
    stored = volume_data(server, sid.group(1))
    for relative, digest in digests.items():
        assert hashlib.sha256((stored / relative).read_bytes()).hexdigest() == digest, relative


def test_parallel_must_be_a_sensible_count(server_factory: Any, tmp_path: Path) -> None:
    sample = tmp_path / "a.csv"
    sample.write_text("a\n")
    for bad in ("0", "-2", "many", "1000"):
        result = run_cli(tmp_path, "upload", str(sample), "--context", "x", "--parallel", bad)
        assert result.returncode == 2, (bad, output(result))
        assert "--parallel" in result.stderr


def test_chunk_sizes_follow_the_measured_rate_and_the_limit_reads_in_everyday_units() -> None:
    sizer = ChunkSizer(8 * MIB)
    assert sizer.next() == 256 * KIB  # nothing measured yet: the smallest
    sizer.record(256 * KIB, 0.25)  # 1 MiB/s
    assert sizer.next() == 1 * MIB
    sizer.record(1 * MIB, 0.001)  # a fast link: capped at the maximum
    assert sizer.next() == 8 * MIB
    slow = ChunkSizer(8 * MIB)
    slow.record(256 * KIB, 10.0)  # 25 KiB/s: never below the floor
    assert slow.next() == 256 * KIB
    assert ChunkSizer(64 * KIB).next() == 64 * KIB  # a configured maximum below the floor
    tiny = ChunkSizer(8 * MIB)
    tiny.record(8 * KIB, 0.05)  # a small file's request measures latency, not the link
    assert tiny.rate is None

    assert everyday_size(52_428_800, 40_000_000) == "52 MB"
    assert everyday_size(40_000_000) == "40 MB"
    assert everyday_size(40_400_000, 40_000_000) == "40.4 MB"  # close sizes stay distinct
    assert everyday_size(999) == "999 bytes"
    assert oversize_message([("a.bin", 10), ("b.bin", 41_000_000)], 40_000_000) == (
        "b.bin is 41 MB; this dashboard accepts files up to 40 MB. Nothing was uploaded."
    )
    assert oversize_message([("a.bin", 10)], 40_000_000) == ""
    assert oversize_message([("a.bin", 10**12)], None) == ""


def test_a_small_file_whose_creation_reply_is_lost_is_not_sent_twice(
    server_factory: Any, tmp_path: Path
) -> None:
    server = server_factory(DASHBOARD_AGENT=QUIET)
    folder = tmp_path / "few"
    folder.mkdir()
    contents = {f"f{i}.csv": f"n\n{i}\n".encode() * (i + 1) for i in range(3)}
    for name, data in contents.items():
        (folder / name).write_bytes(data)
    with CountingProxy(server.port, drop_first_created=True) as proxy:
        result = run_cli(
            tmp_path, "upload", str(folder), "--context", QUIET_CONTEXT, "--url", proxy.url,
            "--parallel", "1", "--no-follow",
        )
    assert result.returncode == 0, output(result)
    assert proxy.dropped == 1
    creations = [p for m, p in proxy.requests if m == "POST" and p.endswith("/files")]
    assert len(creations) == 4, proxy.requests  # the lost one once more, answered 409: done
    assert not [p for m, p in proxy.requests if m == "PATCH"]
    sid = SESSION_LINE.search(result.stdout)
    assert sid, output(result)
    for name, data in contents.items():
        assert (volume_data(server, sid.group(1)) / "few" / name).read_bytes() == data

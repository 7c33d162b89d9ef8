"""The command-line client (``python -m dashboard upload|follow``) against a real server.

Every test runs the CLI as a real subprocess, with its resume state in ``tmp_path``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dashboard.client.command import (
    UsageError,
    collect_files,
    load_context,
    normalise_url,
    parse_size,
)
from tests.servers import ROOT, LiveServer, free_port

CLI_TIMEOUT_S = 60.0
ANSI = re.compile(r"\x1b\[")
SESSION_LINE = re.compile(r"^session ([0-9a-f]{32})\b", re.MULTILINE)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One built-in-agent server for this module (overrides conftest's per-test one):
    start-up dominates these tests; each test only looks at the sessions it made."""
    live = LiveServer(tmp_path_factory.mktemp("cli-server") / "data").start()
    yield live
    live.stop()


def cli_env(tmp_path: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("DASHBOARD_") and k not in ("FORCE_COLOR", "TTY_COMPATIBLE")
    }
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
            "DASHBOARD_CLIENT_STATE": str(tmp_path / "client-state.json"),
        }
    )
    return env


def cli_args(*args: str) -> list[str]:
    return [sys.executable, "-m", "dashboard", *args]


def run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli_args(*args),
        cwd=ROOT,
        env=cli_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )


def run_many(tmp_path: Path, *commands: list[str]) -> list[subprocess.CompletedProcess[str]]:
    """Run several CLI commands at once (start-up dominates; this keeps the suite short)."""
    procs = [
        subprocess.Popen(
            cli_args(*args),
            cwd=ROOT,
            env=cli_env(tmp_path),
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for args in commands
    ]
    results = []
    for args, proc in zip(commands, procs, strict=True):
        try:
            stdout, stderr = proc.communicate(timeout=CLI_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        results.append(subprocess.CompletedProcess(args, proc.returncode, stdout, stderr))
    return results


def output(result: subprocess.CompletedProcess[str]) -> str:
    return f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


def make_dataset(root: Path) -> dict[str, bytes]:
    """A nested folder: CSVs at two depths, a binary file, an empty file."""
    files = {
        "top.csv": b"subject,dose_mg,response\n1,10,0.5\n2,20,0.7\n3,,0.9\n",
        "sub/measurements.tsv": b"id\tvalue\n1\t3.5\n2\t4.25\n",
        "sub/deeper/blob.bin": os.urandom(300_000),
        "sub/deeper/empty.txt": b"",
    }
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return files


def volume_data(server: LiveServer, session_id: str) -> Path:
    return server.data_dir / "volumes" / f"dataset-volume-{session_id}" / "data"


def session_files(server: LiveServer) -> set[Path]:
    sessions = server.data_dir / "sessions"
    return set(sessions.glob("*.json")) if sessions.is_dir() else set()


def volumes(server: LiveServer) -> set[Path]:
    root = server.data_dir / "volumes"
    return set(root.iterdir()) if root.is_dir() else set()


def get_session(server: LiveServer, session_id: str) -> dict[str, Any]:
    response = httpx.get(f"{server.url}/api/sessions/{session_id}", timeout=5)
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


def test_nested_folder_uploads_runs_and_follows(server: LiveServer, tmp_path: Path) -> None:
    dataset = tmp_path / "dataset"
    files = make_dataset(dataset)
    context = '{"description": "Dose-response pilot; dose_mg is the dose"}'
    result = run_cli(
        tmp_path,
        "upload",
        str(dataset),
        "--context",
        context,
        "--url",
        server.url,
        "--chunk-size",
        "64K",
    )
    assert result.returncode == 0, output(result)
    match = SESSION_LINE.search(result.stdout)
    assert match, output(result)
    sid = match.group(1)

    # byte-exact, under <folder name>/<path inside>
    data = volume_data(server, sid)
    for relative, content in files.items():
        assert (data / "dataset" / relative).read_bytes() == content, relative
    stored = sorted(p.relative_to(data).as_posix() for p in data.rglob("*") if p.is_file())
    assert stored == sorted(f"dataset/{r}" for r in files)

    # plain output when stdout is not a terminal: no escape codes, lines per file, the log
    assert not ANSI.search(result.stdout + result.stderr), output(result)
    for relative in files:
        assert f"dataset/{relative}: 100% of" in result.stdout, output(result)
    blob_lines = [ln for ln in result.stdout.splitlines() if "dataset/sub/deeper/blob.bin:" in ln]
    assert 2 <= len(blob_lines) <= 6, blob_lines  # 0/25/50/75/100 %, not one per chunk
    assert re.search(r"^\[(info|debug)\] ", result.stdout, re.MULTILINE), output(result)
    assert "status: succeeded" in result.stdout
    assert get_session(server, sid)["run"]["state"] == "succeeded"

    # the outcome has been reported: nothing is left to resume
    state = json.loads((tmp_path / "client-state.json").read_text())
    assert state["entries"] == {}

    # follow replays the finished session's feed and exits by its outcome
    followed = run_cli(tmp_path, "follow", sid, "--url", server.url)
    assert followed.returncode == 0, output(followed)
    assert "uploaded dataset/sub/deeper/blob.bin (300000 bytes)" in followed.stdout
    assert "status: succeeded" in followed.stdout
    assert not ANSI.search(followed.stdout)

    # a well-formed but unknown id, and a malformed one: bad input
    unknown, malformed = run_many(
        tmp_path, ["follow", "0" * 32, "--url", server.url], ["follow", "../etc"]
    )
    assert unknown.returncode == 2, output(unknown)
    assert malformed.returncode == 2, output(malformed)


def test_failing_agent_exits_1_with_the_error(server_factory: Any, tmp_path: Path) -> None:
    server = server_factory(DASHBOARD_AGENT="tests.agents:raises")
    sample = tmp_path / "sample.csv"
    sample.write_text("a,b\n1,2\n")
    result = run_cli(
        tmp_path, "upload", str(sample), "--context", "a run that fails", "--url", server.url
    )
    assert result.returncode == 1, output(result)
    assert "ValueError" in result.stdout + result.stderr, output(result)
    assert "the dataset has no header row" in result.stderr, output(result)
    assert "[info] about to fail" in result.stdout, output(result)
    assert "status: failed" in result.stdout
    sid = SESSION_LINE.search(result.stdout)
    assert sid
    followed = run_cli(tmp_path, "follow", sid.group(1), "--url", server.url)
    assert followed.returncode == 1, output(followed)
    assert "ValueError" in followed.stderr


def test_bad_input_exits_2_and_uploads_nothing(server: LiveServer, tmp_path: Path) -> None:
    sample = tmp_path / "sample.csv"
    sample.write_text("a,b\n1,2\n")
    (tmp_path / "empty-folder").mkdir()
    url = ["--url", server.url]
    sessions_before, volumes_before = session_files(server), volumes(server)
    cases = [
        ["upload", str(sample), *url],  # no --context at all
        ["upload", str(sample), "--context", "   \n ", *url],
        ["upload", str(sample), "--context", '{"title": "no description"}', *url],
        ["upload", str(tmp_path / "nope.csv"), "--context", "fine", *url],
        ["upload", str(tmp_path / "empty-folder"), "--context", "fine", *url],
        ["upload", str(sample), "--context", "fine", "--chunk-size", "0", *url],
    ]
    for args, result in zip(cases, run_many(tmp_path, *cases), strict=True):
        assert result.returncode == 2, (args, output(result))
        assert result.stderr.strip(), args
    assert session_files(server) == sessions_before
    assert volumes(server) == volumes_before

    # --no-follow: exit 0 once the run has started, printing the session id
    started = run_cli(tmp_path, "upload", str(sample), "--context", "fine", "--no-follow", *url)
    assert started.returncode == 0, output(started)
    match = SESSION_LINE.search(started.stdout)
    assert match, output(started)
    assert get_session(server, match.group(1))["run"] is not None
    assert json.loads((tmp_path / "client-state.json").read_text())["entries"] == {}


def test_unreachable_server_exits_3(tmp_path: Path) -> None:
    sample = tmp_path / "sample.csv"
    sample.write_text("a,b\n1,2\n")
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    result, followed = run_many(
        tmp_path,
        ["upload", str(sample), "--context", "fine", "--url", url],
        ["follow", "a" * 32, "--url", url],
    )
    assert result.returncode == 3, output(result)
    assert "cannot reach" in result.stderr
    assert followed.returncode == 3, output(followed)


def _wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_interrupted_upload_resumes_on_rerun(server: LiveServer, tmp_path: Path) -> None:
    size = 24 * 1024 * 1024
    big = tmp_path / "big.bin"
    content = os.urandom(size)
    big.write_bytes(content)
    args = [
        "upload",
        str(big),
        "--context",
        "resume me",
        "--url",
        server.url,
        "--chunk-size",
        "1M",
        "--limit-rate",
        "16M",
    ]
    state_file = tmp_path / "client-state.json"
    sessions_before = session_files(server)
    proc = subprocess.Popen(
        cli_args(*args),
        cwd=ROOT,
        env=cli_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def saved_session() -> str | None:
            try:
                entries = json.loads(state_file.read_text())["entries"]
            except (OSError, ValueError, KeyError):
                return None
            for entry in entries.values():
                if entry.get("uploads"):
                    return str(entry["session_id"])
            return None

        sid: str = _wait_for(saved_session, 20, "the client to save its session")

        def part_way() -> bool:
            files = get_session(server, sid)["files"]
            return bool(files) and 0 < files[0]["offset"] < files[0]["length"]

        _wait_for(part_way, 20, "the upload to be part-way")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)

    # the server's offset once it has noticed the dropped connection
    def settled_offset() -> int | None:
        first = get_session(server, sid)["files"][0]["offset"]
        time.sleep(0.2)
        second = get_session(server, sid)["files"][0]["offset"]
        return int(first) if first == second else None

    first_offset: int = _wait_for(settled_offset, 10, "the server offset to settle")
    assert 0 < first_offset < size

    result = run_cli(tmp_path, *args)
    assert result.returncode == 0, output(result)
    assert f"resuming session {sid}" in result.stdout, output(result)
    resumed = re.search(r"resuming at (\d+) of (\d+) bytes", result.stdout)
    assert resumed, output(result)
    resumed_at = int(resumed.group(1))
    assert resumed_at == first_offset
    sent_match = re.search(r"sent (\d+) bytes", result.stdout)
    assert sent_match, output(result)
    second_sent = int(sent_match.group(1))
    total_sent = first_offset + second_sent
    print(
        f"resume: file {size} B, first run left {first_offset} B on the server, "
        f"re-run sent {second_sent} B, total {total_sent} B ({total_sent / size:.3f}x)"
    )
    assert second_sent == size - resumed_at
    assert total_sent < 1.5 * size
    assert (volume_data(server, sid) / "big.bin").read_bytes() == content
    assert len(session_files(server) - sessions_before) == 1  # the same session, not a new one


def test_collect_files_and_sizes(tmp_path: Path) -> None:
    make_dataset(tmp_path / "ds")
    single = tmp_path / "one.txt"
    single.write_text("x")
    found = collect_files([str(tmp_path / "ds"), str(single)])
    assert [f.relative for f in found] == [
        "ds/top.csv",
        "ds/sub/measurements.tsv",
        "ds/sub/deeper/blob.bin",
        "ds/sub/deeper/empty.txt",
        "one.txt",
    ]
    other = tmp_path / "other"
    other.mkdir()
    (other / "one.txt").write_text("y")
    with pytest.raises(UsageError, match="two files"):
        collect_files([str(single), str(other / "one.txt")])
    assert parse_size("1M") == 1024 * 1024
    assert parse_size("8MiB") == 8 * 1024 * 1024
    assert parse_size("4096") == 4096
    for bad in ("0", "-1", "1X", ""):
        with pytest.raises(ValueError):
            parse_size(bad)


def test_context_and_url_checks(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text('{"description": "   "}')
    (tmp_path / "good.json").write_text('{"description": "trial", "columns": ["dose"]}')
    assert load_context(f"@{tmp_path / 'good.json'}").value == {
        "description": "trial",
        "columns": ["dose"],
    }
    assert load_context("  plain text  ").value == "plain text"
    for bad in ("", "bad \x07 bell", f"@{tmp_path / 'bad.json'}", f"@{tmp_path / 'missing'}"):
        with pytest.raises(UsageError):
            load_context(bad)
    with pytest.raises(UsageError):
        load_context(None)
    assert normalise_url("http://127.0.0.1:9/") == "http://127.0.0.1:9"
    with pytest.raises(UsageError):
        normalise_url("ftp://example.org")

"""``python -m dashboard results`` and the end of ``upload``, as real subprocesses against a
real server: the link and the table, byte-exact downloads, resuming by Range, exit codes."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.feeds import create_session
from tests.servers import LiveServer, free_port
from tests.test_cli import SESSION_LINE, output, run_cli, run_many

MB = 1024 * 1024
DOSES = b"subject,dose_mg,arm\n1,10,a\n2,20,b\n3,,a\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("cli-results") / "data").start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def uploaded(server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One ``upload`` run to its end: its output and session id."""
    tmp = tmp_path_factory.mktemp("upload")
    data = tmp / "trial"
    data.mkdir()
    (data / "doses.csv").write_bytes(DOSES)
    (data / "notes.bin").write_bytes(os.urandom(2000))
    result = run_cli(
        tmp, "upload", str(data), "--context", "dose_mg per arm", "--url", server.url
    )
    assert result.returncode == 0, output(result)
    match = SESSION_LINE.search(result.stdout)
    assert match, output(result)
    return {"stdout": result.stdout, "sid": match.group(1)}


def results_dir(server: LiveServer, sid: str) -> Path:
    return server.data_dir / "volumes" / f"dataset-volume-{sid}" / "results"


def table_rows(stdout: str) -> dict[str, list[str]]:
    """The table's rows by path (cells split on runs of two or more spaces)."""
    lines = stdout.splitlines()
    start = next(i for i, ln in enumerate(lines) if re.match(r"^path\s+kind\s+rows", ln))
    assert set(lines[start + 1]) <= {"-", " "}
    rows = {}
    for line in lines[start + 2 :]:
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) < 6:
            break
        rows[cells[0]] = cells
    return rows


def test_upload_ends_with_the_link_and_the_table(
    server: LiveServer, uploaded: dict[str, str]
) -> None:
    stdout, sid = uploaded["stdout"], uploaded["sid"]
    assert f"results: {server.url}/?session={sid}" in stdout
    rows = table_rows(stdout)
    assert rows["trial/doses.csv"] == [
        "trial/doses.csv",
        "table",
        "3",
        "3",
        f"{len(DOSES)} B",
        "dose_mg, arm",  # both named by the context
    ]
    assert rows["trial/notes.bin"][:4] == ["trial/notes.bin", "other", "-", "-"]
    assert rows["trial/notes.bin"][4] == "2.0 KB"
    # the table comes last, after the run's outcome
    assert stdout.index("status: succeeded") < stdout.index("results: ")


def test_results_downloads_every_artifact_byte_exact_and_prints_the_table(
    server: LiveServer, uploaded: dict[str, str], tmp_path: Path
) -> None:
    sid = uploaded["sid"]
    out = tmp_path / "got"
    result = run_cli(tmp_path, "results", sid, "--out", str(out), "--url", server.url)
    assert result.returncode == 0, output(result)
    assert f"results in {out.resolve()}" in result.stdout
    served = results_dir(server, sid)
    names = sorted(p.relative_to(served).as_posix() for p in served.rglob("*") if p.is_file())
    assert names == ["report.md", "summary.json"]
    for name in names:
        assert (out / name).read_bytes() == (served / name).read_bytes(), name
    assert not list(out.rglob("*.part"))
    assert table_rows(result.stdout)["trial/doses.csv"][1:4] == ["table", "3", "3"]

    again = run_cli(tmp_path, "results", sid, "--out", str(out), "--url", server.url)
    assert again.returncode == 0, output(again)
    assert again.stdout.count("already here") == 2, output(again)


def test_an_interrupted_download_resumes_by_range(
    server: LiveServer, uploaded: dict[str, str], tmp_path: Path
) -> None:
    sid = uploaded["sid"]
    served = results_dir(server, sid)
    (served / "plots").mkdir(exist_ok=True)
    big = os.urandom(12 * MB + 321)
    (served / "plots" / "big.bin").write_bytes(big)
    out = tmp_path / "resume"
    first = run_cli(tmp_path, "results", sid, "--out", str(out), "--url", server.url)
    assert first.returncode == 0, output(first)
    assert (out / "plots" / "big.bin").read_bytes() == big

    # as a download cut off after 5 MB leaves it: the partial file, its version noted
    state_path = out / ".dashboard-results.json"
    state = json.loads(state_path.read_text())
    etag = state["plots/big.bin"]["etag"]
    (out / "plots" / "big.bin").unlink()
    (out / "plots" / "big.bin.part").write_bytes(big[: 5 * MB])
    state["plots/big.bin"] = {"partial_etag": etag}
    state_path.write_text(json.dumps(state))
    resumed = run_cli(tmp_path, "results", sid, "--out", str(out), "--url", server.url)
    assert resumed.returncode == 0, output(resumed)
    assert f"plots/big.bin: 12.0 MB, resumed at {5 * MB} bytes ({len(big) - 5 * MB} bytes" in (
        resumed.stdout
    ), output(resumed)
    assert (out / "plots" / "big.bin").read_bytes() == big

    # the file changed on the server since: If-Range fails, the whole file comes again
    changed = os.urandom(len(big))
    (served / "plots" / "big.bin").write_bytes(changed)
    (out / "plots" / "big.bin").unlink()
    (out / "plots" / "big.bin.part").write_bytes(big[: 5 * MB])
    state = json.loads(state_path.read_text())
    state["plots/big.bin"] = {"partial_etag": etag}
    state_path.write_text(json.dumps(state))
    restarted = run_cli(tmp_path, "results", sid, "--out", str(out), "--url", server.url)
    assert restarted.returncode == 0, output(restarted)
    assert f"plots/big.bin: 12.0 MB, downloaded ({len(big)} bytes" in restarted.stdout
    assert (out / "plots" / "big.bin").read_bytes() == changed


def test_exit_codes(server: LiveServer, tmp_path: Path) -> None:
    empty = create_session(server.url)
    nowhere = f"http://127.0.0.1:{free_port()}"
    unknown, malformed, unreachable, nothing = run_many(
        tmp_path,
        ["results", "0" * 32, "--url", server.url],
        ["results", "../etc", "--url", server.url],
        ["results", "a" * 32, "--url", nowhere],
        ["results", empty, "--url", server.url, "--out", str(tmp_path / "none")],
    )
    assert unknown.returncode == 2, output(unknown)
    assert "there is no session" in unknown.stderr
    assert malformed.returncode == 2, output(malformed)
    assert unreachable.returncode == 3, output(unreachable)
    assert "cannot reach" in unreachable.stderr
    assert nothing.returncode == 1, output(nothing)
    assert "has no results yet" in nothing.stdout
    assert not (tmp_path / "none").exists()


def test_the_page_link_names_a_real_session(server: LiveServer, uploaded: dict[str, str]) -> None:
    link = re.search(r"^results: (\S+)$", uploaded["stdout"], re.MULTILINE)
    assert link
    assert httpx.get(link.group(1), timeout=10).status_code == 200

"""The artifact routes against a real server after a real run: types, inline or attachment,
the sandbox, Range, the listing, symlinks and hard links, bad paths, and the zip."""

from __future__ import annotations

import io
import json
import os
import time
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from dashboard.artifacts import parse_range, present
from dashboard.errors import RangeNotSatisfiable
from tests.feeds import create_session, start_run, tus_upload
from tests.servers import LiveServer

CSV = b"subject,dose_mg,arm\n1,10,control\n2,20,treatment\n3,,control\n4,40,placebo\n"
RUN_TIMEOUT_S = 60.0


@dataclass
class Finished:
    server: LiveServer
    sid: str

    @property
    def volume(self) -> Path:
        return self.server.data_dir / "volumes" / f"dataset-volume-{self.sid}"

    @property
    def results(self) -> Path:
        return self.volume / "results"

    def url(self, path: str = "") -> str:
        return f"{self.server.url}/api/sessions/{self.sid}/artifacts{path}"


def wait_finished(base: str, sid: str) -> dict[str, object]:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        view: dict[str, object] = httpx.get(f"{base}/api/sessions/{sid}", timeout=10).json()
        if view["state"] in ("succeeded", "failed"):
            return view
        time.sleep(0.1)
    raise AssertionError(f"the run did not end in {RUN_TIMEOUT_S} s")


@pytest.fixture(scope="module")
def finished(shared_server: LiveServer) -> Iterator[Finished]:
    """One session whose built-in run succeeded, plus hand-made files in its results/."""
    base = shared_server.url
    sid = create_session(base, "Dose per arm: dose_mg by arm")
    tus_upload(base, sid, "trial/doses.csv", CSV)
    start_run(base, sid)
    view = wait_finished(base, sid)
    assert view["state"] == "succeeded", view
    done = Finished(shared_server, sid)
    results = done.results
    (results / "plots").mkdir()
    (results / "plots" / "dose.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    (results / "page.html").write_text("<script>alert(document.cookie)</script>")
    (results / "drawing.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"><script/></svg>')
    (results / "report.pdf").write_bytes(b"%PDF-1.4\n%%EOF\n")
    (results / "model.bin").write_bytes(os.urandom(3000))
    (results / "notes é.txt").write_text("plain words\n")
    (results / "big.dat").write_bytes(os.urandom(5 * 1024 * 1024 + 123))
    (results / ".summary.json.tmp").write_text("{}")  # an agent's temporary file
    outside = shared_server.data_dir.parent / f"secret-{sid}.txt"
    outside.write_text("never served")
    (results / "escape.txt").symlink_to(outside)
    (results / "uploaded.csv").symlink_to(done.volume / "data" / "trial" / "doses.csv")
    (results / "linked-dir").symlink_to(done.volume / "data")
    (results / "relative.txt").symlink_to("notes é.txt")
    os.link(done.volume / "data" / "trial" / "doses.csv", results / "hardlink.csv")
    os.mkfifo(results / "pipe")
    yield done


def get(url: str, **headers: str) -> httpx.Response:
    return httpx.get(url, headers=headers, timeout=30)


def assert_problem(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status and body["detail"]


# -- one artifact ----------------------------------------------------------------------------
def test_the_runs_summary_and_report_are_served_inline(finished: Finished) -> None:
    summary = get(finished.url("/summary.json"))
    assert summary.status_code == 200
    assert summary.headers["content-type"] == "application/json; charset=utf-8"
    assert summary.headers["x-content-type-options"] == "nosniff"
    assert summary.headers["content-disposition"].startswith('inline; filename="summary.json"')
    assert summary.headers["accept-ranges"] == "bytes"
    assert summary.headers["content-security-policy"].startswith("sandbox")
    assert summary.content == (finished.results / "summary.json").read_bytes()
    assert summary.json()["files"][0]["path"] == "trial/doses.csv"
    report = get(finished.url("/report.md"))
    assert report.status_code == 200
    assert report.headers["content-type"] == "text/markdown; charset=utf-8"
    assert report.headers["content-disposition"].startswith("inline;")
    assert report.text.startswith("# Dataset profile")


@pytest.mark.parametrize(
    ("path", "content_type", "disposition"),
    [
        ("/plots/dose.png", "image/png", "inline"),
        ("/drawing.svg", "image/svg+xml", "inline"),
        ("/report.pdf", "application/pdf", "inline"),
        ("/notes%20%C3%A9.txt", "text/plain; charset=utf-8", "inline"),
        ("/model.bin", "application/octet-stream", "attachment"),
        ("/page.html", "text/html; charset=utf-8", "attachment"),
    ],
)
def test_types_and_dispositions(
    finished: Finished, path: str, content_type: str, disposition: str
) -> None:
    response = get(finished.url(path))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == content_type
    assert response.headers["content-disposition"].split(";")[0] == disposition
    assert response.headers["x-content-type-options"] == "nosniff"
    on_disk = finished.results.joinpath(*httpx.URL(path).path.lstrip("/").split("/"))
    assert response.content == on_disk.read_bytes()
    if content_type == "application/pdf":
        assert "content-security-policy" not in response.headers
    else:  # HTML and SVG never run as a page of the dashboard's origin
        assert response.headers["content-security-policy"].split(";")[0] == "sandbox"


def test_download_asks_for_an_attachment(finished: Finished) -> None:
    response = get(finished.url("/report.md?download=1"))
    assert response.status_code == 200
    assert response.headers["content-disposition"].startswith('attachment; filename="report.md"')
    assert response.headers["content-type"] == "text/markdown; charset=utf-8"


def test_a_non_ascii_name_keeps_its_utf8_filename(finished: Finished) -> None:
    response = get(finished.url("/notes%20%C3%A9.txt"))
    disposition = response.headers["content-disposition"]
    assert 'filename="notes _.txt"' in disposition
    assert "filename*=UTF-8''notes%20%C3%A9.txt" in disposition


def test_head_gives_the_headers_without_the_body(finished: Finished) -> None:
    response = httpx.head(finished.url("/big.dat"), timeout=10)
    assert response.status_code == 200
    assert int(response.headers["content-length"]) == 5 * 1024 * 1024 + 123
    assert response.content == b""


# -- Range -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-0", 0, 1),
        ("bytes=1000-2999999", 1000, 3_000_000),
        ("bytes=5242000-", 5_242_000, 5 * 1024 * 1024 + 123),
        ("bytes=-100", 5 * 1024 * 1024 + 23, 5 * 1024 * 1024 + 123),
        ("bytes=4000000-99999999", 4_000_000, 5 * 1024 * 1024 + 123),
    ],
)
def test_a_single_range_is_206_byte_exact(
    finished: Finished, header: str, start: int, end: int
) -> None:
    data = (finished.results / "big.dat").read_bytes()
    response = get(finished.url("/big.dat"), Range=header)
    assert response.status_code == 206, response.text
    assert response.content == data[start:end]
    assert response.headers["content-range"] == f"bytes {start}-{end - 1}/{len(data)}"
    assert int(response.headers["content-length"]) == end - start


def test_an_unsatisfiable_range_is_416_problem(finished: Finished) -> None:
    size = (finished.results / "big.dat").stat().st_size
    response = get(finished.url("/big.dat"), Range=f"bytes={size}-")
    assert_problem(response, 416)
    assert response.headers["content-range"] == f"bytes */{size}"


@pytest.mark.parametrize("header", ["bytes=0-1,5-6", "items=0-5", "bytes=9-3", "bytes=x-"])
def test_several_or_malformed_ranges_get_the_whole_file(finished: Finished, header: str) -> None:
    response = get(finished.url("/model.bin"), Range=header)
    assert response.status_code == 200
    assert response.content == (finished.results / "model.bin").read_bytes()


def test_if_range_and_if_none_match(finished: Finished) -> None:
    data = (finished.results / "model.bin").read_bytes()
    first = get(finished.url("/model.bin"))
    etag = first.headers["etag"]
    same = get(finished.url("/model.bin"), Range="bytes=10-19", **{"If-Range": etag})
    assert same.status_code == 206 and same.content == data[10:20]
    changed = get(finished.url("/model.bin"), Range="bytes=10-19", **{"If-Range": '"other"'})
    assert changed.status_code == 200 and changed.content == data
    cached = get(finished.url("/model.bin"), **{"If-None-Match": etag})
    assert cached.status_code == 304 and cached.content == b""


def test_parse_range_rules() -> None:
    assert parse_range(None, 10) is None
    assert parse_range("bytes=2-4", 10) == parse_range("bytes = 2 - 4", 10)
    got = parse_range("bytes=2-4", 10)
    assert got is not None and (got.start, got.end) == (2, 5)
    with pytest.raises(RangeNotSatisfiable):
        parse_range("bytes=-0", 10)
    with pytest.raises(RangeNotSatisfiable):
        parse_range("bytes=0-", 0)
    assert present("x.HTML").inline is False
    assert present("x.js").inline is False
    assert present("table.csv.gz").content_type == "application/gzip"


# -- what is not an artifact -----------------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    [
        "/escape.txt",  # a symlink out of the volume
        "/uploaded.csv",  # a symlink into data/
        "/linked-dir/trial/doses.csv",  # through a symlinked folder into data/
        "/relative.txt",  # even a symlink inside results/ is not followed
        "/hardlink.csv",  # a second name of an uploaded file
        "/pipe",  # a FIFO (would block a reader)
        "/plots",  # a folder
        "/missing.json",
        "/.summary.json.tmp",  # a temporary dot-file
        "/plots/dose.png/more",
    ],
)
def test_links_specials_and_missing_files_are_404(finished: Finished, path: str) -> None:
    assert_problem(get(finished.url(path)), 404)


@pytest.mark.parametrize("raw", ["/%2E%2E/context.json", "/a%5C..%5C..%5Ccontext.json", "/a%00b"])
def test_paths_breaking_the_rules_are_422(finished: Finished, raw: str) -> None:
    base = httpx.URL(finished.url())
    # the raw path as written: httpx would resolve a literal ".." itself
    response = httpx.get(base.copy_with(raw_path=base.raw_path + raw.encode()), timeout=10)
    assert_problem(response, 422)


def test_unknown_and_malformed_sessions_are_404(shared_server: LiveServer) -> None:
    for sid in (uuid.uuid4().hex, "not-a-session"):
        base = f"{shared_server.url}/api/sessions/{sid}"
        assert_problem(get(f"{base}/artifacts/summary.json"), 404)
        assert_problem(get(f"{base}/artifacts"), 404)
        assert_problem(get(f"{base}/artifacts.zip"), 404)


def test_a_session_without_results_lists_nothing(shared_server: LiveServer) -> None:
    sid = create_session(shared_server.url)
    base = f"{shared_server.url}/api/sessions/{sid}/artifacts"
    assert get(base).json()["artifacts"] == []
    assert_problem(get(f"{base}/summary.json"), 404)
    with zipfile.ZipFile(io.BytesIO(get(f"{base}.zip").content)) as archive:
        assert archive.namelist() == []


# -- the listing and the session's links -----------------------------------------------------
def test_the_listing_has_only_servable_files(finished: Finished) -> None:
    listing = get(finished.url()).json()
    names = [a["name"] for a in listing["artifacts"]]
    assert names == sorted(
        [
            "big.dat",
            "drawing.svg",
            "model.bin",
            "notes é.txt",
            "page.html",
            "plots/dose.png",
            "report.md",
            "report.pdf",
            "summary.json",
        ]
    )
    by_name = {a["name"]: a for a in listing["artifacts"]}
    assert by_name["summary.json"]["path"] == "results/summary.json"
    assert by_name["summary.json"]["size"] == (finished.results / "summary.json").stat().st_size
    assert by_name["plots/dose.png"]["url"] == finished.url("/plots/dose.png").removeprefix(
        finished.server.url
    )
    assert by_name["page.html"]["inline"] is False
    assert listing["zip"] == f"/api/sessions/{finished.sid}/artifacts.zip"
    view = get(f"{finished.server.url}/api/sessions/{finished.sid}").json()
    assert view["links"]["artifacts"] == f"/api/sessions/{finished.sid}/artifacts"
    assert view["artifacts"] == [a["path"] for a in listing["artifacts"]]
    for item in listing["artifacts"]:  # every listed URL serves
        assert get(finished.server.url + item["url"]).status_code == 200


# -- the zip ---------------------------------------------------------------------------------
def test_the_zip_holds_every_artifact_byte_exact(finished: Finished) -> None:
    with httpx.stream("GET", finished.url(".zip"), timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/zip"
        assert response.headers["content-disposition"].startswith(
            f'attachment; filename="results-{finished.sid}.zip"'
        )
        assert "content-length" not in response.headers  # streamed as it is made
        body = b"".join(response.iter_bytes())
    listing = get(finished.url()).json()["artifacts"]
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert archive.testzip() is None  # every CRC checks
        assert archive.namelist() == [a["path"] for a in listing]
        for name in archive.namelist():
            on_disk = finished.volume.joinpath(*name.split("/")).read_bytes()
            assert archive.read(name) == on_disk, name
        summary = json.loads(archive.read("results/summary.json"))
        assert summary["files"][0]["rows"] == 4


# -- memory ----------------------------------------------------------------------------------
def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_a_big_artifact_streams_with_flat_memory(server_factory: Any, tmp_path: Path) -> None:
    """A 256 MiB artifact, whole, by range and zipped: the server's peak RSS grows by far
    less than the file (a buffering server would grow by at least its size)."""
    live = server_factory()
    sid = create_session(live.url)
    results = live.data_dir / "volumes" / f"dataset-volume-{sid}" / "results"
    size = 256 * 1024 * 1024
    with (results / "big.gz").open("wb") as fh:  # sparse: quick to make and to read
        fh.truncate(size)
    (results / "small.txt").write_text("small\n")
    assert live.proc is not None
    base = f"{live.url}/api/sessions/{sid}/artifacts"
    httpx.get(f"{base}/small.txt", timeout=10).raise_for_status()  # warm the route
    before = peak_rss_mb(live.proc.pid)

    def drain(url: str, **headers: str) -> tuple[int, Path]:
        target = tmp_path / f"download-{uuid.uuid4().hex}"
        with httpx.stream("GET", url, headers=headers, timeout=120) as response, target.open(
            "wb"
        ) as out:
            assert response.status_code in (200, 206), response.read()
            for chunk in response.iter_bytes(1024 * 1024):
                out.write(chunk)
        return response.status_code, target

    status, whole = drain(f"{base}/big.gz")
    assert status == 200 and whole.stat().st_size == size
    whole.unlink()
    status, part = drain(f"{base}/big.gz", Range=f"bytes={size // 2}-")
    assert status == 206 and part.stat().st_size == size - size // 2
    part.unlink()
    status, zipped = drain(f"{base}.zip")
    with zipfile.ZipFile(zipped) as archive:
        info = archive.getinfo("results/big.gz")
        assert info.file_size == size and info.compress_type == zipfile.ZIP_STORED
        assert archive.read("results/small.txt") == b"small\n"
        with archive.open(info) as member:  # reading to the end checks the CRC
            while member.read(4 * 1024 * 1024):
                pass
    growth = peak_rss_mb(live.proc.pid) - before
    assert growth < 64, f"the server's peak RSS grew by {growth:.0f} MB"

"""What tus clients send beyond the core: method override, deferred length, concatenation,
``relativePath: null``, refused creations, 405 with ``Allow``, and one access-log line per
upload. Each against a real server process; the client cases with the unmodified
tus-js-client under Node (tests/js/tus_cases.mjs)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.app import create_app
from dashboard.config import Settings
from dashboard.uploads import FileWriter
from tests.feeds import TUS, create_session, metadata, tus_create, tus_upload, wait_stored
from tests.servers import InProcessServer, LiveServer

ROOT = Path(__file__).resolve().parent.parent
JS = ROOT / "tests" / "js"
OCTET = {"Content-Type": "application/offset+octet-stream"}
KIB = 1024


def files_url(server: LiveServer | InProcessServer, sid: str) -> str:
    return f"{server.url}/api/sessions/{sid}/files"


def volume_data(server: LiveServer | InProcessServer, sid: str) -> Path:
    return server.data_dir / "volumes" / f"dataset-volume-{sid}" / "data"


def stored_files(
    server: LiveServer | InProcessServer, sid: str, *, wait: bool = True
) -> dict[str, bytes]:
    if wait:  # a complete file is published in the background
        wait_stored(server.url, sid)
    data = volume_data(server, sid)
    return {
        p.relative_to(data).as_posix(): p.read_bytes()
        for p in sorted(data.rglob("*"))
        if p.is_file()
    }


def staged(server: LiveServer | InProcessServer, sid: str) -> list[str]:
    folder = server.data_dir / "staging" / sid
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def session_files(server: LiveServer | InProcessServer, sid: str) -> list[dict[str, Any]]:
    files: list[dict[str, Any]] = httpx.get(f"{server.url}/api/sessions/{sid}", timeout=10).json()[
        "files"
    ]
    return files


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def patch(url: str, body: bytes, offset: int, **headers: str) -> httpx.Response:
    return httpx.patch(
        url, content=body, headers={**TUS, **OCTET, "Upload-Offset": str(offset), **headers}
    )


def is_problem(r: httpx.Response, status: int) -> bool:
    return r.status_code == status and r.headers["content-type"] == "application/problem+json"


# -- discovery -----------------------------------------------------------------------------


def test_the_extensions_are_advertised(shared_server: LiveServer) -> None:
    sid = create_session(shared_server.url)
    r = httpx.options(files_url(shared_server, sid), headers=TUS)
    extensions = set(r.headers["Tus-Extension"].split(","))
    assert {"creation-defer-length", "concatenation"} <= extensions


# -- X-HTTP-Method-Override ----------------------------------------------------------------


def test_a_post_with_method_override_is_that_method(shared_server: LiveServer) -> None:
    server = shared_server
    sid = create_session(server.url)
    url = server.url + tus_create(server.url, sid, "o.bin", 6).headers["Location"]
    over = {**TUS, **OCTET}
    r = httpx.post(
        url,
        content=b"abc",
        headers={**over, "X-HTTP-Method-Override": "PATCH", "Upload-Offset": "0"},
    )
    assert r.status_code == 204 and r.headers["Upload-Offset"] == "3", r.text
    r = httpx.post(url, headers={**TUS, "X-HTTP-Method-Override": "HEAD"})
    assert r.status_code == 200 and r.headers["Upload-Offset"] == "3"
    assert r.headers["Upload-Length"] == "6"
    r = httpx.post(
        url,
        content=b"xyz",
        headers={**over, "X-HTTP-Method-Override": "patch", "Upload-Offset": "2"},
    )
    assert is_problem(r, 409), "an overridden PATCH gets every PATCH check"
    other = server.url + tus_create(server.url, sid, "gone.bin", 6).headers["Location"]
    r = httpx.post(other, headers={**TUS, "X-HTTP-Method-Override": "DELETE"})
    assert r.status_code == 204
    assert httpx.head(other, headers=TUS).status_code == 404
    r = httpx.post(url, content=b"def", headers={**over, "Upload-Offset": "3"})
    assert is_problem(r, 405), "a POST without the override is still not a method here"
    assert set(r.headers["Allow"].split(", ")) == {"DELETE", "HEAD", "PATCH"}
    assert stored_files(server, sid) == {}


# -- 405 and Allow -------------------------------------------------------------------------

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def test_every_405_lists_the_methods_the_path_really_has(shared_server: LiveServer) -> None:
    """For every route the OpenAPI document lists: each undocumented method is a 405 whose
    ``Allow`` is exactly the documented methods, and a documented GET is served."""
    server = shared_server
    sid = create_session(server.url)
    upload_id = tus_create(server.url, sid, "allow.bin", 5).headers["Location"].rsplit("/", 1)[1]
    document = httpx.get(f"{server.url}/openapi.json", timeout=10).json()
    checked = 0
    with httpx.Client(base_url=server.url, timeout=10) as client:
        patterns = {
            re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"): item
            for template, item in document["paths"].items()
        }
        for template in document["paths"]:
            path = template.replace("{session_id}", sid).replace("{upload_id}", upload_id)
            # every documented route whose path matches (e.g. /api/sessions/files is also
            # /api/sessions/{session_id})
            documented = {m.upper() for rx, it in patterns.items() if rx.match(path) for m in it}
            for method in set(METHODS) - documented:
                r = client.request(method, path, headers=TUS)
                assert r.status_code == 405, (method, path, r.status_code)
                assert set(r.headers["Allow"].split(", ")) == documented, (method, path)
                if method != "HEAD":
                    assert r.headers["content-type"] == "application/problem+json"
                    assert method in r.json()["detail"]
            streams = path == "/stream" or path.endswith("/events")  # never end: not fetched
            if "GET" in documented and not streams:
                assert client.get(path).status_code != 405
            checked += 1
    assert checked == len(document["paths"]) >= 10
    r = httpx.put(f"{server.url}/api/sessions/{sid}/files/{upload_id}")
    assert set(r.headers["Allow"].split(", ")) == {"DELETE", "HEAD", "PATCH"}
    r = httpx.put(f"{server.url}/static/app.js")
    assert r.status_code == 405 and r.headers["Allow"] == "GET, HEAD"


# -- creation-defer-length -----------------------------------------------------------------


def test_a_deferred_length_is_sent_on_a_later_patch(shared_server: LiveServer) -> None:
    server = shared_server
    sid = create_session(server.url)
    body = os.urandom(300 * KIB + 3)
    r = httpx.post(
        files_url(server, sid),
        headers={**TUS, "Upload-Defer-Length": "1", "Upload-Metadata": metadata(filename="d.bin")},
    )
    assert r.status_code == 201, r.text
    url = server.url + r.headers["Location"]
    h = httpx.head(url, headers=TUS)
    assert h.headers["Upload-Defer-Length"] == "1" and "Upload-Length" not in h.headers
    assert patch(url, body[: 100 * KIB], 0).status_code == 204
    r = patch(url, body[100 * KIB :], 100 * KIB, **{"Upload-Length": "5"})
    assert is_problem(r, 400), "a length below the bytes already sent is refused"
    r = patch(url, body[100 * KIB :], 100 * KIB, **{"Upload-Length": str(len(body))})
    assert r.status_code == 204, r.text
    assert stored_files(server, sid) == {"d.bin": body}
    h = httpx.head(url, headers=TUS)
    assert h.headers["Upload-Length"] == str(len(body)) and "Upload-Defer-Length" not in h.headers


def test_a_deferred_length_can_end_with_an_empty_patch(shared_server: LiveServer) -> None:
    server = shared_server
    sid = create_session(server.url)
    r = httpx.post(
        files_url(server, sid),
        headers={**TUS, "Upload-Defer-Length": "1", "Upload-Metadata": metadata(filename="e.bin")},
    )
    url = server.url + r.headers["Location"]
    assert patch(url, b"hello", 0).status_code == 204
    # length still deferred: the view cannot tell it from a complete file being stored
    assert stored_files(server, sid, wait=False) == {}
    r = patch(url, b"", 5, **{"Upload-Length": "5"})
    assert r.status_code == 204, r.text
    assert stored_files(server, sid) == {"e.bin": b"hello"}


# -- creations the server cannot serve -------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "words"),
    [
        ({"Upload-Concat": "partial;x"}, "Upload-Concat must be"),
        ({"Upload-Concat": "final"}, "Upload-Concat must be"),
        ({"Upload-Concat": "final;/api/sessions/other/files/abc"}, "not an upload URL"),
        ({"Upload-Defer-Length": "2"}, "Upload-Defer-Length must be 1"),
        ({"Upload-Defer-Length": "1", "Upload-Length": "4"}, "not both"),
        ({}, "Upload-Length is required"),
    ],
)
def test_a_creation_the_server_cannot_serve_says_so_and_stores_nothing(
    shared_server: LiveServer, headers: dict[str, str], words: str
) -> None:
    server = shared_server
    sid = create_session(server.url)
    r = httpx.post(
        files_url(server, sid),
        headers={**TUS, "Upload-Metadata": metadata(filename="part"), **headers},
    )
    assert is_problem(r, 400), (r.status_code, r.text)
    assert words in r.json()["detail"]
    assert "Location" not in r.headers
    assert staged(server, sid) == [] and stored_files(server, sid) == {}
    assert session_files(server, sid) == []


# -- relativePath "null" --------------------------------------------------------------------


@pytest.mark.parametrize("relative", ["null", "", " "])
def test_an_empty_or_null_relative_path_names_the_file_by_filename(
    shared_server: LiveServer, relative: str
) -> None:
    server = shared_server
    sid = create_session(server.url)
    for name, body in (("a.csv", b"a\n1\n"), ("b.csv", b"b\n2\n")):
        r = httpx.post(
            files_url(server, sid),
            headers={
                **TUS,
                "Upload-Length": str(len(body)),
                "Upload-Metadata": metadata(relativePath=relative, filename=name),
            },
        )
        assert r.status_code == 201, r.text
        assert patch(server.url + r.headers["Location"], body, 0).status_code == 204
    assert stored_files(server, sid) == {"a.csv": b"a\n1\n", "b.csv": b"b\n2\n"}


# -- concatenation ---------------------------------------------------------------------------


def partial(server: LiveServer | InProcessServer, sid: str, body: bytes) -> str:
    r = httpx.post(
        files_url(server, sid),
        headers={**TUS, "Upload-Concat": "partial", "Upload-Length": str(len(body))},
    )
    assert r.status_code == 201, r.text
    url = server.url + r.headers["Location"]
    if body:
        assert patch(url, body, 0).status_code == 204
    return url


def test_concatenation_assembles_partials_they_never_show_and_are_removed(
    shared_server: LiveServer,
) -> None:
    server = shared_server
    sid = create_session(server.url)
    pieces = [os.urandom(200 * KIB + 1), os.urandom(77), os.urandom(150 * KIB)]
    urls = [partial(server, sid, p) for p in pieces]
    h = httpx.head(urls[0], headers=TUS)
    assert h.headers["Upload-Concat"] == "partial"
    assert stored_files(server, sid) == {}, "a partial upload is never a file of the volume"
    assert session_files(server, sid) == [], "nor of the session's file list"
    tus_upload(server.url, sid, "other.csv", b"x\n")
    r = httpx.post(f"{server.url}/api/sessions/{sid}/run")
    assert is_problem(r, 409), "no run while parts of a parallel upload wait for their final"
    assert "parallel upload" in r.json()["detail"]
    # the final lists the partials in order, as absolute URLs like tus-js-client sends them
    r = httpx.post(
        files_url(server, sid),
        headers={
            **TUS,
            "Upload-Concat": "final;" + " ".join(urls),
            "Upload-Metadata": metadata(relativePath="big/joined.bin"),
        },
    )
    assert r.status_code == 201, r.text
    final = server.url + r.headers["Location"]
    assert stored_files(server, sid) == {"big/joined.bin": b"".join(pieces), "other.csv": b"x\n"}
    h = httpx.head(final, headers=TUS)
    assert h.headers["Upload-Offset"] == h.headers["Upload-Length"] == str(sum(map(len, pieces)))
    assert h.headers["Upload-Concat"].startswith("final;")
    assert [f["path"] for f in session_files(server, sid)] == ["other.csv", "big/joined.bin"]
    assert all(httpx.head(u, headers=TUS).status_code == 404 for u in urls), "partials removed"
    assert [n for n in staged(server, sid) if n.endswith(".part")] == []
    assert is_problem(patch(final, b"x", 0), 403), "a final upload takes no PATCH"


def test_a_final_of_unfinished_or_foreign_partials_is_refused_and_stores_nothing(
    shared_server: LiveServer,
) -> None:
    server = shared_server
    sid = create_session(server.url)
    done = partial(server, sid, b"done")
    r = httpx.post(
        files_url(server, sid),
        headers={**TUS, "Upload-Concat": "partial", "Upload-Length": "10"},
    )
    unfinished = server.url + r.headers["Location"]
    assert patch(unfinished, b"12", 0).status_code == 204
    plain = server.url + tus_create(server.url, sid, "plain.bin", 3).headers["Location"]
    other_sid = create_session(server.url)
    foreign = partial(server, other_sid, b"other")
    for urls, words in (
        ([done, unfinished], "not complete yet"),
        ([done, plain], "not created with Upload-Concat: partial"),
        ([done, foreign], "not an upload URL of this session"),
        ([done, done], "twice"),
    ):
        before = staged(server, sid)
        r = httpx.post(
            files_url(server, sid),
            headers={
                **TUS,
                "Upload-Concat": "final;" + " ".join(urls),
                "Upload-Metadata": metadata(filename="joined.bin"),
            },
        )
        assert is_problem(r, 400), r.text
        assert words in r.json()["detail"]
        assert staged(server, sid) == before
    assert stored_files(server, sid) == {}
    assert [f["path"] for f in session_files(server, sid)] == ["plain.bin"]


class CountingWriter(FileWriter):
    """The real writer, counting the bytes that pass through Python's ``write``."""

    def __init__(self) -> None:
        self.written = 0
        self.copies = 0

    def write(self, fd: int, data: bytes | memoryview) -> int:
        n = super().write(fd, data)
        self.written += n
        return n

    def copy(self, src: int, dst: int, count: int) -> None:
        self.copies += 1
        super().copy(src, dst, count)


@pytest.fixture
def counted(tmp_path: Path) -> Iterator[tuple[InProcessServer, CountingWriter]]:
    writer = CountingWriter()
    app = create_app(Settings(data_dir=tmp_path / "data"), writer=writer)
    with InProcessServer(app, tmp_path / "data") as server:
        yield server, writer


def test_the_final_upload_is_assembled_in_the_kernel(counted) -> None:
    server, writer = counted
    sid = create_session(server.url)
    pieces = [os.urandom(1024 * KIB), os.urandom(512 * KIB + 9)]
    urls = [partial(server, sid, p) for p in pieces]
    assert writer.written == sum(map(len, pieces))
    r = httpx.post(
        files_url(server, sid),
        headers={
            **TUS,
            "Upload-Concat": "final;" + " ".join(urls),
            "Upload-Metadata": metadata(filename="k.bin"),
        },
        timeout=30,
    )
    assert r.status_code == 201, r.text
    assert writer.written == sum(map(len, pieces)), "no byte of the final went through Python"
    assert writer.copies == 2
    assert stored_files(server, sid) == {"k.bin": b"".join(pieces)}


# -- the real tus-js-client --------------------------------------------------------------------


def node_ready() -> None:
    if shutil.which("node") is None or not (JS / "node_modules" / "tus-js-client").is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail("node or tests/js/node_modules missing: `make node-deps` installs them")
        pytest.skip("node and tests/js/node_modules needed (make node-deps)")


def tus_js(kind: str, endpoint: str, file: Path, storage: Path | None = None) -> dict[str, Any]:
    node_ready()
    args = ["node", "tus_cases.mjs", kind, endpoint, str(file)]
    if storage is not None:
        args.append(str(storage))
    out = subprocess.run(args, cwd=JS, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip(), f"tus-js-client ended without a result: {out.stderr}"
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def random_file(folder: Path, name: str, size: int) -> bytes:
    data = os.urandom(size)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)
    return data


def test_tus_js_client_override_patch_method(shared_server: LiveServer, tmp_path: Path) -> None:
    server = shared_server
    sid = create_session(server.url)
    data = random_file(tmp_path, "over.bin", 200 * KIB + 5)
    result = tus_js("override", files_url(server, sid), tmp_path / "over.bin")
    methods = {r["method"] for r in result["requests"]}
    assert methods == {"POST"}, "every request a POST: no PATCH reached the server"
    assert [r["override"] for r in result["requests"][1:]] == ["PATCH"] * 4
    assert sha(stored_files(server, sid)["over.bin"]) == sha(data)


def test_tus_js_client_upload_length_deferred(shared_server: LiveServer, tmp_path: Path) -> None:
    server = shared_server
    sid = create_session(server.url)
    data = random_file(tmp_path, "stream.bin", 300 * KIB + 11)
    result = tus_js("deferred", files_url(server, sid), tmp_path / "stream.bin")
    creation, *patches = result["requests"]
    assert creation["defer"] == "1" and creation["length"] is None
    assert patches[-1]["length"] == str(len(data)), "the length came with a later PATCH"
    assert all(p["length"] is None for p in patches[:-1])
    assert sha(stored_files(server, sid)["stream.bin"]) == sha(data)


def test_tus_js_client_parallel_uploads(shared_server: LiveServer, tmp_path: Path) -> None:
    server = shared_server
    sid = create_session(server.url)
    data = random_file(tmp_path, "par.bin", 500 * KIB + 7)
    result = tus_js("parallel", files_url(server, sid), tmp_path / "par.bin")
    concat = [r["concat"] for r in result["requests"] if r["method"] == "POST"]
    assert concat.count("partial") == 3
    assert [c for c in concat if c and c.startswith("final;")], concat
    assert stored_files(server, sid) == {"par.bin": data}
    assert [f["path"] for f in session_files(server, sid)] == ["par.bin"]
    assert [n for n in staged(server, sid) if n.endswith(".part")] == [], "partials removed"


def test_tus_js_client_resumes_an_aborted_upload_from_its_fingerprint(
    shared_server: LiveServer, tmp_path: Path
) -> None:
    server = shared_server
    sid = create_session(server.url)
    data = random_file(tmp_path, "resume.bin", 400 * KIB + 13)
    storage = tmp_path / "tus-urls.json"
    first = tus_js("abort", files_url(server, sid), tmp_path / "resume.bin", storage)
    assert first["aborted"] and first["sent"] == 64 * KIB
    assert "resume.bin" not in stored_files(server, sid)
    assert "tus::" in storage.read_text(), "the fingerprint was stored"
    second = tus_js("resume", files_url(server, sid), tmp_path / "resume.bin", storage)
    assert second["url"] == first["url"], "the same upload, found by its fingerprint"
    head, *rest = second["requests"]
    assert head["method"] == "HEAD", "asks the offset first, creates nothing"
    assert not [r for r in rest if r["method"] == "POST"]
    assert rest[0]["offset"] == str(64 * KIB), "continues from the bytes already sent"
    assert sha(stored_files(server, sid)["resume.bin"]) == sha(data)
    assert "tus::" not in storage.read_text(), "removed from the storage on success"


def test_tus_js_client_metadata_relative_path_null(
    shared_server: LiveServer, tmp_path: Path
) -> None:
    server = shared_server
    sid = create_session(server.url)
    one = random_file(tmp_path / "x", "one.csv", 70 * KIB)
    two = random_file(tmp_path / "y", "two.csv", 3)
    for file in (tmp_path / "x" / "one.csv", tmp_path / "y" / "two.csv"):
        tus_js("nullpath", files_url(server, sid), file)
    stored = stored_files(server, sid)
    assert {k: sha(v) for k, v in stored.items()} == {"one.csv": sha(one), "two.csv": sha(two)}


# -- the access log --------------------------------------------------------------------------


def test_the_access_log_has_one_line_per_upload_not_one_per_patch(tmp_path: Path) -> None:
    server = LiveServer(tmp_path / "data", log_level="info").start()
    try:
        sid = create_session(server.url)
        body = os.urandom(64 * KIB)
        tus_upload(server.url, sid, "many/chunks.bin", body, chunk=1 * KIB)  # 64 PATCHes
        url = server.url + tus_create(server.url, sid, "dropped.bin", 10).headers["Location"]
        for _ in range(3):
            assert httpx.head(url, headers=TUS).status_code == 200
        assert httpx.delete(url, headers=TUS).status_code == 204
        r = patch(url, b"x", 0)
        assert r.status_code == 404  # refused requests stay in the access log
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "upload terminated" not in server.log():
            time.sleep(0.05)
        log = server.log()
    finally:
        server.stop()
    lines = log.splitlines()
    assert not [x for x in lines if '"PATCH ' in x and " 204" in x], "no line per PATCH"
    assert not [x for x in lines if '"HEAD ' in x and " 200" in x], "no line per HEAD"
    created = [x for x in lines if "upload created" in x]
    completed = [x for x in lines if "upload completed" in x]
    terminated = [x for x in lines if "upload terminated" in x]
    assert len(created) == 2 and len(completed) == 1 and len(terminated) == 1, log
    assert "'many/chunks.bin'" in completed[0] and f"{len(body)}/{len(body)} bytes" in completed[0]
    assert " s" in completed[0].split(" in ")[-1], "with the time it took"
    assert "'dropped.bin'" in terminated[0] and "0/10 bytes" in terminated[0]
    assert [x for x in lines if '"PATCH ' in x and " 404" in x], "a refused PATCH is logged"
    assert [x for x in lines if '"POST /api/sessions HTTP' in x], "other requests are logged"
    upload_lines = [x for x in lines if "/files" in x or "upload " in x]
    assert len(upload_lines) <= 5, upload_lines


def test_an_expired_upload_is_logged_once(tmp_path: Path) -> None:
    server = LiveServer(tmp_path / "data", {"DASHBOARD_UPLOAD_EXPIRY": "0.2"}, log_level="info")
    server.start()
    try:
        sid = create_session(server.url)
        url = server.url + tus_create(server.url, sid, "late.bin", 10).headers["Location"]
        assert patch(url, b"abc", 0).status_code == 204
        time.sleep(0.3)  # past the 0.2 s expiry: the next request finds it expired
        assert httpx.head(url, headers=TUS).status_code == 410
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "upload expired" not in server.log():
            time.sleep(0.05)
        log = server.log()
    finally:
        server.stop()
    expired = [x for x in log.splitlines() if "upload expired" in x]
    assert len(expired) == 1 and "'late.bin'" in expired[0] and "3/10 bytes" in expired[0], log


def test_method_override_requests_are_quiet_too(tmp_path: Path) -> None:
    server = LiveServer(tmp_path / "data", log_level="info").start()
    try:
        sid = create_session(server.url)
        url = server.url + tus_create(server.url, sid, "o.bin", 4).headers["Location"]
        for i in range(4):
            r = httpx.post(
                url,
                content=b"z",
                headers={
                    **TUS,
                    **OCTET,
                    "X-HTTP-Method-Override": "PATCH",
                    "Upload-Offset": str(i),
                },
            )
            assert r.status_code == 204
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "upload completed" not in server.log():
            time.sleep(0.05)
        log = server.log()
    finally:
        server.stop()
    assert not [x for x in log.splitlines() if "/files/" in x], log
    assert len([x for x in log.splitlines() if "upload completed" in x]) == 1


def test_checksum_extension_still_works_with_a_deferred_length(shared_server: LiveServer) -> None:
    server = shared_server
    sid = create_session(server.url)
    r = httpx.post(
        files_url(server, sid),
        headers={**TUS, "Upload-Defer-Length": "1", "Upload-Metadata": metadata(filename="c.bin")},
    )
    url = server.url + r.headers["Location"]
    body = b"checked bytes"
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    r = patch(url, body, 0, **{"Upload-Checksum": f"sha256 {digest}", "Upload-Length": "13"})
    assert r.status_code == 204, r.text
    assert stored_files(server, sid) == {"c.bin": body}


def test_an_upload_killed_between_its_last_byte_and_publishing_is_finished_by_head(
    server: LiveServer,
) -> None:
    """The server was SIGKILLed after the last byte reached the .part file but before the
    file was published (the state is made by writing the bytes while it is down): a tus
    client that HEADs sees offset == length and sends nothing more, so HEAD finishes it."""
    sid = create_session(server.url)
    body = os.urandom(100 * KIB)
    url = (
        server.url + tus_create(server.url, sid, "late/publish.bin", len(body)).headers["Location"]
    )
    path = url[len(server.url) :]
    assert patch(url, body[:1000], 0).status_code == 204
    server.kill()
    part = server.data_dir / "staging" / sid / (path.rsplit("/", 1)[1] + ".part")
    with open(part, "ab") as f:
        f.write(body[1000:])
    server.restart()
    h = httpx.head(server.url + path, headers=TUS)
    assert h.status_code == 200 and h.headers["Upload-Offset"] == str(len(body))
    assert stored_files(server, sid) == {"late/publish.bin": body}
    assert [f["done"] for f in session_files(server, sid)] == [True]


def test_a_legacy_form_whose_starred_filename_is_empty_chose_no_file(
    shared_server: LiveServer,
) -> None:
    """``filename*=UTF-8''`` is an empty name (found by test_isolation's property): no file
    was chosen, so the form is refused (422) rather than stored under the name ``UTF-8''``."""
    boundary = "b0undary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="experiment_context"\r\n\r\n'
        "empty name\r\n"
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename*=UTF-8''\r\n"
        "Content-Type: application/octet-stream\r\n\r\nabc\r\n"
        f"--{boundary}--\r\n"
    ).encode()
    r = httpx.post(
        f"{shared_server.url}/upload",
        content=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert is_problem(r, 422), r.text

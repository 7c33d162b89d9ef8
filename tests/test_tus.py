"""tus 1.0.0 conformance against a real server process, and real tus clients."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.feeds import TUS, create_session, metadata, tus_create, wait_stored

OCTET = {"Content-Type": "application/offset+octet-stream"}
ROOT = Path(__file__).resolve().parent.parent


def head(url: str) -> httpx.Response:
    return httpx.head(url, headers=TUS, timeout=10)


def offset_of(url: str) -> int:
    return int(head(url).headers["Upload-Offset"])


def patch(url: str, body: bytes, offset: int, **headers: str) -> httpx.Response:
    return httpx.patch(
        url,
        content=body,
        headers={**TUS, **OCTET, "Upload-Offset": str(offset), **headers},
        timeout=30,
    )


def new_upload(server, sid: str, rel: str, length: int) -> str:
    r = tus_create(server.url, sid, rel, length)
    assert r.status_code == 201, r.text
    assert r.headers["Tus-Resumable"] == "1.0.0"
    return server.url + r.headers["Location"]


def data_dir(server, sid: str) -> Path:
    wait_stored(server.url, sid)  # a complete file is published in the background
    return server.data_dir / "volumes" / f"dataset-volume-{sid}" / "data"


def part_file(server, sid: str, url: str) -> Path:
    return server.data_dir / "staging" / sid / (url.rsplit("/", 1)[1] + ".part")


def is_problem(r: httpx.Response, status: int) -> bool:
    return r.status_code == status and r.headers["content-type"] == "application/problem+json"


def test_discovery_advertises_version_extensions_and_limits(shared_server) -> None:
    server = shared_server
    sid = create_session(server.url)
    r = httpx.options(f"{server.url}/api/sessions/{sid}/files")
    assert r.status_code == 204
    assert r.headers["Tus-Version"] == "1.0.0"
    ext = set(r.headers["Tus-Extension"].split(","))
    assert ext >= {"creation", "creation-with-upload", "termination", "checksum", "expiration"}
    assert int(r.headers["Tus-Max-Size"]) > 0
    assert {"sha1", "sha256"} <= set(r.headers["Tus-Checksum-Algorithm"].split(","))


def test_head_returns_offset_length_and_every_metadata_key_verbatim(shared_server) -> None:
    server = shared_server
    sid = create_session(server.url)
    meta = metadata(relativePath="d/x.bin", filename="x.bin", anyKey="ünïcode ✓") + ",flag"
    r = httpx.post(
        f"{server.url}/api/sessions/{sid}/files",
        headers={**TUS, "Upload-Length": "10", "Upload-Metadata": meta},
    )
    assert r.status_code == 201
    assert "Upload-Expires" in r.headers
    h = head(server.url + r.headers["Location"])
    assert h.status_code == 200
    assert h.headers["Upload-Offset"] == "0" and h.headers["Upload-Length"] == "10"
    assert h.headers["Upload-Metadata"] == meta
    assert h.headers["Cache-Control"] == "no-store"


def test_chunks_append_and_the_file_moves_into_the_volume_when_complete(shared_server) -> None:
    server = shared_server
    sid = create_session(server.url)
    payload = os.urandom(300_000)
    url = new_upload(server, sid, "deep/er/file.bin", len(payload))
    for start in range(0, len(payload), 100_000):
        r = patch(url, payload[start : start + 100_000], start)
        assert r.status_code == 204 and int(r.headers["Upload-Offset"]) == start + 100_000
        if start + 100_000 < len(payload):
            assert not (data_dir(server, sid) / "deep/er/file.bin").exists()
            assert part_file(server, sid, url).stat().st_size == start + 100_000
    assert (data_dir(server, sid) / "deep/er/file.bin").read_bytes() == payload
    view = httpx.get(f"{server.url}/api/sessions/{sid}").json()
    assert [{k: f[k] for k in ("path", "length", "offset", "done")} for f in view["files"]] == [
        {"path": "deep/er/file.bin", "length": 300_000, "offset": 300_000, "done": True}
    ]
    assert view["files"][0]["url"] == urlsplit(url).path


def test_creation_with_upload(shared_server) -> None:
    server = shared_server
    sid = create_session(server.url)
    r = httpx.post(
        f"{server.url}/api/sessions/{sid}/files",
        content=b"hello",
        headers={
            **TUS,
            **OCTET,
            "Upload-Length": "8",
            "Upload-Metadata": metadata(filename="h.txt"),
        },
    )
    assert r.status_code == 201 and r.headers["Upload-Offset"] == "5"
    url = server.url + r.headers["Location"]
    assert patch(url, b"!!!", 5).status_code == 204
    assert (data_dir(server, sid) / "h.txt").read_bytes() == b"hello!!!"


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Tus-Resumable": "0.2.2"}, 412),
        ({"Tus-Resumable": ""}, 412),
        ({"Content-Type": "application/octet-stream"}, 415),
        ({"Upload-Offset": "3"}, 409),
        ({"Upload-Offset": "abc"}, 400),
        (
            {"Upload-Checksum": "sha1 " + base64.b64encode(hashlib.sha1(b"x").digest()).decode()},
            460,
        ),
        ({"Upload-Checksum": "crc32 AAAA"}, 400),
    ],
)
def test_patch_refusals_append_nothing(shared_server, headers: dict[str, str], status: int) -> None:
    server = shared_server
    sid = create_session(server.url)
    url = new_upload(server, sid, "a.bin", 10)
    assert patch(url, b"12", 0).status_code == 204
    base = {**TUS, **OCTET, "Upload-Offset": "2"}
    base.update(headers)
    r = httpx.patch(url, content=b"3456", headers={k: v for k, v in base.items() if v != ""})
    assert is_problem(r, status), r.text
    assert offset_of(url) == 2
    assert part_file(server, sid, url).read_bytes() == b"12"


def test_past_upload_length_is_413_and_appends_nothing(shared_server) -> None:
    server = shared_server
    sid = create_session(server.url)
    url = new_upload(server, sid, "a.bin", 4)
    assert is_problem(patch(url, b"12345", 0), 413)
    assert offset_of(url) == 0
    r = tus_create(server.url, sid, "huge.bin", 10**18)
    assert is_problem(r, 413)


def test_checksums_sha1_and_sha256_accept_good_chunks(shared_server) -> None:
    server = shared_server
    sid = create_session(server.url)
    url = new_upload(server, sid, "c.bin", 8)
    for i, algo in enumerate(("sha1", "sha256")):
        chunk = b"abcd" if i == 0 else b"efgh"
        digest = base64.b64encode(hashlib.new(algo, chunk).digest()).decode()
        assert (
            patch(url, chunk, i * 4, **{"Upload-Checksum": f"{algo} {digest}"}).status_code == 204
        )
    assert (data_dir(server, sid) / "c.bin").read_bytes() == b"abcdefgh"


def test_unknown_upload_other_session_and_malformed_length(shared_server) -> None:
    server = shared_server
    a = create_session(server.url)
    b = create_session(server.url)
    url = new_upload(server, a, "a.bin", 4)
    upload_id = url.rsplit("/", 1)[1]
    other = f"{server.url}/api/sessions/{b}/files/{upload_id}"
    assert is_problem(httpx.head(other, headers=TUS), 404) or head(other).status_code == 404
    assert is_problem(patch(other, b"1", 0), 404)
    assert is_problem(patch(f"{server.url}/api/sessions/{a}/files/{'f' * 32}", b"1", 0), 404)
    r = httpx.post(
        f"{server.url}/api/sessions/{a}/files",
        headers={**TUS, "Upload-Length": "-5", "Upload-Metadata": metadata(filename="n")},
    )
    assert r.status_code in (400, 422)
    r = httpx.post(f"{server.url}/api/sessions/{a}/files", headers={"Upload-Length": "1"})
    assert is_problem(r, 412)
    assert offset_of(url) == 0


def test_same_relative_path_twice_is_409(shared_server) -> None:
    server = shared_server
    sid = create_session(server.url)
    new_upload(server, sid, "same/name.csv", 3)
    assert is_problem(tus_create(server.url, sid, "same/name.csv", 3), 409)
    assert is_problem(tus_create(server.url, sid, "same\\name.csv", 3), 409)


@pytest.mark.parametrize(
    "bad",
    ["../escape.csv", "/etc/passwd", "a/../../b.csv", "C:\\win.csv", "x/\x00y", "a//b", "a/./b"],
)
def test_path_attacks_are_422_and_write_nothing(shared_server, bad: str) -> None:
    server = shared_server
    sid = create_session(server.url)
    r = tus_create(server.url, sid, bad, 3)
    assert is_problem(r, 422)
    assert list(data_dir(server, sid).rglob("*")) == []
    assert not (server.data_dir / "escape.csv").exists()


def test_termination_removes_the_partial_upload(shared_server) -> None:
    server = shared_server
    sid = create_session(server.url)
    url = new_upload(server, sid, "t.bin", 10)
    patch(url, b"123", 0)
    assert httpx.delete(url, headers=TUS).status_code == 204
    assert head(url).status_code == 404
    assert not part_file(server, sid, url).exists()
    # the path is free again
    assert tus_create(server.url, sid, "t.bin", 3).status_code == 201


def test_expired_upload_is_410(server_factory) -> None:
    live = server_factory(DASHBOARD_UPLOAD_EXPIRY="0.5")
    sid = create_session(live.url)
    url = new_upload(live, sid, "e.bin", 10)
    deadline = time.monotonic() + 10
    while (r := patch(url, b"1", 0)).status_code == 204 or r.status_code != 410:
        assert time.monotonic() < deadline, r.text
        time.sleep(0.1)
    assert is_problem(r, 410)
    assert head(url).status_code == 404  # swept


def test_run_refused_while_an_upload_is_unfinished(shared_server) -> None:
    server = shared_server
    sid = create_session(server.url)
    url = new_upload(server, sid, "u.bin", 4)
    patch(url, b"12", 0)
    r = httpx.post(f"{server.url}/api/sessions/{sid}/run")
    assert is_problem(r, 409) and "u.bin" in r.json()["detail"]
    patch(url, b"34", 2)
    wait_stored(server.url, sid)  # until then the run is 409 too ("still being stored")
    assert httpx.post(f"{server.url}/api/sessions/{sid}/run").status_code == 202
    assert is_problem(httpx.post(f"{server.url}/api/sessions/{sid}/run"), 409)
    assert is_problem(tus_create(server.url, sid, "late.bin", 1), 409)


class RawPatch:
    """A PATCH sent by hand over a socket, so a test can stop mid-body."""

    def __init__(self, url: str, offset: int, length: int) -> None:
        parts = urlsplit(url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
        head_lines = [
            f"PATCH {parts.path} HTTP/1.1",
            f"Host: {parts.netloc}",
            "Tus-Resumable: 1.0.0",
            "Content-Type: application/offset+octet-stream",
            f"Upload-Offset: {offset}",
            f"Content-Length: {length}",
            "",
            "",
        ]
        self.sock.sendall("\r\n".join(head_lines).encode())

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def drop(self) -> None:
        self.sock.setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
        )
        self.sock.close()


def wait_for(predicate, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_dropped_connection_keeps_received_bytes_and_resume_is_byte_exact(shared_server) -> None:
    server = shared_server
    sid = create_session(server.url)
    payload = os.urandom(2_000_000)
    url = new_upload(server, sid, "r.bin", len(payload))
    raw = RawPatch(url, 0, len(payload))
    raw.send(payload[:700_000])
    part = part_file(server, sid, url)
    wait_for(lambda: part.stat().st_size == 700_000)
    raw.drop()
    wait_for(lambda: head(url).status_code == 200 and offset_of(url) == 700_000)
    assert patch(url, payload[700_000:], 700_000).status_code == 204
    got = (data_dir(server, sid) / "r.bin").read_bytes()
    assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()


def test_sigkill_mid_patch_then_restart_resumes_byte_exact(server) -> None:
    sid = create_session(server.url)
    payload = os.urandom(3_000_000)
    url = new_upload(server, sid, "k/ill.bin", len(payload))
    path = urlsplit(url).path
    raw = RawPatch(url, 0, len(payload))
    raw.send(payload[:1_234_567])
    part = part_file(server, sid, url)
    wait_for(lambda: part.stat().st_size == 1_234_567)
    server.kill()
    raw.drop()
    server.restart()
    url = server.url + path
    offset = offset_of(url)
    assert offset == 1_234_567
    assert patch(url, payload[offset:], offset).status_code == 204
    got = (data_dir(server, sid) / "k/ill.bin").read_bytes()
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(payload).hexdigest()


def test_second_patch_on_a_busy_upload_is_answered_at_once(shared_server) -> None:
    server = shared_server
    sid = create_session(server.url)
    url = new_upload(server, sid, "busy.bin", 1_000_000)
    raw = RawPatch(url, 0, 1_000_000)
    raw.send(b"x" * 1000)
    wait_for(lambda: part_file(server, sid, url).stat().st_size == 1000)
    started = time.monotonic()
    second = patch(url, b"y" * 10, 1000)
    answered_in = time.monotonic() - started
    assert second.status_code in (409, 423)
    assert answered_in < 5  # a stall would hit the 30 s client timeout
    assert httpx.get(server.url + "/healthz", timeout=5).status_code == 200
    raw.drop()


def test_tuspy_uploads_a_nested_folder(shared_server, tmp_path: Path) -> None:
    server = shared_server
    from tusclient import client as tus_client

    folder = tmp_path / "nested"
    files = {"a.csv": b"a,b\n1,2\n", "x/b.csv": os.urandom(50_000), "x/y/z.bin": os.urandom(12345)}
    for rel, content in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(content)
    sid = create_session(server.url)
    tc = tus_client.TusClient(f"{server.url}/api/sessions/{sid}/files")
    for rel in files:
        with open(folder / rel, "rb") as stream:  # tuspy leaks the handle it opens itself
            uploader = tc.uploader(
                file_stream=stream, chunk_size=16_384, metadata={"relativePath": rel}
            )
            uploader.upload()
    for rel, content in files.items():
        assert (data_dir(server, sid) / rel).read_bytes() == content


@pytest.mark.skipif(
    shutil.which("node") is None and os.environ.get("CI") != "true", reason="needs node"
)
def test_tus_js_client_uploads_a_nested_folder(shared_server, tmp_path: Path) -> None:
    server = shared_server
    js = ROOT / "tests" / "js"
    if not (js / "node_modules" / "tus-js-client").is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail("tests/js/node_modules missing: `make node-deps` should install it")
        pytest.skip("tus-js-client not installed (make node-deps)")
    folder = tmp_path / "nested"
    files = {"top.csv": b"a\n1\n", "d1/mid.csv": os.urandom(200_000), "d1/d2/low.bin": b"z" * 7}
    for rel, content in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(content)
    sid = create_session(server.url)
    out = subprocess.run(
        ["node", "upload_folder.mjs", f"{server.url}/api/sessions/{sid}/files", str(folder)],
        cwd=js,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    reported = {json.loads(line)["path"] for line in out.stdout.splitlines()}
    assert reported == set(files)
    for rel, content in files.items():
        assert (data_dir(server, sid) / rel).read_bytes() == content


def test_healthz_stays_responsive_during_a_large_upload(shared_server) -> None:
    server = shared_server
    sid = create_session(server.url)
    size = 64 * 1024 * 1024
    url = new_upload(server, sid, "big.bin", size)
    block = os.urandom(1024 * 1024)
    latencies: list[float] = []

    def poll() -> None:
        with httpx.Client(timeout=10) as c:
            while len(latencies) < 50:
                t = time.monotonic()
                assert c.get(server.url + "/healthz").status_code == 200
                latencies.append(time.monotonic() - t)

    t = threading.Thread(target=poll)
    t.start()
    r = httpx.patch(
        url,
        content=(block for _ in range(64)),
        headers={**TUS, **OCTET, "Upload-Offset": "0", "Content-Length": str(size)},
        timeout=60,
    )
    t.join(30)
    assert r.status_code == 204
    assert len(latencies) == 50


def test_zero_length_upload_is_complete_at_creation(shared_server) -> None:
    server = shared_server
    sid = create_session(server.url)
    r = tus_create(server.url, sid, "empty.txt", 0)
    assert r.status_code == 201 and r.headers["Upload-Offset"] == "0"
    assert (data_dir(server, sid) / "empty.txt").read_bytes() == b""
    assert httpx.post(f"{server.url}/api/sessions/{sid}/run").status_code == 202


def test_lost_creation_response_can_be_recovered_from_the_409(shared_server) -> None:
    server = shared_server
    sid = create_session(server.url)
    first = tus_create(server.url, sid, "again.bin", 5)
    retry = tus_create(server.url, sid, "again.bin", 5)
    assert retry.status_code == 409 and retry.headers["Location"] == first.headers["Location"]


def test_cors_is_off_by_default(shared_server) -> None:
    r = httpx.options(
        f"{shared_server.url}/api/sessions",
        headers={"Origin": "http://other.test", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in r.headers


def test_cors_origins_expose_the_tus_headers(server_factory) -> None:
    live = server_factory(DASHBOARD_CORS_ORIGINS="http://lab.test")
    origin = {"Origin": "http://lab.test"}
    pre = httpx.options(
        f"{live.url}/api/sessions",
        headers={
            **origin,
            "Access-Control-Request-Method": "PATCH",
            "Access-Control-Request-Headers": "tus-resumable,upload-offset,content-type",
        },
    )
    assert pre.status_code == 200
    assert pre.headers["access-control-allow-origin"] == "http://lab.test"
    sid = create_session(live.url)
    url = new_upload(live, sid, "c.bin", 3)
    h = httpx.head(url, headers={**TUS, **origin})
    exposed = {v.strip().lower() for v in h.headers["access-control-expose-headers"].split(",")}
    assert {"upload-offset", "upload-length", "upload-metadata", "location"} <= exposed
    other = httpx.head(url, headers={**TUS, "Origin": "http://evil.test"})
    assert "access-control-allow-origin" not in other.headers

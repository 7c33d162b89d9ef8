"""Storage faults injected at the storage seam (``FileWriter``): 507, offsets, resume, and
when the flushes happen in each sync mode (``complete``, the default, and ``chunk``).

The app runs in-process under a real uvicorn on a loopback port (a thread), built with
``create_app(writer=FaultyWriter())``, so the fault sits exactly where bytes meet the disk.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import itertools
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from dashboard.config import Settings
from dashboard.uploads import FileWriter
from tests.feeds import TUS, create_session, tus_create, wait_stored
from tests.servers import InProcessServer

OCTET = {"Content-Type": "application/offset+octet-stream"}
PAYLOAD = os.urandom(1024 * 1024 + 17)
START_TIMEOUT_S = 20.0


class FaultyWriter(FileWriter):
    """Writes until ``budget`` bytes are spent, then fails with ``error`` (ENOSPC/EIO)."""

    def __init__(self) -> None:
        self.budget: int | None = None
        self.error = errno.ENOSPC
        self.fail_fsync = False
        self.failing_syncs = 0  # how many of the next syncs fail, then the disk recovers
        self.syncs = 0
        self.on_fsync: Callable[[int], None] | None = None  # sees each flush before it runs
        self.lock = threading.Lock()

    def write(self, fd: int, data: bytes | memoryview) -> int:
        with self.lock:
            if self.budget is not None:
                if self.budget <= 0:
                    raise OSError(self.error, os.strerror(self.error))
                data = data[: self.budget]
                self.budget -= len(data)
        return super().write(fd, data)

    def fsync(self, fd: int) -> None:
        with self.lock:
            self.syncs += 1
            failing = self.fail_fsync or self.failing_syncs > 0
            self.failing_syncs = max(0, self.failing_syncs - 1)
        if self.on_fsync is not None:
            self.on_fsync(fd)
        if failing:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        super().fsync(fd)

    def heal(self) -> None:
        with self.lock:
            self.budget = None
        self.fail_fsync = False


def faulty_server(tmp_path: Path, sync: str) -> Iterator[tuple[InProcessServer, FaultyWriter]]:
    writer = FaultyWriter()
    data_dir = tmp_path / "data"
    app = create_app(Settings(data_dir=data_dir, upload_sync=sync), writer=writer)
    with InProcessServer(app, data_dir) as server:
        yield server, writer


@pytest.fixture(params=["complete", "chunk"])
def faulty_any(tmp_path: Path, request) -> Iterator[tuple[InProcessServer, FaultyWriter]]:
    yield from faulty_server(tmp_path, request.param)


@pytest.fixture
def faulty(tmp_path: Path) -> Iterator[tuple[InProcessServer, FaultyWriter]]:
    yield from faulty_server(tmp_path, "complete")


@pytest.fixture
def faulty_chunk(tmp_path: Path) -> Iterator[tuple[InProcessServer, FaultyWriter]]:
    yield from faulty_server(tmp_path, "chunk")


def head_offset(url: str) -> int:
    r = httpx.head(url, headers=TUS, timeout=10)
    assert r.status_code == 200
    return int(r.headers["Upload-Offset"])


def data_files(server: InProcessServer, sid: str) -> list[Path]:
    wait_stored(server.url, sid)  # a complete file is published in the background
    return volume_files(server, sid)


def volume_files(server: InProcessServer, sid: str) -> list[Path]:
    """What the session's volume holds right now (no waiting)."""
    data = server.data_dir / "volumes" / f"dataset-volume-{sid}" / "data"
    return [p for p in data.rglob("*") if p.is_file()]


def assert_507(r: httpx.Response) -> None:
    assert r.status_code == 507, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert {"type", "title", "status", "detail"} <= set(problem) and problem["status"] == 507
    assert "Traceback" not in problem["detail"]


@pytest.mark.parametrize("error", [errno.ENOSPC, errno.EIO])
def test_a_failing_disk_is_507_keeps_the_written_offset_and_resumes(faulty_any, error) -> None:
    server, writer = faulty_any
    sid = create_session(server.url)
    r = tus_create(server.url, sid, "big.bin", len(PAYLOAD))
    url = server.url + r.headers["Location"]
    writer.budget, writer.error = 300_000, error
    r = httpx.patch(url, content=PAYLOAD, headers={**TUS, **OCTET, "Upload-Offset": "0"})
    assert_507(r)
    offset = head_offset(url)
    part = server.data_dir / "staging" / sid / (url.rsplit("/", 1)[1] + ".part")
    assert offset == part.stat().st_size == 300_000, "HEAD reports what is on disk, no more"
    assert part.read_bytes() == PAYLOAD[:offset]
    assert data_files(server, sid) == [], "nothing half-written is published"
    # still failing: the retry is refused the same way and loses nothing
    r = httpx.patch(
        url, content=PAYLOAD[offset:], headers={**TUS, **OCTET, "Upload-Offset": str(offset)}
    )
    assert_507(r)
    assert head_offset(url) == offset
    writer.heal()
    r = httpx.patch(
        url, content=PAYLOAD[offset:], headers={**TUS, **OCTET, "Upload-Offset": str(offset)}
    )
    assert r.status_code == 204, r.text
    assert int(r.headers["Upload-Offset"]) == len(PAYLOAD)
    (stored,) = data_files(server, sid)
    assert stored.read_bytes() == PAYLOAD


def test_a_failing_disk_under_a_checksummed_chunk_appends_nothing(faulty_any) -> None:
    server, writer = faulty_any
    sid = create_session(server.url)
    url = server.url + tus_create(server.url, sid, "sum.bin", len(PAYLOAD)).headers["Location"]
    first = PAYLOAD[:500_000]
    digest = base64.b64encode(hashlib.sha256(first).digest()).decode()
    checksum = {"Upload-Checksum": f"sha256 {digest}"}
    writer.budget = 200_000
    r = httpx.patch(url, content=first, headers={**TUS, **OCTET, **checksum, "Upload-Offset": "0"})
    assert_507(r)
    assert head_offset(url) == 0, "a verified chunk is appended whole or not at all"
    writer.heal()
    r = httpx.patch(url, content=first, headers={**TUS, **OCTET, **checksum, "Upload-Offset": "0"})
    assert r.status_code == 204 and int(r.headers["Upload-Offset"]) == len(first)
    rest = PAYLOAD[len(first) :]
    r = httpx.patch(url, content=rest, headers={**TUS, **OCTET, "Upload-Offset": str(len(first))})
    assert r.status_code == 204
    (stored,) = data_files(server, sid)
    assert stored.read_bytes() == PAYLOAD


def test_the_complete_file_is_flushed_once_before_it_is_published(faulty) -> None:
    """Default mode: PATCHes are acknowledged once written; one fdatasync, of the whole
    file, runs before the file moves into the volume and before ``done``."""
    server, writer = faulty
    sid = create_session(server.url)
    url = server.url + tus_create(server.url, sid, "once.bin", len(PAYLOAD)).headers["Location"]
    seen: list[tuple[int, list[Path]]] = []
    writer.on_fsync = lambda fd: seen.append((os.fstat(fd).st_size, volume_files(server, sid)))
    thirds = [PAYLOAD[:400_000], PAYLOAD[400_000:800_000], PAYLOAD[800_000:]]
    offset = 0
    for piece in thirds[:2]:
        r = httpx.patch(url, content=piece, headers={**TUS, **OCTET, "Upload-Offset": str(offset)})
        assert r.status_code == 204, r.text
        offset += len(piece)
        assert head_offset(url) == offset
    assert seen == [], "no flush while the file is incomplete"
    r = httpx.patch(url, content=thirds[2], headers={**TUS, **OCTET, "Upload-Offset": str(offset)})
    assert r.status_code == 204, r.text
    assert seen == [(len(PAYLOAD), [])], "one flush of the whole file, before it was published"
    (stored,) = data_files(server, sid)
    assert stored.read_bytes() == PAYLOAD
    files = httpx.get(f"{server.url}/api/sessions/{sid}", timeout=10).json()["files"]
    assert [f["done"] for f in files] == [True]


def test_a_failing_final_flush_is_507_publishes_nothing_and_the_upload_restarts(faulty) -> None:
    server, writer = faulty
    sid = create_session(server.url)
    url = server.url + tus_create(server.url, sid, "f.bin", 10).headers["Location"]
    writer.fail_fsync = True
    r = httpx.patch(url, content=b"01234", headers={**TUS, **OCTET, "Upload-Offset": "0"})
    assert r.status_code == 204, "acknowledged once written: nothing is flushed yet"
    r = httpx.patch(url, content=b"56789", headers={**TUS, **OCTET, "Upload-Offset": "5"})
    assert_507(r)
    assert "starts again from byte 0" in r.json()["detail"]
    assert head_offset(url) == 0, "none of the file is known durable: all taken back"
    assert data_files(server, sid) == []
    writer.heal()
    r = httpx.patch(url, content=b"0123456789", headers={**TUS, **OCTET, "Upload-Offset": "0"})
    assert r.status_code == 204, r.text
    (stored,) = data_files(server, sid)
    assert stored.read_bytes() == b"0123456789"


def test_chunk_mode_flushes_every_patch_before_acknowledging_it(faulty_chunk) -> None:
    server, writer = faulty_chunk
    sid = create_session(server.url)
    url = server.url + tus_create(server.url, sid, "c.bin", len(PAYLOAD)).headers["Location"]
    sizes: list[int] = []
    writer.on_fsync = lambda fd: sizes.append(os.fstat(fd).st_size)
    cuts = [0, 300_000, 700_000, len(PAYLOAD)]
    for a, b in itertools.pairwise(cuts):
        r = httpx.patch(
            url, content=PAYLOAD[a:b], headers={**TUS, **OCTET, "Upload-Offset": str(a)}
        )
        assert r.status_code == 204, r.text
        assert sizes[-1] == b, "the acknowledged offset was flushed first"
    assert sizes == cuts[1:], "one flush per PATCH, none more at completion"
    (stored,) = data_files(server, sid)
    assert stored.read_bytes() == PAYLOAD


def test_chunk_mode_a_failing_flush_takes_the_patch_back(faulty_chunk) -> None:
    server, writer = faulty_chunk
    sid = create_session(server.url)
    url = server.url + tus_create(server.url, sid, "c.bin", 10).headers["Location"]
    r = httpx.patch(url, content=b"012", headers={**TUS, **OCTET, "Upload-Offset": "0"})
    assert r.status_code == 204
    writer.fail_fsync = True
    r = httpx.patch(url, content=b"3456", headers={**TUS, **OCTET, "Upload-Offset": "3"})
    assert_507(r)
    assert head_offset(url) == 3, "the PATCH whose flush failed is taken back, no more"
    writer.heal()
    r = httpx.patch(url, content=b"3456789", headers={**TUS, **OCTET, "Upload-Offset": "3"})
    assert r.status_code == 204, r.text
    (stored,) = data_files(server, sid)
    assert stored.read_bytes() == b"0123456789"


def test_a_failing_disk_under_the_legacy_form_is_507_and_creates_nothing(faulty) -> None:
    server, writer = faulty
    writer.fail_fsync = True
    files = [("files", ("exp/a.csv", PAYLOAD, "text/csv"))]
    r = httpx.post(
        server.url + "/upload", files=files, data={"experiment_context": "disk test"}, timeout=30
    )
    assert_507(r)
    assert "send the form again" in r.json()["detail"]
    assert not list((server.data_dir / "sessions").glob("*.json")), "no session was created"
    volumes = server.data_dir / "volumes"
    assert not volumes.exists() or not any(volumes.iterdir()), "no volume was created"
    writer.heal()
    r = httpx.post(
        server.url + "/upload", files=files, data={"experiment_context": "disk test"}, timeout=30
    )
    assert r.status_code == 202, r.text
    (stored,) = data_files(server, r.json()["session_id"])
    assert stored.read_bytes() == PAYLOAD

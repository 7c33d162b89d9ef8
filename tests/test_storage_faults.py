"""Storage faults injected at the storage seam (``FileWriter``): 507, durable offset, resume.

The app runs in-process under a real uvicorn on a loopback port (a thread), built with
``create_app(writer=FaultyWriter())``, so the fault sits exactly where bytes meet the disk.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from dashboard.config import Settings
from dashboard.uploads import FileWriter
from tests.feeds import TUS, create_session, tus_create
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
        if failing:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        super().fsync(fd)

    def heal(self) -> None:
        with self.lock:
            self.budget = None
        self.fail_fsync = False


@pytest.fixture
def faulty(tmp_path: Path) -> Iterator[tuple[InProcessServer, FaultyWriter]]:
    writer = FaultyWriter()
    data_dir = tmp_path / "data"
    app = create_app(Settings(data_dir=data_dir), writer=writer)
    with InProcessServer(app, data_dir) as server:
        yield server, writer


def head_offset(url: str) -> int:
    r = httpx.head(url, headers=TUS, timeout=10)
    assert r.status_code == 200
    return int(r.headers["Upload-Offset"])


def data_files(server: InProcessServer, sid: str) -> list[Path]:
    data = server.data_dir / "volumes" / f"dataset-volume-{sid}" / "data"
    return [p for p in data.rglob("*") if p.is_file()]


def assert_507(r: httpx.Response) -> None:
    assert r.status_code == 507, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert {"type", "title", "status", "detail"} <= set(problem) and problem["status"] == 507
    assert "Traceback" not in problem["detail"]


@pytest.mark.parametrize("error", [errno.ENOSPC, errno.EIO])
def test_a_failing_disk_is_507_keeps_the_durable_offset_and_resumes(faulty, error) -> None:
    server, writer = faulty
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


def test_a_failing_disk_under_a_checksummed_chunk_appends_nothing(faulty) -> None:
    server, writer = faulty
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


def test_a_failing_fsync_is_not_acknowledged(faulty) -> None:
    server, writer = faulty
    sid = create_session(server.url)
    url = server.url + tus_create(server.url, sid, "f.bin", 10).headers["Location"]
    writer.fail_fsync = True
    r = httpx.patch(url, content=b"01234", headers={**TUS, **OCTET, "Upload-Offset": "0"})
    assert r.status_code == 507, (r.status_code, r.text)
    assert head_offset(url) == 0


def test_a_background_sync_that_failed_mid_patch_is_not_acknowledged(faulty) -> None:
    """Linux reports a writeback error once: the sync that ends the PATCH may succeed
    although one made while the body streamed in failed. The PATCH must still fail."""
    server, writer = faulty
    sid = create_session(server.url)
    url = server.url + tus_create(server.url, sid, "bg.bin", len(PAYLOAD)).headers["Location"]
    writer.failing_syncs = 1  # the first sync fails: the background one, after 1 MiB
    r = httpx.patch(url, content=PAYLOAD, headers={**TUS, **OCTET, "Upload-Offset": "0"})
    assert_507(r)
    assert head_offset(url) == 0, "nothing of the PATCH is known durable: all taken back"
    assert writer.failing_syncs == 0
    r = httpx.patch(url, content=PAYLOAD, headers={**TUS, **OCTET, "Upload-Offset": "0"})
    assert r.status_code == 204, r.text
    assert writer.syncs >= 3, "the resumed PATCH was synced in the background too"
    (stored,) = data_files(server, sid)
    assert stored.read_bytes() == PAYLOAD


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

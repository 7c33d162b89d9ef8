"""The artifact routes of the app Modal serves, over fake Modal Volumes (the cloud seam only):
after a real run, the listing, one artifact, a range and the zip come from the session's
Modal Volume through ``listdir``/``read_file``, never from a local folder."""

from __future__ import annotations

import io
import os
import time
import zipfile
from typing import Any

import httpx

from tests.feeds import tus_upload
from tests.test_modal_app import ThreadedServer, modal_web
from tests.test_volume_store_contract import READ_BLOCK, FakeModalVolumes

__all__ = ["modal_web"]  # the fixture, shared with tests/test_modal_app.py

CSV = b"subject,hr,spo2\n1,61,97\n2,58,95\n3,,99\n"


def test_modal_app_serves_the_runs_artifacts_from_the_volume(modal_web: dict[str, Any]) -> None:
    volumes: FakeModalVolumes = modal_web["volumes"]
    with (
        ThreadedServer(modal_web["app"]) as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        created = http.post("/api/sessions", json={"experiment_context": "hr per subject"})
        sid = created.json()["session_id"]
        tus_upload(server.url, sid, "vitals.csv", CSV)
        assert http.post(f"/api/sessions/{sid}/run").status_code == 202
        deadline = time.monotonic() + 120
        while http.get(f"/api/sessions/{sid}").json()["state"] not in ("succeeded", "failed"):
            assert time.monotonic() < deadline, "the run did not end"
            time.sleep(0.1)
        view = http.get(f"/api/sessions/{sid}").json()
        assert view["state"] == "succeeded", view
        volume = volumes(f"dataset-volume-{sid}")
        # a big artifact written as the agent would, in the volume only
        big = os.urandom(2 * READ_BLOCK + 999)
        (volume.root / "results" / "big.bin").write_bytes(big)
        (volume.root / "results" / "link.csv").symlink_to(volume.root / "data" / "vitals.csv")

        base = view["links"]["artifacts"]
        listing = http.get(base).json()
        assert [a["name"] for a in listing["artifacts"]] == ["big.bin", "report.md", "summary.json"]
        summary = http.get(f"{base}/summary.json")
        assert summary.status_code == 200
        assert summary.headers["content-type"] == "application/json; charset=utf-8"
        assert summary.content == (volume.root / "results" / "summary.json").read_bytes()
        part = http.get(f"{base}/big.bin", headers={"Range": f"bytes={READ_BLOCK - 5}-"})
        assert part.status_code == 206
        assert part.content == big[READ_BLOCK - 5 :]
        assert http.get(f"{base}/link.csv").status_code == 404
        zipped = http.get(listing["zip"])
        assert zipped.status_code == 200
        with zipfile.ZipFile(io.BytesIO(zipped.content)) as archive:
            assert archive.testzip() is None
            assert archive.namelist() == [a["path"] for a in listing["artifacts"]]
            assert archive.read("results/big.bin") == big

"""Uppy (npm's @uppy/core and @uppy/tus, unmodified) in headless Chromium against a real
server: two files picked without a folder are both stored under their own names.

The bundle is built from tests/js/node_modules by esbuild at test time; the page and the
bundle are handed to the browser by Playwright's request routing on the server's own origin,
so nothing is fetched from any network and the uploads go to the real server.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Route

from tests.browser_support import require_chromium
from tests.feeds import create_session, wait_stored
from tests.servers import LiveServer

JS = Path(__file__).resolve().parent / "js"
ESBUILD = JS / "node_modules" / ".bin" / "esbuild"
PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Uppy</title>
<script src="/__uppy__/bundle.js"></script></head>
<body><input id="pick" type="file" multiple></body></html>"""

require_chromium()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    if shutil.which("node") is None or not ESBUILD.exists():
        if os.environ.get("CI") == "true":
            pytest.fail("tests/js/node_modules missing: `make node-deps` installs Uppy, esbuild")
        pytest.skip("Uppy and esbuild not installed (make node-deps)")
    out = tmp_path_factory.mktemp("uppy") / "bundle.js"
    subprocess.run(
        [
            str(ESBUILD),
            "uppy_entry.mjs",
            "--bundle",
            "--format=iife",
            "--platform=browser",
            "--log-level=warning",
            f"--outfile={out}",
        ],
        cwd=JS,
        check=True,
        timeout=60,
    )
    return out.read_bytes()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    context.set_default_timeout(30_000)
    page = context.new_page()
    yield page
    context.close()


def test_uppy_stores_two_files_picked_without_a_folder(
    shared_server: LiveServer, page: Page, bundle: bytes, tmp_path: Path
) -> None:
    server = shared_server
    picked = {"first.csv": os.urandom(150_000), "second.csv": b"id,value\n1,2\n"}
    for name, data in picked.items():
        (tmp_path / name).write_bytes(data)
    sid = create_session(server.url)

    def serve(route: Route) -> None:
        if route.request.url.endswith("/bundle.js"):
            route.fulfill(body=bundle, content_type="text/javascript")
        else:
            route.fulfill(body=PAGE, content_type="text/html")

    page.route(f"{server.url}/__uppy__/**", serve)
    page.goto(f"{server.url}/__uppy__/index.html")
    page.set_input_files("#pick", [str(tmp_path / name) for name in picked])
    result = page.evaluate(
        "([endpoint]) => uploadWithUppy(endpoint, document.getElementById('pick'))",
        [f"{server.url}/api/sessions/{sid}/files"],
    )
    assert result["failed"] == [], result
    assert result["successful"] == sorted(picked)
    assert result["sentMeta"] == ["null", "null"], "Uppy sent relativePath null for both"
    wait_stored(server.url, sid)  # complete files are published in the background
    data = server.data_dir / "volumes" / f"dataset-volume-{sid}" / "data"
    stored = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in data.iterdir()}
    assert stored == {name: hashlib.sha256(d).hexdigest() for name, d in picked.items()}

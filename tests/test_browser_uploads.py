"""The page's upload strategy in a real headless Chromium against a real dashboard process:
bars that move within a large file on a slow link, the size limit checked before a session
exists, many small files one request each with several in flight, and a 2,000-file list."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, Request, Route, expect

from tests.browser_support import (
    UI_TIMEOUT_MS,
    Dashboard,
    RequestLog,
    require_chromium,
    volume_file,
    write_bytes,
)

require_chromium()

pytestmark = pytest.mark.browser

KIB = 1024
MIB = 1024 * KIB
QUIET = "tests.agents:chatty"  # with "lines": 0 it only lists the files
QUIET_CONTEXT = '{"description": "many small files", "lines": 0}'


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(UI_TIMEOUT_MS)
    page = context.new_page()
    yield page
    context.close()


def emulate_network(page: Page, *, latency_ms: float = 0, upload_bytes_per_s: float = -1) -> None:
    """Chromium's own throttling (DevTools protocol), applied to this page's requests."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {
            "offline": False,
            "latency": latency_ms,
            "downloadThroughput": -1,
            "uploadThroughput": upload_bytes_per_s,
        },
    )


class InFlight:
    """Counts the page's tus requests and the most that were open at once."""

    def __init__(self, page: Page) -> None:
        self.open = 0
        self.most = 0
        self.counts: dict[str, int] = {}
        page.on("request", self.started)
        page.on("requestfinished", self.ended)
        page.on("requestfailed", self.ended)

    @staticmethod
    def tus(request: Request) -> bool:
        return "/files" in request.url and request.method in ("POST", "PATCH", "HEAD")

    def started(self, request: Request) -> None:
        if self.tus(request):
            self.counts[request.method] = self.counts.get(request.method, 0) + 1
            self.open += 1
            self.most = max(self.most, self.open)

    def ended(self, request: Request) -> None:
        if self.tus(request):
            self.open -= 1


def sessions_on_disk(data_dir: Path) -> list[Path]:
    folder = data_dir / "sessions"
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


def test_the_bar_moves_several_times_within_a_large_file_on_a_slow_link(
    server_factory: Any, page: Page, tmp_path: Path
) -> None:
    # The default maximum chunk (8 MiB) is larger than the file: with fixed chunks the bar
    # would jump from 0 to 100 % once. Sized to ~1 s at 1 MiB/s, it moves every chunk.
    server = server_factory(DASHBOARD_AGENT=QUIET)
    source = tmp_path / "slow.bin"
    data = write_bytes(source, 3 * MIB + 5, seed=9)
    emulate_network(page, upload_bytes_per_s=1 * MIB)
    page.add_init_script(
        """
        window.__barValues = [];
        new MutationObserver((changes) => {
          for (const change of changes) {
            const bar = change.target;
            if (bar.closest && bar.closest('[data-file="slow.bin"]')) {
              const value = Number(bar.getAttribute("value"));
              window.__barValues.push([value, Number(bar.getAttribute("max"))]);
            }
          }
        }).observe(document, { subtree: true, attributes: true, attributeFilter: ["value"] });
        """
    )
    requests = RequestLog().attach(page)
    dash = Dashboard(page, server).open()
    dash.choose_files(source)
    with page.expect_response("**/api/sessions") as created:
        dash.upload(QUIET_CONTEXT)
    session_id = created.value.json()["session_id"]
    dash.wait_for_state("succeeded")

    values = page.evaluate("() => window.__barValues")
    between = sorted({value for value, top in values if top == len(data) and 0 < value < len(data)})
    assert len(between) >= 3, f"the bar moved {len(between)} times before the end: {values}"
    patches = requests.matching("PATCH", "/files/")
    assert len(patches) >= 4, len(patches)
    assert volume_file(server, session_id, "slow.bin").read_bytes() == data


def test_files_over_the_limit_are_named_before_any_session_is_created(
    server_factory: Any, page: Page, tmp_path: Path
) -> None:
    server = server_factory(DASHBOARD_AGENT=QUIET, DASHBOARD_MAX_UPLOAD_SIZE="40000000")
    big = tmp_path / "big50.bin"
    with open(big, "wb") as handle:
        handle.truncate(50 * MIB)  # 52,428,800 bytes: "52 MB" in everyday units
    small = tmp_path / "small.csv"
    small.write_text("a,b\n1,2\n")
    requests = RequestLog().attach(page)
    dash = Dashboard(page, server).open()

    dash.choose_files(big, small)
    dash.upload(QUIET_CONTEXT)
    files_error = page.locator("[data-files-error]")
    expect(files_error).to_contain_text(
        "big50.bin is 52 MB; this dashboard accepts files up to 40 MB"
    )
    expect(dash.upload_button).to_be_enabled()
    assert requests.matching("OPTIONS", "/api/sessions/files")
    assert not requests.matching("POST", "/api/"), "nothing may be created or uploaded"
    assert sessions_on_disk(server.data_dir) == []

    # once the selection fits, it uploads
    page.get_by_role("button", name="Clear selection").click()
    dash.choose_files(small)
    dash.upload()
    dash.wait_for_state("succeeded")
    expect(files_error).to_be_hidden()
    assert len(sessions_on_disk(server.data_dir)) == 1


def test_two_thousand_small_files_one_request_each_several_in_flight_and_a_grouped_list(
    server_factory: Any, page: Page, tmp_path: Path
) -> None:
    server = server_factory(DASHBOARD_AGENT=QUIET)
    folder = tmp_path / "shards"
    digests = {}
    for i in range(2000):
        relative = f"part-{i // 100:02d}/sample-{i:04d}.json"
        content = f'{{"sample": {i}, "pad": "{"x" * (i % 50)}"}}\n'.encode()
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        digests[f"shards/{relative}"] = hashlib.sha256(content).hexdigest()
    emulate_network(page, latency_ms=20)  # a round trip per request, as behind the internet
    flight = InFlight(page)
    dash = Dashboard(page, server).open()
    dash.choose_folder(folder)
    expect(page.locator("[data-selection-summary]")).to_contain_text("2000 files selected")
    with page.expect_response("**/api/sessions") as created:
        dash.upload(QUIET_CONTEXT)
    session_id = created.value.json()["session_id"]
    dash.wait_for_state("succeeded", timeout=180_000)

    overall = page.locator("[data-overall-text]")
    expect(overall).to_contain_text("2,000 of 2,000 files")
    expect(overall).to_contain_text("100 %")
    # one creation-with-upload per file, nothing else; several at once
    assert flight.counts.get("POST") == 2000, flight.counts
    assert flight.counts.get("PATCH", 0) == 0, flight.counts
    assert flight.most >= 4, f"at most {flight.most} requests were in flight"
    # the list is grouped by folder: far fewer rows than files, each folder counted
    rows = page.locator("[data-file-list] li")
    assert rows.count() < 100, rows.count()
    groups = page.locator("[data-group]")
    expect(groups).to_have_count(20)
    expect(page.locator('[data-group="shards/part-07"]')).to_contain_text("100 of 100 files")
    # thousands of progress events were painted in far fewer DOM passes
    listing = page.locator("[data-file-list]")
    renders = int(listing.get_attribute("data-renders") or 0)
    changes = int(listing.get_attribute("data-changes") or 0)
    assert changes >= 4000, changes  # the page's own progress and the feed's upload events
    assert 0 < renders < changes / 2, (renders, changes)
    # a folder opens to list its files
    page.locator('[data-group="shards/part-03"]').get_by_role("button", name="Show files").click()
    expect(dash.file_row("shards/part-03/sample-0342.json")).to_have_attribute("data-state", "done")
    expect(page.locator('[data-group="shards/part-03"] [data-file]')).to_have_count(100)

    view = httpx.get(f"{server.url}/api/sessions/{session_id}", timeout=10).json()
    assert len(view["files"]) == 2000 and all(f["done"] for f in view["files"])
    for relative in ("shards/part-00/sample-0000.json", "shards/part-19/sample-1999.json"):
        stored = volume_file(server, session_id, relative).read_bytes()
        assert hashlib.sha256(stored).hexdigest() == digests[relative]


def test_a_small_file_whose_creation_reply_is_lost_is_not_sent_twice(
    server_factory: Any, page: Page, tmp_path: Path
) -> None:
    server = server_factory(DASHBOARD_AGENT=QUIET)
    sources = {name: write_bytes(tmp_path / name, 3 * KIB + i, seed=i) for i, name in
               enumerate(["a.csv", "b.csv", "c.csv"])}
    dropped: list[str] = []

    def lose_the_first_reply(route: Route) -> None:
        request = route.request
        if request.method == "POST" and not dropped and "YS5jc3Y=" in (
            request.headers.get("upload-metadata") or ""
        ):  # relativePath a.csv
            route.fetch()  # the server stores the whole file ...
            dropped.append(request.url)
            route.abort("connectionreset")  # ... and the page never hears back
            return
        route.continue_()

    page.route("**/api/sessions/*/files", lose_the_first_reply)
    requests = RequestLog().attach(page)
    dash = Dashboard(page, server).open()
    dash.choose_files(*(tmp_path / name for name in sources))
    with page.expect_response("**/api/sessions") as created:
        dash.upload(QUIET_CONTEXT)
    session_id = created.value.json()["session_id"]
    dash.wait_for_state("succeeded")

    assert dropped, "the first creation of a.csv should have lost its reply"
    expect(dash.error).to_be_hidden()
    posts = requests.matching("POST", "/files")
    assert len(posts) == 4, [r.headers.get("upload-metadata") for r in posts]  # a.csv twice
    assert not requests.matching("PATCH", "/files/")
    for name, data in sources.items():
        assert volume_file(server, session_id, name).read_bytes() == data

"""The browser dashboard in a real headless Chromium against a real dashboard process."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, WebSocketRoute, expect

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
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
TABULATES = "tests.agents:tabulates"
CONTEXT = "Growth curves of E. coli at 37 °C; columns od600 and time_min."


def new_page(browser: Browser, viewport: dict[str, int]) -> Page:
    context = browser.new_context(viewport=viewport)
    context.set_default_timeout(UI_TIMEOUT_MS)
    return context.new_page()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    page = new_page(browser, DESKTOP)
    yield page
    page.context.close()


@pytest.fixture
def phone(browser: Browser) -> Iterator[Page]:
    page = new_page(browser, PHONE)
    yield page
    page.context.close()


def test_upload_folder_shows_progress_logs_success_and_summary(server_factory, page, tmp_path):
    server = server_factory(DASHBOARD_AGENT=TABULATES, DASHBOARD_CHUNK_SIZE=str(256 * KIB))
    folder = tmp_path / "dataset"
    first = write_bytes(folder / "growth.csv", 700 * KIB, seed=1)
    second = write_bytes(folder / "plates" / "notes.txt", 300 * KIB, seed=2)
    requests = RequestLog().attach(page)
    dash = Dashboard(page, server).open()

    dash.choose_folder(folder)
    expect(page.locator("[data-selection-summary]")).to_contain_text("2 files selected")
    with page.expect_response("**/api/sessions") as created:
        dash.upload(CONTEXT)
    session_id = created.value.json()["session_id"]

    dash.wait_for_state("succeeded")
    dash.expect_complete("dataset/growth.csv", len(first))
    dash.expect_complete("dataset/plates/notes.txt", len(second))
    expect(page.locator("[data-overall-text]")).to_contain_text("100 %")
    expect(dash.log).to_contain_text("profiled dataset/growth.csv")
    expect(dash.log).to_contain_text("all files profiled")
    expect(dash.error).to_be_hidden()

    table = page.locator("[data-result] table")
    expect(table.locator("tbody tr")).to_have_count(2)
    expect(table).to_contain_text("dataset/plates/notes.txt")
    expect(table).to_contain_text(f"{len(first):,}")
    expect(page.locator("[data-result] .artifacts")).to_contain_text("results/summary.json")

    assert volume_file(server, session_id, "dataset/growth.csv").read_bytes() == first
    assert volume_file(server, session_id, "dataset/plates/notes.txt").read_bytes() == second
    # Chunked as configured: 700 KiB in 256 KiB chunks is 3 PATCHes, 300 KiB is 2.
    assert len(requests.matching("PATCH", "/files/")) == 5
    creations = requests.matching("POST", "/files")
    assert all(r.headers["tus-resumable"] == "1.0.0" for r in creations)
    dash.screenshot("dashboard-desktop.png")


def test_invalid_context_is_shown_inline_and_nothing_is_sent(server_factory, page, tmp_path):
    server = server_factory(DASHBOARD_AGENT=TABULATES)
    sent: list[str] = []
    listing = ("GET", server.url + "/api/sessions")  # the recent-sessions list, read on load
    page.on(
        "request",
        lambda r: sent.append(r.url) if "/api/" in r.url and (r.method, r.url) != listing else None,
    )
    dash = Dashboard(page, server).open()
    write_bytes(tmp_path / "a.csv", 10)
    dash.choose_files(tmp_path / "a.csv")
    context_error = page.locator("[data-context-error]")

    dash.context.fill("  \r\n\t ")
    dash.upload_button.focus()
    page.keyboard.press("Enter")  # the form works from the keyboard
    expect(context_error).to_contain_text("empty")
    expect(dash.context).to_have_attribute("aria-invalid", "true")
    expect(dash.context).to_be_focused()

    dash.upload('{"lines": 3}')
    expect(context_error).to_contain_text('"description" string')
    dash.upload("tab\tis fine but a bell \u0007 is not")
    expect(context_error).to_contain_text("U+0007")
    dash.upload("x" * 65_537)
    expect(context_error).to_contain_text("65,537 characters")

    dash.context.fill('{"description": "ok now"}')  # fixing it clears the message as you type
    expect(context_error).to_be_hidden()
    expect(dash.context).to_have_attribute("aria-invalid", "false")
    assert sent == []
    assert not (server.data_dir / "volumes").exists() or not any(
        (server.data_dir / "volumes").iterdir()
    )


def test_reload_mid_upload_resumes_from_the_server_offset(server_factory, page, tmp_path):
    chunk = 64 * KIB
    server = server_factory(DASHBOARD_AGENT=TABULATES, DASHBOARD_CHUNK_SIZE=str(chunk))
    source = tmp_path / "big.bin"
    data = write_bytes(source, 3 * MIB + 123, seed=3)
    hold_at = 16 * chunk
    held: list[Route] = []
    stalling = True

    def stall_after_first_megabyte(route: Route) -> None:
        request = route.request
        offset = int(request.headers.get("upload-offset", "-1"))
        if stalling and request.method == "PATCH" and offset >= hold_at:
            held.append(route)  # never answered: the upload hangs here until the reload
            return
        route.continue_()

    page.route("**/api/sessions/*/files/*", stall_after_first_megabyte)
    requests = RequestLog().attach(page)
    dash = Dashboard(page, server).open()
    dash.choose_files(source)
    with (
        page.expect_response("**/api/sessions") as created,
        page.expect_request(
            lambda r: r.method == "PATCH" and r.headers.get("upload-offset") == str(hold_at),
            timeout=30_000,
        ),
    ):
        dash.upload(CONTEXT)
    session_id = created.value.json()["session_id"]
    expect(dash.file_row("big.bin")).to_contain_text("%")
    assert held, "the stalled PATCH should be held"

    stalling = False
    page.reload()  # the held PATCH is abandoned with the page
    expect(page.locator("[data-resume-notice]")).to_contain_text("Choose the same files again")
    expect(dash.context).to_have_value(CONTEXT)
    view = httpx.get(f"{server.url}/api/sessions/{session_id}").json()
    assert view["files"][0]["offset"] == hold_at
    before_reload = len(requests.seen)

    dash.choose_files(source)
    dash.upload()
    dash.wait_for_state("succeeded")

    offsets = requests.patch_offsets(before_reload)
    assert offsets[0] == hold_at, offsets
    assert min(offsets) >= hold_at
    assert requests.matching("HEAD", "/files/", before_reload)
    posts = [r.url for r in requests.matching("POST", "/api/", before_reload)]
    assert posts == [f"{server.url}/api/sessions/{session_id}/run"], "no new session or upload"
    expect(dash.file_row("big.bin")).to_contain_text("Resumed from")
    dash.expect_complete("big.bin", len(data))
    final = httpx.get(f"{server.url}/api/sessions/{session_id}").json()
    assert [(f["path"], f["done"]) for f in final["files"]] == [("big.bin", True)]
    assert volume_file(server, session_id, "big.bin").read_bytes() == data


def test_phone_width_has_no_horizontal_scroll(server_factory, phone, tmp_path):
    server = server_factory(DASHBOARD_AGENT=TABULATES, DASHBOARD_CHUNK_SIZE=str(128 * KIB))
    long_name = "measurement_" + "plate" * 30 + ".csv"
    one = tmp_path / long_name
    write_bytes(one, 200 * KIB, seed=4)
    two = tmp_path / "b.tsv"
    write_bytes(two, 10 * KIB, seed=5)
    dash = Dashboard(phone, server).open()
    dash.choose_files(one, two)
    dash.upload(CONTEXT)
    dash.wait_for_state("succeeded")
    expect(dash.log).to_contain_text("unbroken:xxxx")
    expect(phone.locator("[data-result] table")).to_be_visible()

    width = phone.evaluate("() => document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"page is {width}px wide at a 390px viewport"
    dash.screenshot("dashboard-phone.png")


def test_failing_agent_shows_failed_state_with_readable_error(server_factory, phone, tmp_path):
    server = server_factory(DASHBOARD_AGENT="tests.agents:raises")
    source = tmp_path / "table.csv"
    write_bytes(source, 5 * KIB)
    dash = Dashboard(phone, server).open()
    dash.choose_files(source)
    dash.upload(CONTEXT)

    dash.wait_for_state("failed")
    expect(dash.error).to_be_visible()
    expect(dash.error).to_contain_text("The run failed")
    expect(dash.error).to_contain_text("the dataset has no header row")
    expect(dash.error).not_to_contain_text("Traceback")
    expect(dash.log).to_contain_text("about to fail")
    expect(phone.locator("[data-result-section]")).to_be_hidden()
    assert phone.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]


def test_falls_back_to_sse_when_websockets_are_blocked(server_factory, page, tmp_path):
    server = server_factory(DASHBOARD_AGENT=TABULATES)
    # A WebSocket that never connects, as behind a proxy that blocks the upgrade.
    page.add_init_script(
        """
        window.WebSocket = class {
          constructor() {
            this.listeners = {};
            setTimeout(() => (this.listeners.close || []).forEach((f) => f({ code: 1006 })), 10);
          }
          addEventListener(type, f) { (this.listeners[type] ||= []).push(f); }
          close() {}
        };
        """
    )
    requests = RequestLog().attach(page)
    source = tmp_path / "rows.csv"
    write_bytes(source, 20 * KIB)
    dash = Dashboard(page, server).open()
    dash.choose_files(source)
    dash.upload(CONTEXT)

    dash.wait_for_state("succeeded")
    expect(dash.log).to_contain_text("all files profiled")
    expect(page.locator("[data-result] table")).to_be_visible()
    assert requests.matching("GET", "/events")
    # Each log line shows once, even if the SSE stream was reconnected.
    expect(dash.log.get_by_text("all files profiled")).to_have_count(1)


def test_server_errors_are_shown_in_words(server_factory, page, tmp_path):
    server = server_factory(DASHBOARD_AGENT=TABULATES)
    source = tmp_path / "a.csv"
    write_bytes(source, 1 * KIB)

    def refuse(route: Route) -> None:
        route.fulfill(
            status=409,
            content_type="application/problem+json",
            body='{"type": "about:blank", "title": "Conflict", "status": 409, '
            '"detail": "A file named \'a.csv\' is already part of this session."}',
        )

    page.route("**/api/sessions/*/files", refuse)
    dash = Dashboard(page, server).open()
    dash.choose_files(source)
    dash.upload(CONTEXT)
    expect(dash.error).to_contain_text("is already part of this session")
    expect(dash.file_row("a.csv")).to_have_attribute("data-state", "error")
    expect(dash.upload_button).to_be_enabled()


def test_websocket_reconnects_from_the_last_seq(server_factory, page, tmp_path):
    server = server_factory(DASHBOARD_AGENT="tests.agents:chatty")
    urls: list[str] = []

    def drop_first_connection(ws: WebSocketRoute) -> None:
        urls.append(ws.url)
        server_side = ws.connect_to_server()
        if len(urls) > 1:
            return  # later connections pass straight through

        def forward_once(message: str | bytes) -> None:
            ws.send(message)
            ws.close(code=4000, reason="test: connection dropped")

        server_side.on_message(forward_once)

    page.route_web_socket("**/api/sessions/*/ws*", drop_first_connection)
    source = tmp_path / "a.csv"
    write_bytes(source, 2 * KIB)
    dash = Dashboard(page, server).open()
    dash.choose_files(source)
    dash.upload('{"description": "count to fifty", "lines": 50}')

    dash.wait_for_state("succeeded")
    expect(dash.log.get_by_text("line 49", exact=True)).to_have_count(1)
    expect(dash.log.locator(".log-message").filter(has_text="line ")).to_have_count(50)
    assert len(urls) >= 2
    assert "since=0" in urls[0]
    assert "since=0" not in urls[1], urls  # the reconnect resumes after the last seq seen


def test_real_dataset_shows_its_profile_with_the_built_in_agent(server_factory, page, tmp_path):
    """The default DuckDB agent: the page shows the profile of what was uploaded."""
    server = server_factory()
    folder = tmp_path / "trial"
    folder.mkdir()
    rows = "\n".join(f"{i},{i * 0.5},{'ab'[i % 2]}" for i in range(1, 301))
    (folder / "doses.csv").write_text("subject,dose_mg,arm\n" + rows + "\n")
    (folder / "readme.txt").write_text("notes\n")
    dash = Dashboard(page, server).open()
    dash.choose_folder(folder)
    dash.upload("Dose-response pilot; dose_mg is the dose given to each subject.")
    dash.wait_for_state("succeeded")
    result = page.locator("[data-result]")
    expect(result).to_contain_text("trial/doses.csv")
    expect(result).to_contain_text("300")
    expect(result).to_contain_text("dose_mg")  # the flagged column the context names
    expect(result).to_contain_text("75.25")  # mean of dose_mg over 0.5 .. 150
    expect(result).to_contain_text("results/report.md")
    dash.screenshot("dashboard-profile.png")

"""The result page in a real headless Chromium against a real dashboard process: artifacts
as links, the profile with its pictures, report.md rendered safely, ?session= links and the
recent-sessions list."""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.browser_support import (
    RUN_TIMEOUT_MS,
    UI_TIMEOUT_MS,
    Dashboard,
    require_chromium,
)
from tests.result_agents import COLUMNS, FILES, FLAGGED, UNREADABLE
from tests.servers import free_port

require_chromium()

pytestmark = pytest.mark.browser

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
WIDE = "tests.result_agents:wide_profile"
CONTEXT = "Dose-response pilot; dose_mg is the dose given to each subject."


@pytest.fixture
def contexts(browser: Browser) -> Iterator[list[BrowserContext]]:
    """Browser contexts (separate cookie jars, as separate browsers); closed afterwards."""
    opened: list[BrowserContext] = []
    yield opened
    for context in opened:
        context.close()


def open_page(browser: Browser, contexts: list[BrowserContext], viewport: dict[str, int]) -> Page:
    context = browser.new_context(viewport=viewport, accept_downloads=True)
    context.set_default_timeout(UI_TIMEOUT_MS)
    contexts.append(context)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.errors = errors  # type: ignore[attr-defined]
    return page


def trial_folder(tmp_path: Path) -> Path:
    """Real files: a CSV with integer, float, text and date columns, an unreadable CSV and a
    text file."""
    folder = tmp_path / "trial"
    folder.mkdir()
    rows = "\n".join(
        f"{i},{i * 0.5},{'abc'[i % 3]},2024-01-{i % 28 + 1:02d}" for i in range(1, 301)
    )
    (folder / "doses.csv").write_text("subject,dose_mg,arm,visit\n" + rows + "\n")
    (folder / "broken.csv").write_text('a,b\n1,2\n"never closed,3\n')
    (folder / "readme.txt").write_text("notes\n")
    return folder


def results_loaded(page: Page) -> None:
    expect(page.locator("[data-result]")).to_have_attribute(
        "data-loaded", "true", timeout=RUN_TIMEOUT_MS
    )


LOCAL_LINE = re.compile(r"^Uploaded [\d,]+ files? \(")  # the uploading page's own timing


def log_lines(page: Page) -> list[str]:
    """The session's log as the page shows it, less the line only the uploading page
    writes (its upload timing, which is no event and so is not replayed)."""
    lines = page.locator("[data-log] .log-message").all_inner_texts()
    return [line for line in lines if not LOCAL_LINE.match(line)]


def wait_for_log_end(page: Page) -> None:
    finished = page.locator("[data-log] .log-message", has_text="The run finished successfully.")
    expect(finished).to_have_count(1, timeout=RUN_TIMEOUT_MS)


def expect_profile_of_doses(page: Page) -> None:
    doses = page.locator('[data-profile-file="trial/doses.csv"]')
    expect(doses).to_have_attribute("open", "")
    expect(doses.locator("summary")).to_contain_text("300 rows")
    dose = doses.locator('tr[data-column="dose_mg"]')
    expect(dose).to_have_attribute("data-flagged", "true")  # the column the context names
    expect(dose).to_contain_text("75.25")  # mean of 0.5 .. 150
    histogram = dose.locator("svg.histogram")
    expect(histogram).to_have_attribute("role", "img")
    expect(histogram).to_have_attribute(
        "aria-label", re.compile(r"^Histogram of dose_mg, \d+ bins")
    )
    assert histogram.locator("rect.bar").count() > 1
    visit = doses.locator('tr[data-column="visit"] svg.histogram')  # a date column
    expect(visit).to_have_attribute("aria-label", re.compile(r"from 2024-01-01 to 2024-01-"))
    top = doses.locator('tr[data-column="arm"] svg.top-values')
    expect(top).to_have_attribute(
        "aria-label", re.compile(r"values of arm.*a: 100; b: 100; c: 100")
    )
    expect(top.locator("text.top-label")).to_have_text(["a", "b", "c"])
    # the per-column rows do not repeat the file's name
    assert "doses.csv" not in doses.locator("tbody").inner_text()
    broken = page.locator('[data-profile-file="trial/broken.csv"] summary')
    expect(broken.locator(".file-error")).to_contain_text("Could not be read")


def test_a_built_in_run_shows_links_a_profile_with_pictures_and_the_report_and_comes_back(
    server, browser, contexts, tmp_path
):
    page = open_page(browser, contexts, DESKTOP)
    dash = Dashboard(page, server).open()
    dash.choose_folder(trial_folder(tmp_path))
    with page.expect_response("**/api/sessions") as created:
        dash.upload(CONTEXT)
    session_id = created.value.json()["session_id"]
    expect(page).to_have_url(f"{server.url}/?session={session_id}")  # once the session exists
    dash.wait_for_state("succeeded", timeout=RUN_TIMEOUT_MS)
    results_loaded(page)
    wait_for_log_end(page)
    expect_profile_of_doses(page)

    # report.md as formatted elements, not as its Markdown source
    report = page.locator("[data-report]")
    expect(report.locator("h1")).to_have_text("Dataset profile")
    assert report.locator("table").count() >= 2
    assert report.locator("code").count() >= 1
    assert "|---|" not in report.inner_text()
    assert "## " not in report.inner_text()

    # every artifact opens and downloads; "Download all" is the zip of them
    volume = server.data_dir / "volumes" / f"dataset-volume-{session_id}"
    expected = (volume / "results" / "report.md").read_bytes()
    with page.expect_download() as download:
        page.get_by_role("link", name="Download results/report.md").click()
    saved = download.value.path()
    assert saved is not None and Path(saved).read_bytes() == expected
    assert download.value.suggested_filename == "report.md"
    size = page.locator('[data-artifact="results/report.md"] .artifact-size')
    expect(size).to_have_text(re.compile(r"^\d[\d.]* k?B$", re.IGNORECASE))
    opener = page.locator('[data-artifact="results/summary.json"] a.artifact-open')
    opened = page.request.get(server.url + str(opener.get_attribute("href")))
    assert opened.ok and opened.json()["files"][0]["path"].startswith("trial/")
    zipped = page.request.get(
        server.url + str(page.locator("a.download-all").get_attribute("href"))
    )
    assert zipped.ok
    with zipfile.ZipFile(io.BytesIO(zipped.body())) as archive:
        names = archive.namelist()
        assert any(n.endswith("report.md") for n in names), names
        report_name = next(n for n in names if n.endswith("report.md"))
        assert archive.read(report_name) == expected

    # the recent list has this session, marked as the one on screen
    mine = page.locator(f'[data-recent-session="{session_id}"]')
    expect(mine).to_have_attribute("data-state", "succeeded")
    expect(mine.locator("a")).to_have_attribute("aria-current", "page")
    expect(mine).to_contain_text("Dose-response pilot")
    before = log_lines(page)
    assert "The run finished successfully." in before and len(before) > 8

    # a reload lands on the same session: the same log, the same results
    page.reload()
    wait_for_log_end(page)
    results_loaded(page)
    assert log_lines(page) == before
    expect_profile_of_doses(page)
    dash.screenshot("results-desktop.png")

    # a shared link opens it in another browser (its own cookie): log and results, and that
    # browser's recent list has none of the first browser's sessions
    other = open_page(browser, contexts, DESKTOP)
    other.goto(f"{server.url}/?session={session_id}")
    expect(other.locator("[data-status-badge]")).to_have_text("succeeded")
    wait_for_log_end(other)
    results_loaded(other)
    assert log_lines(other) == before
    expect_profile_of_doses(other)
    expect(other.locator('[data-file="trial/doses.csv"] progress')).to_have_attribute(
        "value", str((volume / "data" / "trial" / "doses.csv").stat().st_size)
    )
    expect(other.locator("[data-recent-section]")).to_have_attribute("data-loaded", "true")
    expect(other.locator("[data-recent-section]")).to_be_hidden()
    assert other.request.get(server.url + "/api/sessions").json() == {"sessions": []}
    assert page.errors == [] and other.errors == []  # type: ignore[attr-defined]


def test_the_recent_list_shows_only_this_browsers_sessions_newest_first(server, browser, contexts):
    first = open_page(browser, contexts, DESKTOP)
    Dashboard(first, server).open()
    made = []
    for text in ("Older pilot", "Newer pilot"):
        reply = first.request.post(server.url + "/api/sessions", data={"experiment_context": text})
        assert reply.status == 201
        made.append(reply.json()["session_id"])
    second = open_page(browser, contexts, DESKTOP)
    Dashboard(second, server).open()
    theirs = second.request.post(
        server.url + "/api/sessions", data={"experiment_context": "Theirs"}
    )
    assert theirs.status == 201

    first.reload()
    items = first.locator("[data-recent-session]")
    expect(items).to_have_count(2)
    assert [items.nth(i).get_attribute("data-recent-session") for i in range(2)] == made[::-1]
    expect(items.locator(".recent-title")).to_have_text(["Newer pilot", "Older pilot"])
    expect(items.first.locator(".badge")).to_have_text("created")
    expect(items.first.locator("time")).not_to_be_empty()

    second.reload()
    expect(second.locator("[data-recent-session]")).to_have_count(1)
    expect(second.locator("[data-recent-list]")).to_contain_text("Theirs")
    expect(second.locator("[data-recent-list]")).not_to_contain_text("pilot")

    # each opens as a ?session= link
    first.get_by_role("link", name="Older pilot").click()
    expect(first).to_have_url(f"{server.url}/?session={made[0]}")
    expect(first.locator("[data-status-badge]")).to_have_text("created")
    expect(first.locator(f'[data-recent-session="{made[0]}"] a')).to_have_attribute(
        "aria-current", "page"
    )
    # a link to a session that does not exist says so, and leaves the address clean
    first.goto(f"{server.url}/?session={'0' * 32}")
    expect(first.locator("[data-error]")).to_contain_text("does not exist")
    expect(first).to_have_url(f"{server.url}/")


def test_a_hostile_report_renders_as_text_and_runs_nothing(
    server_factory, browser, contexts, tmp_path
):
    server = server_factory(DASHBOARD_AGENT=WIDE)
    page = open_page(browser, contexts, DESKTOP)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    dash = Dashboard(page, server).open()
    (tmp_path / "a.csv").write_text("x\n1\n")
    dash.choose_files(tmp_path / "a.csv")
    dash.upload("A report that tries to run code.")
    dash.wait_for_state("succeeded", timeout=RUN_TIMEOUT_MS)
    results_loaded(page)

    report = page.locator("[data-report]")
    expect(report.locator("h1")).to_have_text("Hostile report")
    expect(report).to_contain_text('<script>window.__xss = "script";</script>')
    expect(report).to_contain_text('<img src="x" onerror=')
    assert (
        report.locator("script, img, iframe, b, [onerror], [onmouseover], [style*=url]").count()
        == 0
    )
    links = report.locator("a")
    expect(links).to_have_count(1)  # only the https one; the others keep their words only
    expect(links).to_have_attribute("href", "https://example.org/docs")
    expect(links).to_have_attribute("rel", "noopener noreferrer nofollow")
    expect(report).to_contain_text("javascript link")
    expect(report.locator("table td code")).to_have_text("<script>")
    expect(report.locator("table td").first).to_have_text(
        "<b onmouseover=\"window.__xss='cell'\">bold?</b>"
    )
    expect(report.locator("pre code")).to_contain_text("<script>")
    expect(report.locator("li strong")).to_have_text("strong")
    expect(report.locator("li em")).to_have_text("emphasis")
    page.mouse.move(10, 10)
    for index in range(report.locator("td").count()):
        report.locator("td").nth(index).hover()
    assert page.evaluate("() => window.__xss") is None
    assert page.evaluate("() => document.scripts.length") == 1  # the page's own module only
    assert dialogs == []
    # the link rule itself, spelled every way an attacker might
    hrefs = page.evaluate(
        """async () => {
          const { safeHref } = await import("/static/markdown.js");
          return ["javascript:alert(1)", " JaVaScRiPt:alert(1)", "java\\nscript:x", "vbscript:x",
                  "data:text/html,x", "//evil.example/x", "/relative", "file:///etc/passwd",
                  "https://ok.example/a?b=c", "HTTP://OK.EXAMPLE/"].map(safeHref);
        }"""
    )
    assert hrefs == [None] * 8 + ["https://ok.example/a?b=c", "http://ok.example/"]
    assert page.errors == []  # type: ignore[attr-defined]


def test_a_50_by_40_profile_stays_collapsed_past_the_first_files_on_a_phone(
    server_factory, browser, contexts, tmp_path
):
    server = server_factory(DASHBOARD_AGENT=WIDE)
    page = open_page(browser, contexts, PHONE)
    dash = Dashboard(page, server).open()
    (tmp_path / "a.csv").write_text("x\n1\n")
    dash.choose_files(tmp_path / "a.csv")
    dash.upload("Fifty files of forty columns.")
    dash.wait_for_state("succeeded", timeout=RUN_TIMEOUT_MS)
    results_loaded(page)

    sections = page.locator("details.profile-file")
    expect(sections).to_have_count(FILES)
    assert page.locator("details.profile-file[open]").count() == 3
    # collapsed sections have no rows yet: they are built when opened
    assert page.locator('details.profile-file[data-built="false"]').count() == FILES - 3
    expect(page.locator(".profile-table tbody tr")).to_have_count(3 * COLUMNS)
    first = sections.first
    expect(first.locator(f'tr[data-column="{FLAGGED}"]')).to_have_attribute("data-flagged", "true")
    expect(first.locator("svg.histogram")).to_have_count(COLUMNS // 2)
    expect(first.locator("svg.top-values")).to_have_count(COLUMNS // 2)
    # the unreadable file says why, in words, while still collapsed
    broken = page.locator(f'[data-profile-file="{UNREADABLE}"]')
    expect(broken.locator("summary")).to_contain_text("line 3 has 5 fields where the header has 4")
    expect(broken.locator("summary")).to_be_visible()

    late = page.locator('[data-profile-file="data/file_40.csv"]')
    late.locator("summary").click()
    expect(late).to_have_attribute("data-built", "true")
    expect(late.locator("tbody tr")).to_have_count(COLUMNS)
    expect(late.locator('tr[data-column="col_01"] svg.top-values')).to_have_attribute(
        "aria-label", re.compile("level 0: 100; level 1: 91")
    )
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"page is {width}px wide at a 390px viewport"
    dash.screenshot("results-phone.png")
    page.get_by_role("button", name="Expand all").click()
    expect(page.locator('details.profile-file[data-built="true"]')).to_have_count(
        FILES, timeout=RUN_TIMEOUT_MS
    )
    assert page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]


def test_a_session_link_replays_the_same_log_and_results_after_a_restart(
    server, browser, contexts, tmp_path
):
    page = open_page(browser, contexts, DESKTOP)
    dash = Dashboard(page, server).open()
    dash.choose_folder(trial_folder(tmp_path))
    with page.expect_response("**/api/sessions") as created:
        dash.upload(CONTEXT)
    session_id = created.value.json()["session_id"]
    dash.wait_for_state("succeeded", timeout=RUN_TIMEOUT_MS)
    wait_for_log_end(page)
    results_loaded(page)
    before = log_lines(page)
    page.close()

    # a clean stop right after the run (well before the 30 s archive sweep), then a start
    server.stop()
    server.port = free_port()
    server.start()
    again = open_page(browser, contexts, DESKTOP)
    again.goto(f"{server.url}/?session={session_id}")
    expect(again.locator("[data-status-badge]")).to_have_text("succeeded")
    wait_for_log_end(again)
    results_loaded(again)
    assert log_lines(again) == before
    expect_profile_of_doses(again)
    assert again.errors == []  # type: ignore[attr-defined]


MARKDOWN = r"""## Title with `code` ##

snake_case_name, *it*, **bold _inner_**, a\*literal\* star
line two<two spaces>
hard break

3. three
4. four
   - nested a
5. five

---

> quoted **text**

<https://auto.example/x>, [titled](https://t.example "T") and [relative](/x)

    indented <b>

| a | b\|c |
|:--|--:|
| 1 | x \\ y |
""".replace("<two spaces>", "  ")  # a hard line break
RENDERED = (
    "<h2>Title with <code>code</code></h2>"
    "<p>snake_case_name, <em>it</em>, <strong>bold <em>inner</em></strong>, a*literal* star\n"
    "line two<br>hard break</p>"
    '<ol start="3"><li>three</li><li>four<ul><li>nested a</li></ul></li><li>five</li></ol>'
    "<hr><blockquote><p>quoted <strong>text</strong></p></blockquote>"
    '<p><a href="https://auto.example/x" rel="noopener noreferrer nofollow" target="_blank">'
    "https://auto.example/x</a>, "
    '<a href="https://t.example/" rel="noopener noreferrer nofollow" target="_blank">titled</a>'
    " and <span>relative</span></p>"
    "<pre><code>indented &lt;b&gt;</code></pre>"
    '<div class="md-table-wrap"><table class="md-table"><thead><tr>'
    '<th scope="col" style="text-align: left;">a</th>'
    '<th scope="col" style="text-align: right;">b|c</th></tr></thead><tbody><tr>'
    '<td style="text-align: left;">1</td><td style="text-align: right;">x \\ y</td>'
    "</tr></tbody></table></div>"
)


def test_markdown_renders_headings_lists_quotes_links_code_and_tables(
    shared_server, browser, contexts
):
    page = open_page(browser, contexts, DESKTOP)
    Dashboard(page, shared_server).open()
    html = page.evaluate(
        """async (text) => {
          const { renderMarkdown } = await import("/static/markdown.js");
          const box = document.createElement("div");
          box.append(renderMarkdown(text));
          return box.innerHTML;
        }""",
        MARKDOWN,
    )
    assert html == RENDERED

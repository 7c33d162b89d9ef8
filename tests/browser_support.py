"""Driving the dashboard page in Debian's Chromium: launch settings and a small page object."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, Request, expect

from tests.servers import LiveServer

CHROMIUM = Path("/usr/bin/chromium")
# Debian's Chromium headless in a container: no sandbox, no GPU, no background traffic.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
RUN_TIMEOUT_MS = 60_000  # upload + agent subprocess start + run
UI_TIMEOUT_MS = 10_000
SCREENSHOT_DIR_ENV = "DASHBOARD_SCREENSHOT_DIR"  # set to keep screenshots of finished pages


def chromium_missing_reason() -> str | None:
    if CHROMIUM.exists():
        return None
    return (
        f"{CHROMIUM} is missing: install Debian's Chromium (apt-get install chromium or "
        "`make browser-deps`); never `playwright install`."
    )


def require_chromium() -> None:
    """Called at the top of a browser test module: without Chromium the module is skipped,
    except in CI, which must run the browser tests (the module fails there instead)."""
    missing = chromium_missing_reason()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(missing, pytrace=False)
        pytest.skip(missing, allow_module_level=True)


def write_bytes(path: Path, size: int, seed: int = 0) -> bytes:
    """A file of `size` bytes that differ by position and seed, so misplaced chunks show."""
    path.parent.mkdir(parents=True, exist_ok=True)
    block = bytes((i * 31 + seed * 7) % 251 for i in range(251))
    data = (block * (size // len(block) + 1))[:size]
    path.write_bytes(data)
    return data


def volume_file(server: LiveServer, session_id: str, relative: str) -> Path:
    return server.data_dir / "volumes" / f"dataset-volume-{session_id}" / "data" / relative


@dataclass
class RequestLog:
    """Every request the page makes, in order (method, URL, headers)."""

    seen: list[Request] = field(default_factory=list)

    def attach(self, page: Page) -> RequestLog:
        page.on("request", self.record)
        return self

    def record(self, request: Request) -> None:
        self.seen.append(request)

    def matching(self, method: str, fragment: str, start: int = 0) -> list[Request]:
        return [r for r in self.seen[start:] if r.method == method and fragment in r.url]

    def patch_offsets(self, start: int = 0) -> list[int]:
        return [int(r.headers["upload-offset"]) for r in self.matching("PATCH", "/files/", start)]


class Dashboard:
    """The page object: every element is found the way a person (or screen reader) finds it."""

    def __init__(self, page: Page, server: LiveServer) -> None:
        self.page = page
        self.server = server

    def open(self) -> Dashboard:
        self.page.goto(self.server.url + "/")
        expect(self.page.locator("[data-dashboard]")).to_have_attribute("data-ready", "true")
        return self

    @property
    def badge(self) -> Locator:
        return self.page.locator("[data-status-badge]")

    @property
    def context(self) -> Locator:
        return self.page.get_by_label("2. Describe the experiment")

    @property
    def upload_button(self) -> Locator:
        return self.page.get_by_role("button", name="Upload")

    @property
    def error(self) -> Locator:
        return self.page.locator("[data-error]")

    @property
    def log(self) -> Locator:
        return self.page.get_by_role("log")

    def file_row(self, path: str) -> Locator:
        return self.page.locator(f'[data-file="{path}"]')

    def choose_files(self, *paths: Path) -> None:
        self.page.locator("[data-file-input]").set_input_files([str(p) for p in paths])

    def choose_folder(self, folder: Path) -> None:
        self.page.locator("[data-folder-input]").set_input_files(str(folder))

    def upload(self, context: str | None = None) -> None:
        if context is not None:
            self.context.fill(context)
        self.upload_button.click()

    def wait_for_state(self, state: str, timeout: float = RUN_TIMEOUT_MS) -> None:
        expect(self.badge).to_have_text(state, timeout=timeout)

    def expect_complete(self, path: str, size: int) -> None:
        row = self.file_row(path)
        expect(row.locator("progress")).to_have_attribute("value", str(size))
        expect(row.locator("progress")).to_have_attribute("max", str(size))
        expect(row).to_contain_text("100 %")

    def stored_session(self) -> dict[str, Any] | None:
        value = self.page.evaluate("() => localStorage.getItem('dashboard.session')")
        if value is None:
            return None
        stored: dict[str, Any] = json.loads(value)
        return stored

    def screenshot(self, name: str) -> None:
        folder = os.environ.get(SCREENSHOT_DIR_ENV)
        if folder:
            self.page.screenshot(path=str(Path(folder) / name), full_page=True)

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.browser_support import CHROMIUM, CHROMIUM_ARGS
from tests.servers import LiveServer

AGENTS = "tests.agents"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    """A fresh dashboard process with the built-in agent."""
    live = LiveServer(tmp_path / "data").start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One dashboard process for a whole module (tests that neither kill nor reconfigure it)."""
    live = LiveServer(tmp_path_factory.mktemp("shared") / "data").start()
    yield live
    live.stop()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[object]:
    """Start servers with extra environment (e.g. another agent or a short timeout)."""
    started: list[LiveServer] = []

    def make(name: str = "data", **env: str) -> LiveServer:
        live = LiveServer(tmp_path / name, env).start()
        started.append(live)
        return live

    yield make
    for live in started:
        live.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's headless Chromium, one per browser test module."""
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()

"""The layering rules of ARCHITECTURE.md, read from the import statements.

- ``dashboard/`` (every family) imports neither the web nor the cloud: no fastapi,
  starlette, sse_starlette, modal, uvicorn or ``api`` (``cli.py`` may start uvicorn).
- The server's domain (the modules at the top of ``dashboard/``) imports neither
  ``dashboard.agent`` nor ``dashboard.client``: it launches the agent by name only.
- ``dashboard/client/`` imports none of the server's stores, hub or runner, nor the agent.
- ``dashboard/agent/`` imports none of the server's stores, hub or runner, nor the client.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "dashboard"
FORBIDDEN = {"fastapi", "starlette", "modal", "sse_starlette", "uvicorn", "api"}
# what the server keeps: its records, volumes, uploads, events and runs
SERVER_STATE = {
    "dashboard.sessions",
    "dashboard.volumes",
    "dashboard.uploads",
    "dashboard.hub",
    "dashboard.event_archive",
    "dashboard.runner",
    "dashboard.workspace",
}
ENTRY_POINTS = {"cli.py", "__main__.py"}  # the command line: it calls the client


def imported_modules(path: Path, package: str) -> set[str]:
    """Every module an import statement of ``path`` names, as an absolute dotted name
    (``from dashboard import hub`` names both ``dashboard`` and ``dashboard.hub``)."""
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def family(path: Path, root: Path) -> str:
    rel = path.relative_to(root)
    if len(rel.parts) > 1:
        return rel.parts[0]  # "agent" or "client"
    return "entry" if rel.name in ENTRY_POINTS else "server"


def violations(root: Path) -> dict[str, list[str]]:
    """``{file: [what it must not import]}`` for a ``dashboard``-shaped tree at ``root``."""
    found: dict[str, list[str]] = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        package = ".".join(["dashboard", *rel.parts[:-1]])
        names = imported_modules(path, package)
        kind = family(path, root)
        bad = {n for n in names if n.split(".")[0] in FORBIDDEN}
        if kind == "entry":
            bad -= {"uvicorn"}  # `serve` starts uvicorn by import string, nothing more
        if kind == "server":
            bad |= {n for n in names if n.startswith(("dashboard.agent", "dashboard.client"))}
        if kind in ("agent", "client"):
            other = "dashboard.client" if kind == "agent" else "dashboard.agent"
            bad |= {n for n in names if n in SERVER_STATE or n.startswith(other)}
        if bad:
            found[str(rel)] = sorted(bad)
    return found


def test_the_three_families_keep_to_their_imports() -> None:
    assert violations(PACKAGE) == {}


def test_every_family_is_present() -> None:
    kinds = {family(p, PACKAGE) for p in PACKAGE.rglob("*.py")}
    assert kinds == {"server", "entry", "agent", "client"}


@pytest.mark.parametrize(
    ("where", "source", "expected"),
    [
        ("hub.py", "import fastapi\nfrom modal import App\n", ["fastapi", "modal.App", "modal"]),
        ("workspace.py", "from dashboard.client import run_upload\n", None),
        ("runner.py", "from dashboard import agent\n", ["dashboard.agent"]),
        ("client/upload.py", "from dashboard.hub import EventHub\n", None),
        ("client/upload.py", "from dashboard import uploads\n", ["dashboard.uploads"]),
        ("client/upload.py", "from .. import workspace\n", ["dashboard.workspace"]),
        ("client/follow.py", "import starlette.websockets\n", ["starlette.websockets"]),
        ("agent/builtin.py", "from dashboard.client.http import Api\n", None),
        ("agent/builtin.py", "from dashboard.sessions import SessionStore\n", None),
        ("agent/log.py", "import uvicorn\n", ["uvicorn"]),
        ("cli.py", "import api.app\n", ["api.app"]),
    ],
)
def test_a_deliberate_violation_is_caught(
    tmp_path: Path, where: str, source: str, expected: list[str] | None
) -> None:
    target = tmp_path / where
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(source)
    found = violations(tmp_path)
    assert list(found) == [where]
    if expected is not None:
        assert set(expected) <= set(found[where])


@pytest.mark.parametrize(
    ("where", "source"),
    [
        ("cli.py", "import uvicorn\nfrom dashboard.client import run_upload\n"),
        ("client/command.py", "from dashboard.paths import clean_relative_path\n"),
        ("agent/worker.py", "from dashboard.storage import read_json\n"),
        ("runner.py", "ENTRY = 'dashboard.agent.worker'\n"),
    ],
)
def test_allowed_imports_pass(tmp_path: Path, where: str, source: str) -> None:
    target = tmp_path / where
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(source)
    assert violations(tmp_path) == {}

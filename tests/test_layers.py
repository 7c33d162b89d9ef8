"""dashboard/ is the framework-free domain: it imports neither the web nor the cloud."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {"fastapi", "starlette", "modal", "sse_starlette", "uvicorn", "api"}


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_domain_imports_no_web_or_cloud_framework() -> None:
    offenders = {}
    for path in sorted((ROOT / "dashboard").rglob("*.py")):
        bad = imported_roots(path) & FORBIDDEN
        if path.name == "cli.py":
            bad -= {"uvicorn"}  # `serve` starts uvicorn by import string, nothing more
        if bad:
            offenders[str(path.relative_to(ROOT))] = sorted(bad)
    assert offenders == {}


def test_the_checker_can_fail(tmp_path: Path) -> None:
    sample = tmp_path / "x.py"
    sample.write_text("import fastapi\nfrom modal import App\n")
    assert imported_roots(sample) & FORBIDDEN == {"fastapi", "modal"}

"""Agents that misbehave on purpose, for the run-failure tests (DASHBOARD_AGENT=...)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any


def raises(volume_path: str, experiment_context: Any, log: Any) -> dict[str, Any]:
    log.info("about to fail")
    raise ValueError("the dataset has no header row")


def exits(volume_path: str, experiment_context: Any, log: Any) -> dict[str, Any]:
    log.info("exiting hard")
    log.flush()
    os._exit(3)


def hangs(volume_path: str, experiment_context: Any, log: Any) -> dict[str, Any]:
    log.info("hanging")
    log.flush()
    time.sleep(3600)
    return {}


def chatty(volume_path: str, experiment_context: Any, log: Any) -> dict[str, Any]:
    """Logs N numbered lines (N from the context's 'lines' field, default 200)."""
    count = 200
    if isinstance(experiment_context, dict):
        count = int(experiment_context.get("lines", count))
    for i in range(count):
        log.info(f"line {i}")
    files = sorted(p.name for p in (Path(volume_path) / "data").rglob("*") if p.is_file())
    return {"artifacts": [], "summary": {"files": files}}


def uses_mapping(volume_path: str, experiment_context: Any, log: Any) -> dict[str, Any]:
    """An agent that posts by itself, using log['url'] and log['token']."""
    import httpx

    httpx.post(
        log["url"],
        json={"message": "posted by hand", "level": "warning"},
        headers={"Authorization": f"Bearer {log['token']}"},
        timeout=10,
    ).raise_for_status()
    return {"summary": {"ok": True}}


def tabulates(volume_path: str, experiment_context: Any, log: Any) -> dict[str, Any]:
    """Logs a line per file (plus one long unbroken line) and returns a per-file table."""
    import hashlib
    import json

    data = Path(volume_path) / "data"
    rows = []
    for path in sorted(p for p in data.rglob("*") if p.is_file()):
        relative = path.relative_to(data).as_posix()
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        size = path.stat().st_size
        log.info(f"profiled {relative}: {size} bytes, sha256 {digest}")
        rows.append({"path": relative, "size": size, "sha256": digest})
    log.info("unbroken:" + "x" * 400)
    log.info("all files profiled")
    summary = {"files": rows, "count": len(rows)}
    results = Path(volume_path) / "results"
    results.mkdir(exist_ok=True)
    (results / "summary.json").write_text(json.dumps(summary))
    return {"artifacts": ["results/summary.json"], "summary": summary}


def gated(volume_path: str, experiment_context: Any, log: Any) -> dict[str, Any]:
    """Logs 'before the gate', waits (60 s at most) for the file the context's 'gate'
    names, logs 'after the gate' and succeeds: a run that outlives a web container."""
    gate = Path(experiment_context["gate"])
    log.info("before the gate")
    log.flush()
    deadline = time.monotonic() + 60
    while not gate.exists():
        if time.monotonic() > deadline:
            raise TimeoutError("the gate never opened")
        time.sleep(0.02)
    log.info("after the gate")
    log.flush()
    return {"artifacts": [], "summary": {"gated": True}}

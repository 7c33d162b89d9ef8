"""Child-process entry point of a local agent run: ``python -m dashboard.agent.worker JOB``.

The job file names the agent (``module:function``), the volume, the context and the
HTTP log target. The outcome is written atomically to the job's ``result_path`` as
``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "Type: message"}``; the exit
code is 0 or 1. Anything else (a crash, a signal) is judged by the parent from the code.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dashboard.agent.log import AgentLog
from dashboard.storage import read_json, write_json_atomic

AgentFunction = Callable[[str, Any, AgentLog], Any]


def load_agent(spec: str) -> AgentFunction:
    """Import ``module:function``."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"agent must be 'module:function', got {spec!r}")
    function = getattr(importlib.import_module(module_name), attr)
    if not callable(function):
        raise TypeError(f"{spec} is not callable")
    return function  # type: ignore[no-any-return]


def describe_exception(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    log = AgentLog(job["log_url"], job["log_token"])
    try:
        agent = load_agent(job["agent"])
        result = agent(job["volume_path"], job["experiment_context"], log)
        if result is None:
            result = {}
        if not isinstance(result, dict):
            result = {"summary": {"value": repr(result)}}
        return {"ok": True, "result": result}
    except Exception as exc:
        try:
            log.error(f"agent failed: {describe_exception(exc)}")
        except RuntimeError:
            pass
        return {"ok": False, "error": describe_exception(exc)}
    finally:
        log.close()


def main(argv: list[str]) -> int:
    job = read_json(Path(argv[1]))
    outcome = run_job(job)
    try:
        write_json_atomic(Path(job["result_path"]), outcome)
    except (TypeError, ValueError) as exc:
        outcome = {"ok": False, "error": f"the agent's result is not JSON: {exc}"}
        write_json_atomic(Path(job["result_path"]), outcome)
    return 0 if outcome["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))

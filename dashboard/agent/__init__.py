"""The processing agent: runs in its own process (a local child process, or a Modal Function).
It may import DuckDB, httpx and ``dashboard.storage``; no web/cloud framework, no server store.

The server reaches it only by name: the runner launches ``python -m dashboard.agent.worker``,
which imports ``DASHBOARD_AGENT`` (default ``dashboard.agent.builtin:run_agent_remotely``;
``dashboard.agent:run_agent_remotely`` names the same function).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dashboard.agent.builtin import run_agent_remotely

__all__ = ["run_agent_remotely"]


def __getattr__(name: str) -> Any:
    # Resolved on first use: the worker imports this package for every agent, and only the
    # built-in one needs DuckDB loaded.
    if name == "run_agent_remotely":
        from dashboard.agent.builtin import run_agent_remotely

        return run_agent_remotely
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""The command-line client: runs on the researcher's machine, talks to a dashboard over HTTP/tus/WS.
It may import httpx, websockets, rich and the pure rules (config, context, errors, paths) only.

``dashboard/cli.py`` parses the arguments and calls :func:`run_upload`, :func:`run_follow`
or :func:`run_results`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dashboard.client.command import UploadOptions, parse_size, run_follow, run_upload
    from dashboard.client.results import run_results
    from dashboard.client.state import default_state_path

__all__ = [
    "UploadOptions",
    "default_state_path",
    "parse_size",
    "run_follow",
    "run_results",
    "run_upload",
]

_HOMES = {
    "UploadOptions": "command",
    "parse_size": "command",
    "run_follow": "command",
    "run_upload": "command",
    "run_results": "results",
    "default_state_path": "state",
}


def __getattr__(name: str) -> Any:
    # Resolved on first use, so `python -m dashboard serve` loads none of the client's
    # libraries (httpx, websockets, rich) just to build its argument parser.
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f"dashboard.client.{home}"), name)

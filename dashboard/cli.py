"""Command line: ``serve`` (the local server); ``upload`` and ``follow`` (the client)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from dashboard.config import Settings, SettingsError


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    overrides: dict[str, object] = {}
    if args.host:
        overrides["host"] = args.host
    if args.port is not None:
        overrides["port"] = args.port
    if args.data_dir:
        overrides["data_dir"] = Path(args.data_dir)
    try:
        settings = Settings.from_env().with_changes(**overrides)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    # the factory reads the environment: hand it the final values
    os.environ["DASHBOARD_HOST"] = settings.host
    os.environ["DASHBOARD_PORT"] = str(settings.port)
    os.environ["DASHBOARD_DATA_DIR"] = str(settings.data_dir)
    print(f"Dashboard on http://{settings.host}:{settings.port}/ (data in {settings.data_dir})", flush=True)  # noqa: T201
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        log_level=args.log_level,
        timeout_graceful_shutdown=5,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dashboard", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the dashboard locally")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1 or DASHBOARD_HOST)")
    serve.add_argument("--port", type=int, help="port (default 8000 or DASHBOARD_PORT / PORT)")
    serve.add_argument("--data-dir", help="where volumes live (default ./.dashboard-data)")
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(func=_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code

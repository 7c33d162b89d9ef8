"""Command line: ``serve`` (the local server); ``upload``, ``follow`` and ``results`` (the
client)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from dashboard.client.chunking import DEFAULT_PARALLEL, MAX_PARALLEL
from dashboard.config import DEFAULT_CHUNK_SIZE, Settings, SettingsError


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
    print(  # noqa: T201
        f"Dashboard on http://{settings.host}:{settings.port}/ (data in {settings.data_dir})",
        flush=True,
    )
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        log_level=args.log_level,
        timeout_graceful_shutdown=5,
    )
    return 0


UPLOAD_EPILOG = """\
exit codes: 0 the run succeeded, 1 it failed (the error is printed), 2 bad usage or
invalid input (nothing is uploaded; also a file over the server's size limit, checked
before a session is created), 3 the server cannot be reached, 130 interrupted.

resume: an interrupted upload (Ctrl-C, lost network, killed process) continues from the
server's offsets when the same command is re-run. The session and upload addresses are
kept in {state}
(override with $DASHBOARD_CLIENT_STATE; $XDG_CACHE_HOME is honoured), keyed by the server
URL, the files' absolute paths, sizes and mtimes, and the context. The entry is kept after
the run starts, so a re-run whose follow was interrupted just follows that session again;
it is removed once the run's outcome has been printed (or right after the start with
--no-follow), so the next run of the same command creates a new session. --new-session
ignores a saved entry.

example:
  python -m dashboard upload data/ notes.txt --context "Drug trial, dose column in mg"
  python -m dashboard upload data/ --context @context.json --url http://lab-host:8000
"""


def _size(raw: str) -> int:
    from dashboard.client import parse_size

    try:
        return parse_size(raw)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _count(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a whole number: {raw!r}") from exc
    if not 1 <= value <= MAX_PARALLEL:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_PARALLEL}")
    return value


def _upload(args: argparse.Namespace) -> int:
    from dashboard.client import UploadOptions, run_upload

    options = UploadOptions(
        paths=list(args.paths),
        context=args.context,
        url=args.url,
        chunk_size=args.chunk_size,
        follow=not args.no_follow,
        new_session=args.new_session,
        limit_rate=args.limit_rate,
        parallel=args.parallel,
    )
    return run_upload(options)


def _follow(args: argparse.Namespace) -> int:
    from dashboard.client import run_follow

    return run_follow(args.session_id, args.url)


def _results(args: argparse.Namespace) -> int:
    from dashboard.client import run_results

    return run_results(args.session_id, args.url, args.out)


def _url_help() -> str:
    return "dashboard address (default $DASHBOARD_URL or http://127.0.0.1:8000)"


def build_parser() -> argparse.ArgumentParser:
    from dashboard.client import default_state_path

    parser = argparse.ArgumentParser(prog="python -m dashboard", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the dashboard locally")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1 or DASHBOARD_HOST)")
    serve.add_argument("--port", type=int, help="port (default 8000 or DASHBOARD_PORT / PORT)")
    serve.add_argument("--data-dir", help="where volumes live (default ./.dashboard-data)")
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(func=_serve)

    upload = sub.add_parser(
        "upload",
        help="upload files or folders resumably, start the run, print its log",
        description="Upload files or folders over tus (resumable), start the processing run "
        "and follow its live log until it ends.",
        epilog=UPLOAD_EPILOG.format(state=default_state_path()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    upload.add_argument(
        "paths", nargs="+", metavar="PATH",
        help="files or folders; a folder's files keep their paths under the folder's name",
    )
    upload.add_argument(
        "--context", required=True, metavar="TEXT|@FILE",
        help="experiment context: free text, a JSON object with a \"description\", "
        "or @file to read it from a file",
    )
    upload.add_argument("--url", help=_url_help())
    upload.add_argument(
        "--chunk-size", type=_size, default=DEFAULT_CHUNK_SIZE, metavar="N",
        help="the largest request body, e.g. 8M (default 8M); each request is sized to "
        "about a second of transfer at the measured rate, from 256K up to this",
    )
    upload.add_argument(
        "--parallel", type=_count, default=DEFAULT_PARALLEL, metavar="N",
        help=f"files in flight at once (default {DEFAULT_PARALLEL}); a small file goes up in "
        "one request with its creation, so many small files cost about one round trip "
        "per N files",
    )
    upload.add_argument(
        "--no-follow", action="store_true",
        help="exit 0 once the run has started, printing the session id",
    )
    upload.add_argument(
        "--new-session", action="store_true",
        help="ignore a saved interrupted upload of the same files and start a new session",
    )
    upload.add_argument(
        "--limit-rate", type=_size, metavar="N",
        help="send at most N bytes per second (e.g. 10M)",
    )
    upload.set_defaults(func=_upload)

    follow = sub.add_parser(
        "follow",
        help="print an existing session's live feed until its run ends",
        description="Follow a session's events (logs, status) until its run ends; exit 0 if "
        "it succeeded, 1 if it failed, 2 for a malformed or unknown id, 3 if the server "
        "cannot be reached.",
    )
    follow.add_argument("session_id", metavar="SESSION_ID", help="32 lowercase hex characters")
    follow.add_argument("--url", help=_url_help())
    follow.set_defaults(func=_follow)

    results = sub.add_parser(
        "results",
        help="download a session's results and print its profile table",
        description="Download every artifact of a session's run (resumable: an interrupted "
        "download continues where it stopped when the command is run again) and print one "
        "row per profiled file. Exit 0 when downloaded, 1 when there is nothing to download, "
        "2 for a malformed or unknown id, 3 if the server cannot be reached.",
    )
    results.add_argument("session_id", metavar="SESSION_ID", help="32 lowercase hex characters")
    results.add_argument(
        "--out", metavar="DIR", help="where to put the files (default ./results-<SESSION_ID>)"
    )
    results.add_argument("--url", help=_url_help())
    results.set_defaults(func=_results)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code

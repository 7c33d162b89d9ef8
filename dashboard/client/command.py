"""The command-line client: resumable tus uploads, starting the run, following the feed.

Framework-free (httpx, websockets and rich only). ``dashboard/cli.py`` parses the
arguments and calls :func:`run_upload` or :func:`run_follow`, which return the exit code:
0 the run succeeded, 1 it failed (or the server refused something), 2 bad usage or input,
3 the server cannot be reached, 130 interrupted.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dashboard.client.chunking import DEFAULT_PARALLEL, ChunkSizer
from dashboard.client.follow import Follower
from dashboard.client.http import (
    DEFAULT_URL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    SESSION_ID,
    URL_ENV,
    Api,
    ClientError,
    RateLimit,
    ResumeImpossible,
    UsageError,
    problem_detail,
)
from dashboard.client.limits import fetch_upload_limit, oversize_message
from dashboard.client.output import Output, UploadProgress
from dashboard.client.results import print_outcome
from dashboard.client.state import StateEntry, StateStore, state_key
from dashboard.client.stored import wait_until_stored
from dashboard.client.upload import LocalFile, Uploader
from dashboard.config import DEFAULT_CHUNK_SIZE
from dashboard.context import ExperimentContext, validate_context
from dashboard.errors import InvalidInput
from dashboard.paths import clean_relative_path


def collect_files(paths: Sequence[str]) -> list[LocalFile]:
    """Every regular file of the given files or folders, with the path sent to the server:
    a file argument is sent as its name, a folder's files as ``<folder name>/<path inside>``."""
    found: list[LocalFile] = []
    seen: dict[str, Path] = {}
    for raw in paths:
        given = Path(raw).expanduser()
        if not given.exists():
            raise UsageError(f"{raw}: no such file or folder.")
        absolute = given.resolve()
        if absolute.is_file():
            pairs = [(absolute, absolute.name)]
        elif absolute.is_dir():
            pairs = []
            for folder, dirs, names in os.walk(absolute):
                dirs.sort()
                for name in sorted(names):
                    full = Path(folder) / name
                    if full.is_file():
                        inside = full.relative_to(absolute).as_posix()
                        pairs.append((full, f"{absolute.name}/{inside}"))
        else:
            raise UsageError(f"{raw}: not a regular file or folder.")
        for full, relative in pairs:
            try:
                relative = clean_relative_path(relative)
            except InvalidInput as exc:
                raise UsageError(f"{full}: cannot be uploaded: {exc.detail}") from exc
            if relative in seen:
                if seen[relative] == full:
                    continue
                raise UsageError(
                    f"two files would be uploaded as {relative!r}: {seen[relative]} and {full}."
                )
            seen[relative] = full
            stat = full.stat()
            found.append(LocalFile(full, relative, stat.st_size, stat.st_mtime_ns))
    if not found:
        raise UsageError("no files to upload in " + ", ".join(paths) + ".")
    return found


def load_context(raw: str | None) -> ExperimentContext:
    """``--context TEXT`` or ``--context @file``, validated as the server will."""
    if raw is None:
        raise UsageError("--context is required: describe the experiment (text, JSON or @file).")
    text = raw
    if raw.startswith("@"):
        source = Path(raw[1:]).expanduser()
        try:
            text = source.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read the context file {source}: {exc}") from exc
    try:
        return validate_context(text, parse_json_text=True)
    except InvalidInput as exc:
        raise UsageError(exc.detail) from exc


def normalise_url(raw: str | None) -> str:
    url = (raw or os.environ.get(URL_ENV) or DEFAULT_URL).strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"--url must be an http:// or https:// address, got {url!r}.")
    return url


def parse_size(raw: str) -> int:
    """``8388608``, ``512K``, ``8M``, ``1G`` or ``8MiB`` → bytes (binary multiples)."""
    match = re.fullmatch(r"\s*(\d+)\s*([kKmMgG]?)(?:i?[bB])?\s*", raw)
    if not match:
        raise ValueError(f"not a size: {raw!r}")
    unit: int = 1024 ** " KMG".index((match.group(2) or " ").upper())
    value = int(match.group(1)) * unit
    if value <= 0:
        raise ValueError("must be positive")
    return value


# -- HTTP ---------------------------------------------------------------------------------


@dataclass
class UploadOptions:
    paths: list[str]
    context: str | None
    url: str | None = None
    chunk_size: int = DEFAULT_CHUNK_SIZE
    follow: bool = True
    new_session: bool = False
    limit_rate: int | None = None
    state_path: Path | None = None
    parallel: int = DEFAULT_PARALLEL


def _follow(api: Api, out: Output, session_id: str, ws_path: str, *, uploads: bool) -> int:
    quiet = frozenset() if uploads else frozenset({"created", "uploading"})
    follower = Follower(api, out, session_id, ws_path, show_uploads=uploads, quiet_states=quiet)
    return follower.run()


def _links(session_id: str, links: Any) -> dict[str, str]:
    base = f"/api/sessions/{session_id}"
    defaults = {"files": f"{base}/files", "run": f"{base}/run", "ws": f"{base}/ws"}
    if isinstance(links, dict):
        defaults.update({str(k): str(v) for k, v in links.items()})
    return defaults


class UploadCommand:
    def __init__(self, options: UploadOptions, out: Output, store: StateStore) -> None:
        self.options = options
        self.out = out
        self.store = store

    def run(self) -> int:
        options = self.options
        url = normalise_url(options.url)
        files = collect_files(options.paths)
        context = load_context(options.context)
        key = state_key(url, [(str(f.path), f.size, f.mtime_ns) for f in files], context.to_json())
        api = Api(url)
        try:
            # every file against the server's limit before anything is created
            message = oversize_message(
                [(f.relative, f.size) for f in files], fetch_upload_limit(api)
            )
            if message:
                raise UsageError(message)
            try:
                return self._run(api, url, key, files, context)
            except ResumeImpossible as exc:
                self.out.line(f"cannot continue the saved session ({exc}); starting a new one.")
                self.store.drop(key)
                return self._run(api, url, key, files, context)
        finally:
            api.close()

    def _run(
        self, api: Api, url: str, key: str, files: list[LocalFile], context: ExperimentContext
    ) -> int:
        options, out = self.options, self.out
        entry = None if options.new_session else self.store.get(key)
        view: dict[str, Any] | None = None
        if entry is not None:
            view = api.session(entry.session_id)
            if view is None:
                out.line(f"the saved session {entry.session_id} is gone; starting a new one.")
                self.store.drop(key)
                entry = None
            elif view.get("run") is not None:
                out.line(f"session {entry.session_id} already has a run; following it.")
                return self._after_start(api, key, entry)
            else:
                out.line(f"resuming session {entry.session_id} (state file {self.store.path})")
        if entry is None:
            response = api.request(
                "POST", "/api/sessions", json={"experiment_context": context.value}
            )
            if response.status_code == 422:
                raise UsageError(problem_detail(response))
            if response.status_code != 201:
                raise ClientError(f"creating the session failed: {problem_detail(response)}")
            created = response.json()
            sid = str(created["session_id"])
            entry = StateEntry(url=url, session_id=sid, links=_links(sid, created.get("links")))
            self.store.put(key, entry)
            out.line(f"session {sid} (volume {created.get('volume_name', '')})")
        self._upload_all(api, key, entry, files, view)
        wait_until_stored(api, out, entry.session_id)  # POST /run is 409 until then
        response = api.request("POST", entry.links["run"])
        if response.status_code == 409:
            latest = api.session(entry.session_id)
            if latest is None or latest.get("run") is None:
                raise ClientError(f"the run could not start: {problem_detail(response)}")
        elif response.status_code != 202:
            raise ClientError(f"the run could not start: {problem_detail(response)}")
        out.line("run started")
        if not options.follow:
            self.store.drop(key)
            out.line(
                f"session {entry.session_id}: follow it with "
                f"`python -m dashboard follow {entry.session_id}`"
            )
            return EXIT_OK
        entry.run_started = True
        self.store.put(key, entry)
        return self._after_start(api, key, entry)

    def _after_start(self, api: Api, key: str, entry: StateEntry) -> int:
        if not self.options.follow:
            self.out.line(f"session {entry.session_id}")
            self.store.drop(key)
            return EXIT_OK
        code = _follow(api, self.out, entry.session_id, entry.links["ws"], uploads=False)
        self.store.drop(key)  # the outcome has been reported: a re-run starts afresh
        try:
            print_outcome(
                api, self.out, entry.session_id, state="succeeded" if code == EXIT_OK else None
            )
        except ClientError as exc:  # the run's outcome stands; only the table is missing
            self.out.error(f"could not read the results: {exc}")
        return code

    def _upload_all(
        self,
        api: Api,
        key: str,
        entry: StateEntry,
        files: list[LocalFile],
        view: dict[str, Any] | None,
    ) -> None:
        server_files: dict[str, dict[str, Any]] = {}
        if view is not None:
            for item in view.get("files") or []:
                if isinstance(item, dict):
                    server_files[str(item.get("path"))] = item
        saving = threading.Lock()

        def save_url(relative: str, upload_url: str) -> None:
            with saving:
                entry.uploads[relative] = upload_url
                self.store.put(key, entry)

        uploader = Uploader(
            api,
            entry.session_id,
            entry.links["files"],
            ChunkSizer(self.options.chunk_size),
            save_url,
            RateLimit(self.options.limit_rate),
        )
        started = time.monotonic()
        total = sum(f.size for f in files)
        with UploadProgress(self.out, total, len(files)) as progress:
            todo: list[tuple[LocalFile, str | None]] = []
            for local in files:
                known = server_files.get(local.relative)
                if known and known.get("done") and known.get("length") == local.size:
                    progress.skip(local.relative, local.size)
                    continue
                url = entry.uploads.get(local.relative)
                if known and url is None:
                    url = known.get("url") if isinstance(known.get("url"), str) else None
                    if url is None:
                        raise ResumeImpossible(
                            f"{local.relative} was started but its upload address is unknown"
                        )
                    url = api.url(url)
                todo.append((local, url))
            run_lanes(todo, self.options.parallel, lambda job: uploader.upload(*job, progress))
        elapsed = time.monotonic() - started
        rate = len(files) / elapsed if elapsed > 0 else 0.0
        self.out.line(
            f"uploaded {len(files)} file(s), {total} bytes: sent {uploader.sent} bytes "
            f"in {elapsed:.3f} s ({rate:.1f} files/s, {uploader.requests} requests, "
            f"{min(self.options.parallel, max(len(todo), 1))} in flight)"
        )


def run_lanes(
    jobs: Sequence[tuple[LocalFile, str | None]],
    lanes: int,
    work: Callable[[tuple[LocalFile, str | None]], None],
) -> None:
    """Run ``work`` over ``jobs`` on up to ``lanes`` threads. The first failure stops the
    lanes from taking new jobs and is raised once the jobs in flight have ended. The threads
    are daemons and the main thread waits in short steps, so Ctrl-C ends the command."""
    pending = list(reversed(jobs))
    lock = threading.Lock()
    failures: list[BaseException] = []

    def lane() -> None:
        while True:
            with lock:
                if failures or not pending:
                    return
                job = pending.pop()
            try:
                work(job)
            except BaseException as exc:
                with lock:
                    failures.append(exc)
                return

    threads = [
        threading.Thread(target=lane, name=f"upload-lane-{i}", daemon=True)
        for i in range(max(1, min(lanes, len(jobs))))
    ]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            while thread.is_alive():
                thread.join(0.2)
    except KeyboardInterrupt:
        with lock:
            pending.clear()
        raise
    if failures:
        raise failures[0]


def guard(out: Output, body: Callable[[], int], interrupted: str) -> int:
    try:
        return body()
    except ClientError as exc:
        out.error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        out.error(interrupted)
        return EXIT_INTERRUPTED


def run_upload(options: UploadOptions, out: Output | None = None) -> int:
    out = out or Output()
    store = StateStore(options.state_path) if options.state_path else None
    if store is None:
        from dashboard.client.state import default_state_path

        store = StateStore(default_state_path())
    command = UploadCommand(options, out, store)
    return guard(
        out, command.run, "interrupted; re-run the same command to resume where it stopped."
    )


def run_follow(session_id: str, url: str | None, out: Output | None = None) -> int:
    out = out or Output()

    def body() -> int:
        if not SESSION_ID.fullmatch(session_id):
            raise UsageError(f"{session_id!r} is not a session id (32 lowercase hex characters).")
        api = Api(normalise_url(url))
        try:
            view = api.session(session_id)
            if view is None:
                raise UsageError(f"there is no session {session_id} on {api.base_url}.")
            ws_path = f"/api/sessions/{session_id}/ws"
            out.line(f"session {session_id}: {view.get('state')}")
            return _follow(api, out, session_id, ws_path, uploads=True)
        finally:
            api.close()

    return guard(
        out, body, f"interrupted; follow again with `python -m dashboard follow {session_id}`."
    )

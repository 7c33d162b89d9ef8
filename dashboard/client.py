"""The command-line client: resumable tus uploads, starting the run, following the feed.

Framework-free (httpx, websockets and rich only). ``dashboard/cli.py`` parses the
arguments and calls :func:`run_upload` or :func:`run_follow`, which return the exit code:
0 the run succeeded, 1 it failed (or the server refused something), 2 bad usage or input,
3 the server cannot be reached, 130 interrupted.
"""

from __future__ import annotations

import base64
import json
import mimetypes
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlencode, urljoin, urlsplit

import httpx
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import connect as ws_connect

from dashboard.client_state import StateEntry, StateStore, state_key
from dashboard.config import DEFAULT_CHUNK_SIZE
from dashboard.context import ExperimentContext, validate_context
from dashboard.errors import InvalidInput
from dashboard.paths import clean_relative_path

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130

DEFAULT_URL = "http://127.0.0.1:8000"
URL_ENV = "DASHBOARD_URL"
TUS_VERSION = "1.0.0"
OFFSET_CONTENT_TYPE = "application/offset+octet-stream"
READ_BLOCK = 256 * 1024  # bytes read from disk at a time inside one PATCH body
MAX_ATTEMPTS = 8  # consecutive failures before giving up (backoff 0.5 s doubling, max 10 s)
BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 10.0
RETRY_STATUSES = frozenset({500, 502, 503, 504})
SESSION_ID = re.compile(r"^[0-9a-f]{32}$")
TERMINAL = frozenset({"succeeded", "failed"})
PLAIN_MARKS = (25, 50, 75)  # percent marks printed per file when stdout is not a terminal


# -- errors -------------------------------------------------------------------------------
class ClientError(Exception):
    """A failure the command reports as one message and an exit code."""

    exit_code = EXIT_FAILED


class UsageError(ClientError):
    exit_code = EXIT_USAGE


class Unreachable(ClientError):
    exit_code = EXIT_UNREACHABLE


class ResumeImpossible(ClientError):
    """The saved session cannot be continued; the caller starts a fresh one."""


def backoff(attempt: int) -> float:
    return float(min(BACKOFF_MAX_S, BACKOFF_START_S * 2 ** max(0, attempt - 1)))


def problem_detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        detail = body.get("detail") or body.get("title")
        if isinstance(detail, str) and detail:
            return detail
    text = response.text.strip()
    return text[:300] if text else f"HTTP {response.status_code}"


# -- output -------------------------------------------------------------------------------
class Output:
    """Lines for people: rich on a terminal, plain text (no escape codes) otherwise."""

    def __init__(self, stdout: TextIO | None = None, stderr: TextIO | None = None) -> None:
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.console = Console(file=self.stdout, highlight=False)
        self.is_terminal = self.console.is_terminal

    def line(self, text: str, style: str | None = None) -> None:
        if self.is_terminal:
            self.console.print(text, style=style, markup=False, highlight=False, soft_wrap=True)
        else:
            self.stdout.write(text + "\n")
            self.stdout.flush()

    def error(self, text: str) -> None:
        self.stdout.flush()
        self.stderr.write(f"error: {text}\n")
        self.stderr.flush()


class UploadProgress:
    """Progress of every file and of the whole upload; plain lines when not on a terminal."""

    def __init__(self, out: Output, total_bytes: int, files: int) -> None:
        self.out = out
        self.total = total_bytes
        self.files = files
        self.index = 0
        self.current: str | None = None
        self.length = 0
        self.position = 0
        self.marks_done: set[int] = set()
        self._progress: Progress | None = None
        self._overall: TaskID | None = None
        self._task: TaskID | None = None
        if out.is_terminal:
            self._progress = Progress(
                TextColumn("{task.description}", markup=False),
                BarColumn(),
                DownloadColumn(binary_units=True),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=out.console,
            )
            self._progress.start()
            self._overall = self._progress.add_task(
                f"all {files} file(s)", total=max(total_bytes, 1)
            )

    def __enter__(self) -> UploadProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def _say(self, text: str) -> None:
        if self._progress is not None:
            self._progress.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            self.out.line(text)

    def _tag(self) -> str:
        return f"[{self.index}/{self.files}]"

    def skip(self, relative: str, length: int) -> None:
        self.index += 1
        self._say(f"{self._tag()} {relative}: already uploaded ({length} bytes)")
        if self._progress is not None and self._overall is not None:
            self._progress.advance(self._overall, length)

    def start(self, relative: str, length: int, offset: int) -> None:
        self.index += 1
        self.current, self.length, self.position = relative, length, offset
        percent = _percent(offset, length)
        self.marks_done = {m for m in PLAIN_MARKS if m <= percent}
        if self._progress is not None and self._overall is not None:
            self._progress.advance(self._overall, offset)
            self._task = self._progress.add_task(
                f"{self._tag()} {relative}", total=max(length, 1), completed=offset
            )
        elif offset:
            self._say(f"{self._tag()} {relative}: resuming at {offset} of {length} bytes "
                      f"({percent}%)")
        else:
            self._say(f"{self._tag()} {relative}: 0% of {length} bytes")

    def advance(self, nbytes: int) -> None:
        self.set_position(self.position + nbytes)

    def set_position(self, offset: int) -> None:
        delta = offset - self.position
        self.position = offset
        if self._progress is not None:
            if self._task is not None:
                self._progress.update(self._task, completed=offset)
            if self._overall is not None:
                self._progress.advance(self._overall, delta)
            return
        percent = _percent(offset, self.length)
        for mark in PLAIN_MARKS:
            if mark <= percent and mark not in self.marks_done and offset < self.length:
                self.marks_done.add(mark)
                self._say(f"{self._tag()} {self.current}: {mark}% of {self.length} bytes")

    def done(self) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.remove_task(self._task)
            self._task = None
        self._say(f"{self._tag()} {self.current}: 100% of {self.length} bytes, done")


def _percent(offset: int, length: int) -> int:
    return 100 if length <= 0 else int(offset * 100 // length)


# -- input --------------------------------------------------------------------------------
@dataclass(frozen=True)
class LocalFile:
    path: Path
    relative: str
    size: int
    mtime_ns: int


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
class Api:
    """httpx with the client's retry policy: the first contact fails fast (exit 3);
    afterwards network errors and 5xx answers are retried with backoff."""

    def __init__(self, base_url: str, *, timeout: float = 60.0) -> None:
        self.base_url = base_url
        self.http = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=10.0),
            headers={"User-Agent": "dataset-dashboard-cli/1.0"},
        )
        self.contacted = False

    def close(self) -> None:
        self.http.close()

    def url(self, path: str) -> str:
        return urljoin(self.base_url + "/", path)

    def unreachable(self, exc: Exception) -> Unreachable:
        if self.contacted:
            return Unreachable(
                f"lost the connection to {self.base_url} ({exc}); re-run the same command "
                "to resume."
            )
        return Unreachable(f"cannot reach the dashboard at {self.base_url}: {exc or type(exc)}")

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = self.http.request(method, self.url(url), **kwargs)
            except httpx.TransportError as exc:
                if not self.contacted:
                    raise self.unreachable(exc) from exc
                attempt += 1
                if attempt >= MAX_ATTEMPTS:
                    raise self.unreachable(exc) from exc
                time.sleep(backoff(attempt))
                continue
            self.contacted = True
            if response.status_code in RETRY_STATUSES and attempt + 1 < MAX_ATTEMPTS:
                attempt += 1
                time.sleep(backoff(attempt))
                continue
            return response

    def session(self, session_id: str) -> dict[str, Any] | None:
        """GET the session; None when the server does not know it."""
        response = self.request("GET", f"/api/sessions/{session_id}")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise ClientError(f"reading session {session_id} failed: {problem_detail(response)}")
        body: dict[str, Any] = response.json()
        return body


def ws_url(http_url: str) -> str:
    if http_url.startswith("https://"):
        return "wss://" + http_url[len("https://"):]
    if http_url.startswith("http://"):
        return "ws://" + http_url[len("http://"):]
    return http_url


# -- uploads ------------------------------------------------------------------------------
class RateLimit:
    def __init__(self, bytes_per_s: int | None) -> None:
        self.rate = bytes_per_s
        self.start = time.monotonic()
        self.count = 0

    def wait(self, nbytes: int) -> None:
        if not self.rate:
            return
        self.count += nbytes
        due = self.start + self.count / self.rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)


@dataclass
class Uploader:
    api: Api
    session_id: str
    files_url: str
    chunk_size: int
    save_url: Callable[[str, str], None]
    rate: RateLimit = field(default_factory=lambda: RateLimit(None))
    sent: int = 0  # body bytes this process handed to the network

    def _metadata(self, local: LocalFile) -> str:
        pairs = {"relativePath": local.relative, "filename": local.path.name}
        kind, _ = mimetypes.guess_type(local.path.name)
        if kind:
            pairs["filetype"] = kind
        return ",".join(
            f"{key} {base64.b64encode(value.encode()).decode('ascii')}"
            for key, value in pairs.items()
        )

    def create(self, local: LocalFile) -> str:
        response = self.api.request(
            "POST",
            self.files_url,
            headers={
                "Tus-Resumable": TUS_VERSION,
                "Upload-Length": str(local.size),
                "Upload-Metadata": self._metadata(local),
            },
        )
        if response.status_code == 201 and response.headers.get("location"):
            url = urljoin(self.api.url(self.files_url), response.headers["location"])
            self.save_url(local.relative, url)
            return url
        if response.status_code == 409:
            raise ResumeImpossible(
                f"{local.relative}: the session refused a new upload ({problem_detail(response)})"
            )
        if response.status_code in (400, 413, 422):
            raise UsageError(f"{local.relative}: {problem_detail(response)}")
        raise ClientError(
            f"{local.relative}: creating the upload failed: {problem_detail(response)}"
        )

    def head(self, url: str) -> int | None:
        """The server's offset, or None when the upload is gone (expired or unknown)."""
        attempt = 0
        while True:
            response = self.api.request("HEAD", url, headers={"Tus-Resumable": TUS_VERSION})
            if response.status_code in (404, 410):
                return None
            if response.status_code == 200 and response.headers.get("upload-offset"):
                return int(response.headers["upload-offset"])
            attempt += 1
            if response.status_code == 423 and attempt < MAX_ATTEMPTS:
                time.sleep(backoff(attempt))
                continue
            raise ClientError(f"reading an upload's offset failed: {problem_detail(response)}")

    def _body(self, local: LocalFile, offset: int, size: int, progress: UploadProgress
              ) -> Iterator[bytes]:
        with open(local.path, "rb") as handle:
            handle.seek(offset)
            remaining = size
            while remaining:
                block = handle.read(min(READ_BLOCK, remaining))
                if not block:
                    raise ClientError(f"{local.path} got shorter while it was being uploaded.")
                remaining -= len(block)
                self.rate.wait(len(block))
                self.sent += len(block)
                progress.advance(len(block))
                yield block

    def upload(self, local: LocalFile, url: str | None, progress: UploadProgress) -> None:
        """Send ``local`` from the server's offset to the end, resuming after any failure."""
        current = os.stat(local.path)
        if current.st_size != local.size or current.st_mtime_ns != local.mtime_ns:
            raise ClientError(f"{local.path} changed since the command started; re-run it.")
        offset = self.head(url) if url else None
        if url is None or offset is None:
            url, offset = self.create(local), 0
        progress.start(local.relative, local.size, offset)
        must_patch = True  # an empty file still needs one (empty) PATCH to complete
        failures = 0
        while offset < local.size or (local.size == 0 and must_patch):
            size = min(self.chunk_size, local.size - offset)
            headers = {
                "Tus-Resumable": TUS_VERSION,
                "Content-Type": OFFSET_CONTENT_TYPE,
                "Upload-Offset": str(offset),
                "Content-Length": str(size),
            }
            try:
                response = self.api.http.patch(
                    url, content=self._body(local, offset, size, progress), headers=headers
                )
            except httpx.TransportError as exc:
                failures += 1
                if failures >= MAX_ATTEMPTS:
                    raise self.api.unreachable(exc) from exc
                time.sleep(backoff(failures))
                offset = self._refresh(local, url)
                if offset is None:
                    url, offset = self.create(local), 0
                progress.set_position(offset)
                continue
            status = response.status_code
            if status == 204:
                failures = 0
                must_patch = False
                offset = int(response.headers.get("upload-offset", offset + size))
                progress.set_position(offset)
                continue
            failures += 1
            if failures >= MAX_ATTEMPTS:
                raise ClientError(f"{local.relative}: {problem_detail(response)}")
            if status in (404, 410):
                url, offset = self.create(local), 0
            elif status in (409, 423) or status in RETRY_STATUSES:
                if status != 409:
                    time.sleep(backoff(failures))
                must_patch = status != 409
                fresh = self._refresh(local, url)
                if fresh is None:
                    url, fresh = self.create(local), 0
                offset = fresh
            else:
                raise ClientError(f"{local.relative}: the server refused a chunk: "
                                  f"{problem_detail(response)}")
            progress.set_position(offset)
        progress.done()

    def _refresh(self, local: LocalFile, url: str) -> int | None:
        offset = self.head(url)
        if offset is not None and offset > local.size:
            raise ClientError(f"{local.relative}: the server holds more bytes than the file has.")
        return offset


# -- following ----------------------------------------------------------------------------
@dataclass
class Follower:
    """Prints a session's feed until its terminal status; reconnects with ``since``."""

    api: Api
    out: Output
    session_id: str
    ws_path: str
    show_uploads: bool = True
    quiet_states: frozenset[str] = frozenset()
    since: int | None = None
    final: str | None = None
    error: str | None = None
    _last_state: str | None = None

    def _ws_address(self) -> str:
        address = ws_url(self.api.url(self.ws_path))
        if self.since is not None:
            address += "?" + urlencode({"since": self.since})
        return address

    def handle(self, envelope: Any) -> None:
        if not isinstance(envelope, dict):
            return
        kind = envelope.get("type")
        if kind == "reset":
            first = envelope.get("first_seq")
            self.out.line(f"(the server no longer holds events before #{first})")
            return
        seq = envelope.get("seq")
        if isinstance(seq, int):
            self.since = seq if self.since is None else max(self.since, seq)
        data = envelope.get("data")
        if not isinstance(data, dict):
            return
        if kind == "log":
            level = str(data.get("level", "info"))
            style = {"error": "red", "warning": "yellow", "debug": "dim"}.get(level)
            self.out.line(f"[{level}] {data.get('message', '')}", style)
        elif kind == "status":
            self._status(str(data.get("state")), data.get("error"))
        elif kind == "upload":
            if self.show_uploads and data.get("done"):
                self.out.line(f"uploaded {data.get('path')} ({data.get('length')} bytes)")
        elif kind == "result":
            artifacts = data.get("artifacts") or []
            names = ", ".join(str(a) for a in artifacts[:10])
            more = f" and {len(artifacts) - 10} more" if len(artifacts) > 10 else ""
            self.out.line(f"result: {len(artifacts)} artifact(s){': ' + names if names else ''}"
                          f"{more}")

    def _status(self, state: str, error: Any) -> None:
        if state in TERMINAL:
            if self.final is None:
                self.final = state
                self.error = str(error) if error else None
                if state == "succeeded":
                    self.out.line("status: succeeded", "green")
                else:
                    self.out.line("status: failed", "red")
                    self.out.error(f"the run failed: {self.error or 'no reason given'}")
            return
        if state != self._last_state and state not in self.quiet_states:
            self.out.line(f"status: {state}")
        self._last_state = state

    def _read(self) -> None:
        with ws_connect(self._ws_address(), open_timeout=10, close_timeout=2, max_size=None) as ws:
            while True:
                try:
                    frame = ws.recv(timeout=1.0)
                except TimeoutError:
                    continue
                try:
                    batch = json.loads(frame)
                except ValueError:
                    continue
                for envelope in batch if isinstance(batch, list) else [batch]:
                    self.handle(envelope)
                if self.final is not None:
                    return

    def run(self) -> int:
        failures = 0
        while self.final is None:
            try:
                self._read()
                failures = 0
            except ConnectionClosed as exc:
                if exc.rcvd is not None and exc.rcvd.code in (1008, 1013):
                    failures = 0  # cut off as a slow reader: resume at once from self.since
            except InvalidStatus as exc:
                failures += 1
                if exc.response.status_code in (403, 404) and self.api.session(
                    self.session_id
                ) is None:
                    raise ClientError(f"session {self.session_id} no longer exists.") from exc
            except (OSError, InvalidHandshake, TimeoutError) as exc:
                failures += 1
                if failures >= MAX_ATTEMPTS:
                    raise self.api.unreachable(exc) from exc
            if self.final is not None:
                break
            # the socket closed without a terminal status: ask the server directly, since
            # a restarted server numbers its events afresh and ``since`` may be ahead of it
            view = self.api.session(self.session_id)
            if view is None:
                raise ClientError(f"session {self.session_id} no longer exists.")
            run = view.get("run")
            if isinstance(run, dict) and run.get("state") in TERMINAL:
                self._status(str(run["state"]), run.get("error"))
                break
            if failures:
                time.sleep(backoff(failures))
        return EXIT_OK if self.final == "succeeded" else EXIT_FAILED


# -- commands -----------------------------------------------------------------------------
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
        key = state_key(
            url, [(str(f.path), f.size, f.mtime_ns) for f in files], context.to_json()
        )
        api = Api(url)
        try:
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
            out.line(f"session {entry.session_id}: follow it with "
                     f"`python -m dashboard follow {entry.session_id}`")
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

        def save_url(relative: str, upload_url: str) -> None:
            entry.uploads[relative] = upload_url
            self.store.put(key, entry)

        uploader = Uploader(
            api,
            entry.session_id,
            entry.links["files"],
            self.options.chunk_size,
            save_url,
            RateLimit(self.options.limit_rate),
        )
        started = time.monotonic()
        total = sum(f.size for f in files)
        with UploadProgress(self.out, total, len(files)) as progress:
            for local in files:
                known = server_files.get(local.relative)
                if known and known.get("done") and known.get("length") == local.size:
                    progress.skip(local.relative, local.size)
                    continue
                if known and local.relative not in entry.uploads:
                    raise ResumeImpossible(
                        f"{local.relative} was started but its upload address was not saved"
                    )
                uploader.upload(local, entry.uploads.get(local.relative), progress)
        elapsed = time.monotonic() - started
        self.out.line(
            f"uploaded {len(files)} file(s), {total} bytes: sent {uploader.sent} bytes "
            f"in {elapsed:.1f} s"
        )


def _guard(out: Output, body: Callable[[], int], interrupted: str) -> int:
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
        from dashboard.client_state import default_state_path

        store = StateStore(default_state_path())
    command = UploadCommand(options, out, store)
    return _guard(
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

    return _guard(out, body, f"interrupted; follow again with `python -m dashboard follow "
                             f"{session_id}`.")

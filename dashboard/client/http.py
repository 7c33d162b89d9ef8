"""The client's HTTP side: exit codes, errors, retries and the dashboard's API."""

from __future__ import annotations

import re
import threading
import time
from typing import Any
from urllib.parse import urljoin

import httpx

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130

DEFAULT_URL = "http://127.0.0.1:8000"
URL_ENV = "DASHBOARD_URL"
TUS_VERSION = "1.0.0"
OFFSET_CONTENT_TYPE = "application/offset+octet-stream"
READ_BLOCK = 64 * 1024  # bytes read at a time inside one body (the bar moves per block)
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
        return "wss://" + http_url[len("https://") :]
    if http_url.startswith("http://"):
        return "ws://" + http_url[len("http://") :]
    return http_url


# -- uploads ------------------------------------------------------------------------------
class RateLimit:
    """At most ``bytes_per_s`` over every upload lane together (thread-safe)."""

    def __init__(self, bytes_per_s: int | None) -> None:
        self.rate = bytes_per_s
        self.start = time.monotonic()
        self.count = 0
        self._lock = threading.Lock()

    def wait(self, nbytes: int) -> None:
        if not self.rate:
            return
        with self._lock:
            self.count += nbytes
            due = self.start + self.count / self.rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)

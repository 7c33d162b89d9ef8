"""The agent's ``log`` argument: where to POST log lines, and a batching sender.

An agent may use it in either style: ``log.url`` / ``log.token`` or ``log["url"]`` /
``log["token"]`` to post by itself, or ``log.info("...")`` and friends, which batch lines
and POST them as ``{"records": [...]}`` from a background thread.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import httpx

FLUSH_INTERVAL_S = 0.2  # a line waits at most this long before it is posted
MAX_BATCH = 500  # records per POST
POST_TIMEOUT_S = 10.0
POST_ATTEMPTS = 4
LEVELS = ("debug", "info", "warning", "error")


class AgentLog(Mapping[str, str]):
    """HTTP logging target of one session's run."""

    def __init__(self, url: str, token: str, *, flush_interval: float = FLUSH_INTERVAL_S) -> None:
        self.url = url
        self.token = token
        self._flush_interval = flush_interval
        self._buffer: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._closed = False
        self._client: httpx.Client | None = None
        self._thread: threading.Thread | None = None
        self.dropped = 0

    # -- mapping style -------------------------------------------------------------
    def __getitem__(self, key: str) -> str:
        if key == "url":
            return self.url
        if key == "token":
            return self.token
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(("url", "token"))

    def __len__(self) -> int:
        return 2

    def __repr__(self) -> str:  # never print the token
        return f"AgentLog(url={self.url!r})"

    # -- logging style -------------------------------------------------------------
    def log(self, level: str, message: str) -> None:
        level = level if level in LEVELS else "info"
        record = {"level": level, "message": str(message), "ts": _now()}
        with self._cond:
            if self._closed:
                raise RuntimeError("the log is closed")
            self._buffer.append(record)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="agent-log", daemon=True)
                self._thread.start()
            if len(self._buffer) >= MAX_BATCH:
                self._cond.notify()

    def debug(self, message: str) -> None:
        self.log("debug", message)

    def info(self, message: str) -> None:
        self.log("info", message)

    def warning(self, message: str) -> None:
        self.log("warning", message)

    def error(self, message: str) -> None:
        self.log("error", message)

    def flush(self) -> None:
        """Post everything buffered now, from the calling thread."""
        with self._cond:
            batch, self._buffer = self._buffer, []
        self._post(batch)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join()
        self.flush()
        if self._client is not None:
            self._client.close()

    def __enter__(self) -> AgentLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- sending -------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._closed and len(self._buffer) < MAX_BATCH:
                    self._cond.wait(self._flush_interval)
                batch, self._buffer = self._buffer[:MAX_BATCH], self._buffer[MAX_BATCH:]
                closed = self._closed
            self._post(batch)
            if closed:
                return

    def _post(self, batch: list[dict[str, Any]]) -> None:
        for start in range(0, len(batch), MAX_BATCH):
            self._post_once(batch[start : start + MAX_BATCH])

    def _post_once(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        if self._client is None:
            self._client = httpx.Client(timeout=POST_TIMEOUT_S)
        headers = {"Authorization": f"Bearer {self.token}"}
        delay = 0.2
        for attempt in range(POST_ATTEMPTS):
            try:
                resp = self._client.post(self.url, json={"records": records}, headers=headers)
                if resp.status_code < 500:
                    if resp.status_code >= 400:
                        self._report(f"log POST refused: {resp.status_code}")
                        self.dropped += len(records)
                    return
            except httpx.HTTPError as exc:
                if attempt == POST_ATTEMPTS - 1:
                    self._report(f"log POST failed: {exc}")
            time.sleep(delay)
            delay *= 2
        self.dropped += len(records)

    @staticmethod
    def _report(text: str) -> None:
        print(f"[agent-log] {text}", file=sys.stderr)  # noqa: T201 - last resort channel


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

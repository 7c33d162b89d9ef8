"""Following a session's WebSocket feed, reconnecting with ``since``."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import connect as ws_connect

from dashboard.client.http import (
    EXIT_FAILED,
    EXIT_OK,
    MAX_ATTEMPTS,
    TERMINAL,
    Api,
    ClientError,
    backoff,
    ws_url,
)
from dashboard.client.output import Output


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
            self.out.line(
                f"result: {len(artifacts)} artifact(s){': ' + names if names else ''}{more}"
            )

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
                if (
                    exc.response.status_code in (403, 404)
                    and self.api.session(self.session_id) is None
                ):
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

"""``python -m dashboard results SID``: download a session's artifacts, print the profile.

Every artifact listed by ``GET /api/sessions/{sid}/artifacts`` is saved under ``--out``
(default ``./results-<sid>/``) at its path inside ``results/``. A download goes to
``<file>.part`` first and is renamed when complete; an interrupted one continues from the
``.part`` file's size with ``Range`` (and ``If-Range``, so a file that changed on the server
since starts over). A file already downloaded whole (same size and ETag, kept in
``.dashboard-results.json`` in the folder) is not fetched again.

The table printed afterwards (and at the end of ``upload``) is one row per profiled file
of ``summary.json``: path, kind, rows, columns, size and the flagged columns.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from dashboard.client.http import (
    EXIT_FAILED,
    EXIT_OK,
    SESSION_ID,
    Api,
    ClientError,
    UsageError,
    problem_detail,
)
from dashboard.client.output import Output
from dashboard.errors import InvalidInput
from dashboard.paths import clean_relative_path

STATE_FILE = ".dashboard-results.json"
WRITE_BLOCK = 1024 * 1024
MAX_NAME = 48  # path column width of the table


# -- the table ------------------------------------------------------------------------------
def human_size(size: Any) -> str:
    if not isinstance(size, int | float):
        return "-"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1) :]


def summary_table(summary: Any) -> list[str]:
    """The compact per-file table of a ``summary.json`` (text lines, no colour)."""
    files = summary.get("files") if isinstance(summary, dict) else None
    if not isinstance(files, list) or not files:
        return ["(no files in the summary)"]
    rows: list[list[str]] = []
    errors: list[str] = []
    for entry in files:
        if not isinstance(entry, dict):
            continue
        columns = entry.get("columns") if isinstance(entry.get("columns"), list) else []
        is_table = entry.get("kind") == "table" and not entry.get("error")
        flagged = [
            str(c.get("name")) for c in columns or [] if isinstance(c, dict) and c.get("flagged")
        ]
        if entry.get("error"):
            errors.append(f"{entry.get('path')}: {entry['error']}")
        rows.append(
            [
                _cut(str(entry.get("path", "?")), MAX_NAME),
                str(entry.get("kind", "?")) + (" (unreadable)" if entry.get("error") else ""),
                f"{entry['rows']:,}" if isinstance(entry.get("rows"), int) else "-",
                str(len(columns or [])) if is_table else "-",
                human_size(entry.get("size")),
                ", ".join(flagged) if flagged else "-",
            ]
        )
    headers = ["path", "kind", "rows", "columns", "size", "flagged"]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    right = {2, 3, 4}

    def fmt(cells: Sequence[str]) -> str:
        parts = [
            c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(cells)
        ]
        return "  ".join(parts).rstrip()

    lines = [fmt(headers), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows)]
    return lines + [f"unreadable: {e}" for e in errors]


def artifacts_base(view: dict[str, Any], session_id: str) -> str:
    links = view.get("links")
    if isinstance(links, dict) and isinstance(links.get("artifacts"), str):
        return str(links["artifacts"])
    return f"/api/sessions/{session_id}/artifacts"


def listing(api: Api, base: str) -> list[dict[str, Any]]:
    response = api.request("GET", base)
    if response.status_code != 200:
        raise ClientError(f"listing the results failed: {problem_detail(response)}")
    items = response.json().get("artifacts")
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


def fetch_summary(api: Api, base: str) -> Any:
    response = api.request("GET", f"{base}/summary.json")
    if response.status_code != 200:
        return None
    try:
        return response.json()
    except ValueError:
        return None


def print_outcome(api: Api, out: Output, session_id: str, *, state: str | None) -> None:
    """The end of ``upload``: the page's link for the session, and the table."""
    out.line(f"results: {api.base_url}/?session={session_id}")
    view = api.session(session_id) or {}
    base = artifacts_base(view, session_id)
    if state != "succeeded":
        return
    summary = fetch_summary(api, base)
    if summary is None:
        out.line("(no summary.json among the results)")
        return
    out.line(
        f"files: {api.url(base)} (download them with `python -m dashboard results {session_id}`)"
    )
    for row in summary_table(summary):
        out.line(row)


# -- downloading ----------------------------------------------------------------------------
def _target(out_dir: Path, name: str) -> Path:
    """Where an artifact goes: its path inside results/, by the client's own path rules."""
    try:
        clean = clean_relative_path(name, field="artifact")
    except InvalidInput as exc:
        raise ClientError(f"the server listed an unsafe artifact name {name!r}") from exc
    if any(part.startswith(".") for part in clean.split("/")):
        raise ClientError(f"the server listed an unsafe artifact name {name!r}")
    target = out_dir.joinpath(*clean.split("/"))
    for parent in [target, *target.parents]:
        if parent == out_dir:
            break
        if parent.is_symlink():
            raise ClientError(f"{parent} is a symbolic link; not writing through it")
    return target


class _State:
    """``{name: {"etag", "size"}}`` of the files downloaded whole into this folder."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / STATE_FILE
        try:
            loaded = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            loaded = {}
        self.entries: dict[str, Any] = loaded if isinstance(loaded, dict) else {}

    def get(self, name: str) -> dict[str, Any]:
        found = self.entries.get(name)
        return found if isinstance(found, dict) else {}

    def put(self, name: str, **values: Any) -> None:
        self.entries[name] = values
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.entries, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, self.path)


def download(api: Api, item: dict[str, Any], target: Path, state: _State) -> tuple[str, int]:
    """Fetch one artifact into ``target``; (what happened, bytes received)."""
    name = str(item["name"])
    size = int(item.get("size") or 0)
    known = state.get(name)
    if target.is_file() and target.stat().st_size == size and known.get("size") == size:
        head = api.request("HEAD", str(item["url"]))
        if head.status_code == 200 and head.headers.get("etag") == known.get("etag"):
            return "already here", 0
    part = target.with_name(target.name + ".part")
    target.parent.mkdir(parents=True, exist_ok=True)
    offset = part.stat().st_size if part.is_file() else 0
    partial_etag = known.get("partial_etag")
    for _attempt in range(2):
        headers = {}
        if offset and partial_etag:
            headers = {"Range": f"bytes={offset}-", "If-Range": str(partial_etag)}
        status, etag, total, received = _fetch(api, name, str(item["url"]), headers, part, state)
        if status != 416:
            break
        offset = 0  # the partial file is no prefix of the file as it is now: start over
        part.unlink(missing_ok=True)
    else:
        raise ClientError(f"{name}: the server refused every range")
    final = part.stat().st_size
    if final != total:
        raise ClientError(
            f"{name}: the download stopped at {final} of {total} bytes; run the command again "
            "to continue it."
        )
    os.replace(part, target)
    state.put(name, etag=etag, size=final)
    return (f"resumed at {offset} bytes" if status == 206 else "downloaded"), received


def _fetch(
    api: Api, name: str, url: str, headers: dict[str, str], part: Path, state: _State
) -> tuple[int, str, int, int]:
    """One GET into ``part`` (appended on 206, rewritten on 200): (status, ETag, the
    file's total size, bytes received)."""
    received = 0
    try:
        with api.http.stream("GET", api.url(url), headers=headers) as response:
            status = response.status_code
            if status == 416:
                return status, "", 0, 0
            if status not in (200, 206):
                response.read()
                raise ClientError(f"{name}: the download failed: {problem_detail(response)}")
            etag = response.headers.get("etag", "")
            if status == 206:
                total = int(response.headers["content-range"].rsplit("/", 1)[-1])
            else:
                total = int(response.headers.get("content-length", "-1"))
            api.contacted = True
            with part.open("ab" if status == 206 else "wb") as fh:
                # remembered before the first byte: an interrupted download resumes
                # only against this same version of the file
                state.put(name, partial_etag=etag)
                for chunk in response.iter_bytes(WRITE_BLOCK):
                    fh.write(chunk)
                    received += len(chunk)
                fh.flush()
                os.fsync(fh.fileno())
    except httpx.TransportError as exc:
        raise api.unreachable(exc) from exc
    return status, etag, total, received


def run_results(
    session_id: str, url: str | None, out_dir: str | None, out: Output | None = None
) -> int:
    """The ``results`` command: 0 downloaded, 1 nothing to download or a refusal, 2 bad
    usage or an unknown session, 3 the server cannot be reached, 130 interrupted."""
    from dashboard.client.command import guard, normalise_url

    shown = out or Output()
    return guard(
        shown,
        lambda: _results(session_id, normalise_url(url), out_dir, shown),
        f"interrupted; run `python -m dashboard results {session_id}` again to continue.",
    )


def _results(session_id: str, url: str, out_dir: str | None, out: Output) -> int:
    if not SESSION_ID.fullmatch(session_id):
        raise UsageError(f"{session_id!r} is not a session id (32 lowercase hex characters).")
    folder = Path(out_dir or f"results-{session_id}").expanduser()
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--out {folder} exists and is not a folder.")
    api = Api(url)
    try:
        view = api.session(session_id)
        if view is None:
            raise UsageError(f"there is no session {session_id} on {api.base_url}.")
        base = artifacts_base(view, session_id)
        items = listing(api, base)
        state_name = view.get("state")
        if not items:
            out.line(f"session {session_id} ({state_name}) has no results yet.")
            return EXIT_FAILED
        folder.mkdir(parents=True, exist_ok=True)
        folder = folder.resolve()
        state = _State(folder)
        out.line(f"session {session_id} ({state_name}): {len(items)} artifact(s) to {folder}")
        for item in items:
            target = _target(folder, str(item.get("name")))
            what, received = download(api, item, target, state)
            out.line(
                f"  {item.get('name')}: {human_size(item.get('size'))}, {what}"
                + (f" ({received} bytes received)" if received else "")
            )
        out.line(f"results in {folder}")
        summary_path = folder / "summary.json"
        if summary_path.is_file():
            try:
                summary = json.loads(summary_path.read_text(encoding="utf-8"))
            except ValueError:
                summary = None
            for row in summary_table(summary):
                out.line(row)
        return EXIT_OK
    finally:
        api.close()

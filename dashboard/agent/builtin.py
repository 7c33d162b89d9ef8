"""The built-in processing agent: a DuckDB profile of every uploaded file.

``run_agent_remotely(volume_path, experiment_context, log)`` walks ``<volume>/data/``,
profiles each file (see :mod:`dashboard.agent.profile`), relates the profile to the experiment
context (see :mod:`dashboard.agent.context_match`), logs every step through ``log`` and
writes ``results/summary.json`` and ``results/report.md``. A file that cannot be parsed is
reported and skipped; a run with no readable file raises ``ValueError``.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import duckdb

from dashboard.agent import profile as profiling
from dashboard.agent.context_match import ContextInfo, find_column, flag_reasons, load_context
from dashboard.agent.report import render

HEARTBEAT_S = 3.0
"""A long step logs "still profiling ..." this often."""
ARTIFACTS = ["results/summary.json", "results/report.md"]
MAX_COMPACT_FILES = 200
MAX_COMPACT_COLUMNS = 500  # rows of the per-column table sent in the result event
"""The compact summary lists at most this many files (summary.json has them all)."""
FORMAT_NAMES = {"csv": "CSV", "tsv": "TSV", "parquet": "Parquet", "json": "JSON"}


class Log(Protocol):
    """What the agent uses of :class:`dashboard.agent.log.AgentLog`."""

    def debug(self, message: str) -> None: ...
    def info(self, message: str) -> None: ...
    def warning(self, message: str) -> None: ...


class Heartbeat:
    """Logs ``still <label> (N s)`` every ``interval`` seconds until the block ends."""

    def __init__(
        self,
        log: Log,
        label: str,
        status: Callable[[], str | None] | None = None,
        interval: float = HEARTBEAT_S,
    ) -> None:
        self._log = log
        self._label = label
        self._status = status
        self._interval = interval
        self._stop = threading.Event()
        self._start = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="agent-heartbeat", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            detail = self._status() if self._status is not None else None
            elapsed = time.monotonic() - self._start
            suffix = f": {detail}" if detail else ""
            self._log.info(f"still {self._label}{suffix} ({elapsed:.0f} s)")

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()


def list_data_files(data: Path) -> list[tuple[str, Path]]:
    """Regular files under ``data`` as (posix path relative to data, path), sorted."""
    found: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(data):
        dirnames.sort()
        for name in filenames:
            path = Path(dirpath) / name
            if path.is_file():
                found.append((path.relative_to(data).as_posix(), path))
    found.sort()
    return found


class _Run:
    def __init__(self, volume: Path, context: ContextInfo, log: Log) -> None:
        self.volume = volume
        self.context = context
        self.log = log
        self.files: list[dict[str, Any]] = []
        self.group_stats: list[dict[str, Any]] = []
        self.rows_so_far = 0

    # -- one file -----------------------------------------------------------------------
    def profile_other(self, rel: str, path: Path, size: int, note: str | None = None) -> None:
        entry: dict[str, Any] = {"path": rel, "kind": "other", "size": size, "rows": None}
        entry["columns"] = []
        self.files.append(entry)
        mime, description = profiling.detect_type(path)
        entry.update(type=mime, description=note or description)
        done = [0]
        label = f"hashing {rel}"
        try:
            with Heartbeat(self.log, label, lambda: f"{profiling.describe_size(done[0])} read"):
                entry["sha256"] = profiling.sha256_file(path, lambda n: done.__setitem__(0, n))
        except OSError as exc:
            entry["error"] = f"cannot be read: {exc.strerror or exc}"
            self.log.warning(f"{rel}: {entry['error']}")
            return
        self.log.info(f"{rel}: {description} ({mime}), {profiling.describe_size(size)}")

    def profile_table(
        self, con: duckdb.DuckDBPyConnection, rel: str, path: Path, fmt: str, size: int
    ) -> None:
        started = time.monotonic()
        exact = profiling.wants_exact(path, fmt, size)
        entry: dict[str, Any] = {
            "path": rel,
            "kind": "table",
            "format": fmt,
            "size": size,
            "rows": None,
            "columns": [],
        }
        self.files.append(entry)
        self.log.info(
            f"profiling {rel} ({FORMAT_NAMES[fmt]}, {profiling.describe_size(size)}, "
            f"{'exact' if exact else 'streamed'})"
        )

        def progress() -> str | None:
            pct = profiling.query_progress(con)
            return f"{pct:.0f}% done" if pct is not None else None

        source: profiling.TableSource | None = None
        try:
            with Heartbeat(self.log, f"profiling {rel}", progress):
                source, rows, columns = self._read_table(con, rel, path, fmt, exact)
                entry.update(rows=rows, columns=columns, exact=exact)
                entry["duplicate_rows"] = profiling.duplicate_rows(source)
                self.rows_so_far += rows
                self._relate(source, entry)
        except duckdb.Error as exc:
            reason = profiling.clean_error(exc, path, rel)
            entry["error"] = reason
            self.log.warning(f"{rel}: cannot be read as {FORMAT_NAMES[fmt]}: {reason}")
            return
        finally:
            if source is not None:
                source.drop()
        took = time.monotonic() - started
        entry["seconds"] = round(took, 3)
        self.log.info(
            f"{rel}: {entry['rows']:,} rows, {len(entry['columns'])} columns in {took:.2f} s "
            f"({self.rows_so_far:,} rows so far)"
        )

    def _read_table(
        self, con: duckdb.DuckDBPyConnection, rel: str, path: Path, fmt: str, exact: bool
    ) -> tuple[profiling.TableSource, int, list[dict[str, Any]]]:
        """Open and profile; reread when a type changes after the sniffed sample, and fall
        back to counting rows and nulls when a column type defeats an aggregate."""
        source: profiling.TableSource | None = None
        try:
            source = profiling.open_table(con, path, fmt, exact=exact)
            self.log.debug(f"{rel}: {len(source.columns)} columns; computing statistics")
            try:
                rows, columns = profiling.profile_columns(source)
            except (duckdb.BinderException, duckdb.NotImplementedException) as exc:
                reason = profiling.clean_error(exc, path, rel)
                self.log.warning(f"{rel}: counting rows and nulls only ({reason})")
                rows, columns = profiling.profile_columns(source, minimal=True)
            else:
                self._details(source, rel, columns)
            return source, rows, columns
        except duckdb.Error as exc:
            if source is not None:
                source.drop()
            if not profiling.is_conversion_error(exc):
                raise
        self.log.info(f"{rel}: a column changes type after the sample; reading it all to type it")
        source = profiling.open_table(con, path, fmt, exact=exact, full_sample=True)
        try:
            rows, columns = profiling.profile_columns(source)
        except duckdb.Error:
            source.drop()
            raise
        self._details(source, rel, columns)
        return source, rows, columns

    def _details(
        self, source: profiling.TableSource, rel: str, columns: list[dict[str, Any]]
    ) -> None:
        """Histograms and top counts (a second pass when streamed); a failure costs only
        the pictures, never the file's profile."""
        what = "histograms and top values" + ("" if source.exact else " (a second read)")
        self.log.debug(f"{rel}: computing {what}")
        try:
            profiling.profile_details(source, columns)
        except duckdb.Error as exc:
            reason = profiling.clean_error(exc, source.path, rel)
            self.log.warning(f"{rel}: no histograms or top values ({reason})")

    def _relate(self, source: profiling.TableSource, entry: dict[str, Any]) -> None:
        for column in entry["columns"]:
            reasons = flag_reasons(self.context, column["name"])
            if reasons:
                column["flagged"] = True
                column["flag_reasons"] = reasons
        names = [c.name for c in source.columns]
        by_name = {c.name: c for c in source.columns}
        target_name = find_column(names, self.context.target) if self.context.target else None
        group_names = [g for g in (find_column(names, g) for g in self.context.groups) if g]
        group_names = [g for g in dict.fromkeys(group_names) if g != target_name]
        if not group_names:
            return
        target = by_name[target_name] if target_name else None
        what = f"{target_name} by " if target else "group sizes by "
        self.log.info(f"{entry['path']}: computing {what}{', '.join(group_names)}")
        try:
            stats = profiling.group_stats(source, target, [by_name[g] for g in group_names])
        except duckdb.Error as exc:
            reason = profiling.clean_error(exc, source.path, entry["path"])
            entry["group_stats_error"] = reason
            self.log.warning(f"{entry['path']}: no per-group statistics: {reason}")
            return
        stats["path"] = entry["path"]
        self.group_stats.append(stats)

    # -- whole run ----------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        flags = [
            {"path": f["path"], "column": c["name"], "reasons": c["flag_reasons"]}
            for f in self.files
            for c in f["columns"]
            if c.get("flagged")
        ]
        flagged = sorted({f["column"] for f in flags})
        present = {c["name"].lower() for f in self.files for c in f["columns"]}
        unknown = [n for n in self.context.named_columns() if n.lower() not in present]
        return {
            "files": self.files,
            "context": {**self.context.to_json(), "unknown_columns": unknown},
            "flagged_columns": flagged,
            "flags": flags,
            "unknown_columns": unknown,
            "group_stats": self.group_stats,
        }


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def compact(summary: dict[str, Any]) -> dict[str, Any]:
    """What the dashboard shows: counts, one small row per file and one per column."""
    files = summary["files"]
    per_column = [
        {
            "file": f["path"],
            "column": c["name"],
            "type": c["type"],
            "nulls": c["nulls"],
            "min": _rounded(c.get("min")),
            "max": _rounded(c.get("max")),
            "mean": _rounded(c.get("mean")),
            "std": _rounded(c.get("std")),
        }
        for f in files
        if f["kind"] == "table" and not f.get("error")
        for c in f["columns"]
    ]
    return {
        "files": len(files),
        "tables": sum(1 for f in files if f["kind"] == "table" and not f.get("error")),
        "other_files": sum(1 for f in files if f["kind"] == "other"),
        "unreadable": sum(1 for f in files if f.get("error")),
        "rows_total": sum(f["rows"] or 0 for f in files),
        "flagged_columns": summary["flagged_columns"],
        "unknown_columns": summary["unknown_columns"],
        "per_file": [
            {
                "path": f["path"],
                "kind": f["kind"],
                "rows": f["rows"],
                "columns": (
                    len(f["columns"]) if f["kind"] == "table" and not f.get("error") else None
                ),
                "error": f.get("error"),
            }
            for f in files[:MAX_COMPACT_FILES]
        ],
        "per_file_truncated": len(files) > MAX_COMPACT_FILES,
        "per_column": per_column[:MAX_COMPACT_COLUMNS],
        "per_column_truncated": len(per_column) > MAX_COMPACT_COLUMNS,
    }


def _rounded(value: Any) -> Any:
    return round(value, 6) if isinstance(value, float) else value


def run_agent_remotely(
    volume_path: str, experiment_context: str | dict[str, Any], log: Log
) -> dict[str, Any]:
    """Profile ``<volume_path>/data/`` and write ``results/summary.json`` and ``report.md``.

    Returns ``{"artifacts": [...], "summary": {...}}`` where the summary is compact (see
    :func:`compact`). Raises ``ValueError`` when no data file can be read.
    """
    started = time.monotonic()
    volume = Path(volume_path)
    data = volume / "data"
    results = volume / "results"
    context = load_context(volume, experiment_context)
    files = list_data_files(data) if data.is_dir() else []
    if not files:
        raise ValueError(f"no readable data file: nothing was uploaded ({data} is empty)")
    total = sum(p.stat().st_size for _, p in files)
    log.info(f"profiling {len(files)} files ({profiling.describe_size(total)})")
    run = _Run(volume, context, log)
    with (
        tempfile.TemporaryDirectory(prefix="agent-duckdb-") as tmp,
        profiling.connect(tmp) as con,
    ):
        for rel, path in files:
            size = path.stat().st_size
            fmt = profiling.table_format(path)
            if size == 0:
                run.profile_other(rel, path, size, note="empty file")
            elif fmt is None:
                run.profile_other(rel, path, size)
            else:
                run.profile_table(con, rel, path, fmt, size)
    readable = [f for f in run.files if not f.get("error") and f.get("size")]
    if not readable:
        reasons = "; ".join(
            f"{f['path']}: {f.get('error') or f.get('description')}" for f in run.files
        )
        raise ValueError(f"no readable data file: {reasons}"[:1000])
    summary = run.summary()
    results.mkdir(parents=True, exist_ok=True)
    _write(results / "summary.json", json.dumps(summary, indent=2, allow_nan=False) + "\n")
    _write(results / "report.md", render(summary))
    small = compact(summary)
    log.info(
        f"profiled {small['files']} files ({small['tables']} tables, "
        f"{small['rows_total']:,} rows, {small['unreadable']} unreadable) in "
        f"{time.monotonic() - started:.2f} s; wrote {', '.join(ARTIFACTS)}"
    )
    if summary["flagged_columns"]:
        log.info("columns the context names: " + ", ".join(summary["flagged_columns"]))
    if summary["unknown_columns"]:
        log.warning("named in the context but not found: " + ", ".join(summary["unknown_columns"]))
    return {"artifacts": list(ARTIFACTS), "summary": small}

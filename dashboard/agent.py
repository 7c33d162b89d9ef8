"""The built-in processing agent (quick version; the full profiler replaces it)."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Protocol

import duckdb


class LogLike(Protocol):
    def info(self, message: str) -> None: ...
    def warning(self, message: str) -> None: ...


_READERS = {
    ".csv": "read_csv",
    ".tsv": "read_csv",
    ".parquet": "read_parquet",
    ".json": "read_json_auto",
    ".jsonl": "read_json_auto",
}


def _reader(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(".csv.gz"):
        return "read_csv"
    return _READERS.get(path.suffix.lower())


def run_agent_remotely(volume_path: str, experiment_context: str | dict[str, Any], log: Any) -> dict[str, Any]:
    root = Path(volume_path)
    data = root / "data"
    results = root / "results"
    results.mkdir(parents=True, exist_ok=True)
    files: list[dict[str, Any]] = []
    con = duckdb.connect()
    for path in sorted(p for p in data.rglob("*") if p.is_file()) if data.is_dir() else []:
        rel = path.relative_to(data).as_posix()
        t0 = time.monotonic()
        reader = _reader(path)
        entry: dict[str, Any] = {"path": rel, "size": path.stat().st_size}
        if reader is None:
            entry["kind"] = "other"
            entry["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
            entry["rows"] = None
            entry["columns"] = []
        else:
            entry["kind"] = "table"
            try:
                rel_q = str(path).replace("'", "''")
                desc = con.execute(f"DESCRIBE SELECT * FROM {reader}('{rel_q}')").fetchall()
                row = con.execute(f"SELECT count(*) FROM {reader}('{rel_q}')").fetchone()
                entry["rows"] = int(row[0]) if row else 0
                entry["columns"] = [{"name": d[0], "type": d[1]} for d in desc]
            except duckdb.Error as exc:
                entry["rows"] = None
                entry["columns"] = []
                entry["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0]
                log.warning(f"{rel}: cannot be parsed: {entry['error']}")
        files.append(entry)
        log.info(f"{rel}: {entry['kind']}, rows={entry['rows']}, {time.monotonic() - t0:.2f} s")
    if not any(f["kind"] == "table" and "error" not in f for f in files) and not any(
        f["kind"] == "other" for f in files
    ):
        raise ValueError(f"no readable data file under {data}")
    summary = {"files": files, "context": experiment_context, "flagged_columns": []}
    (results / "summary.json").write_text(json.dumps(summary, indent=2))
    lines = ["# Dataset profile", "", "| path | kind | rows |", "|---|---|---|"]
    lines += [f"| {f['path']} | {f['kind']} | {f['rows']} |" for f in files]
    (results / "report.md").write_text("\n".join(lines) + "\n")
    compact = {
        "files": len(files),
        "tables": sum(1 for f in files if f["kind"] == "table"),
        "rows_total": sum(f["rows"] or 0 for f in files),
        "flagged_columns": [],
        "per_file": [
            {"path": f["path"], "kind": f["kind"], "rows": f["rows"],
             "columns": len(f["columns"]), "error": f.get("error")}
            for f in files
        ],
    }
    log.info(f"done: {len(files)} files")
    return {"artifacts": ["results/summary.json", "results/report.md"], "summary": compact}

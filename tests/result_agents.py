"""Agents for the result-page tests (DASHBOARD_AGENT=tests.result_agents:...).

``wide_profile`` writes a summary.json shaped like the built-in agent's for 50 files × 40
columns (a flagged column and an unreadable file among them) and a report.md full of
markup that must never become live HTML.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FILES = 50
COLUMNS = 40
FLAGGED = "col_07"
UNREADABLE = "data/file_13.csv"

HOSTILE_REPORT = """# Hostile report

<script>window.__xss = "script";</script>

<img src="x" onerror="window.__xss = 'img'">

A [javascript link](javascript:window.__xss='link') and a [data link](data:text/html,<b>x</b>),
an [upper-case one](JAVASCRIPT:window.__xss='upper'), a [spaced one]( javascript:alert(1)),
![an image](x" onerror="window.__xss='image') and a [good link](https://example.org/docs).

| column | note |
|---|---|
| <b onmouseover="window.__xss='cell'">bold?</b> | `<script>` in code \\| piped |

```html
<script>window.__xss = "fence";</script>
```

- **strong** and *emphasis* and `code`
- <iframe src="javascript:window.__xss='frame'"></iframe>
"""


def column(index: int, rows: int) -> dict[str, Any]:
    name = f"col_{index:02d}"
    if index % 2 == 0:
        return {
            "name": name,
            "type": "DOUBLE",
            "kind": "numeric",
            "nulls": index,
            "non_null": rows - index,
            "min": 0.5,
            "max": 99.5,
            "mean": 50.0 + index,
            "std": 28.9,
            "quantiles": {"q25": 25.0, "q50": 50.0, "q75": 75.0},
            "q25": 25.0,
            "q50": 50.0,
            "q75": 75.0,
            "distinct": rows - index,
            "distinct_approx": False,
            "histogram": {
                "edges": [i * 10.0 for i in range(11)],
                "counts": [(i * 7 + index) % 13 + 1 for i in range(10)],
                "edges_type": "number",
            },
            "top": None,
            "top_values": [],
            "flagged": name == FLAGGED,
        }
    top = [{"value": f"level {k}", "count": 100 - k * 9} for k in range(8)]
    entry: dict[str, Any] = {
        "name": name,
        "type": "VARCHAR",
        "kind": "text",
        "nulls": 0,
        "non_null": rows,
        "min": "level 0",
        "max": "level 7",
        "mean": None,
        "std": None,
        "quantiles": None,
        "q25": None,
        "q50": None,
        "q75": None,
        "distinct": 8,
        "distinct_approx": False,
        "histogram": None,
        "top": top,
        "top_values": top,
    }
    if name == FLAGGED:
        entry.update(flagged=True, flag_reasons=["named in the description"])
    return entry


def wide_summary() -> dict[str, Any]:
    files: list[dict[str, Any]] = []
    for f in range(FILES):
        path = f"data/file_{f:02d}.csv"
        rows = 1000 + f
        if path == UNREADABLE:
            files.append(
                {
                    "path": path,
                    "kind": "table",
                    "format": "csv",
                    "size": 1234,
                    "rows": None,
                    "columns": [],
                    "error": "line 3 has 5 fields where the header has 4",
                }
            )
            continue
        files.append(
            {
                "path": path,
                "kind": "table",
                "format": "csv",
                "size": 40_000 + f,
                "rows": rows,
                "exact": True,
                "duplicate_rows": f % 3,
                "columns": [column(c, rows) for c in range(COLUMNS)],
            }
        )
    return {
        "files": files,
        "context": {"value": "wide", "unknown_columns": []},
        "flagged_columns": [FLAGGED],
        "flags": [],
        "unknown_columns": [],
        "group_stats": [],
    }


def wide_profile(volume_path: str, experiment_context: Any, log: Any) -> dict[str, Any]:
    results = Path(volume_path) / "results"
    results.mkdir(exist_ok=True)
    (results / "summary.json").write_text(json.dumps(wide_summary()))
    (results / "report.md").write_text(HOSTILE_REPORT)
    log.info("wrote a 50 × 40 profile")
    return {
        "artifacts": ["results/report.md", "results/summary.json"],
        "summary": {"files": FILES, "tables": FILES - 1},
    }

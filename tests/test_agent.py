"""The built-in agent against real generated files: numbers, errors, context, HTTP log."""

from __future__ import annotations

import bisect
import csv
import gzip
import hashlib
import io
import itertools
import json
import random
import statistics
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dashboard.agent import profile as profiling
from dashboard.agent.builtin import Heartbeat, run_agent_remotely
from dashboard.agent.context_match import ContextInfo, flag_reasons
from dashboard.agent.log import AgentLog

GROUPS = ["control", "treatment", "placebo"]


class ListLog:
    """Records lines in memory (the agent's log interface)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def _add(self, level: str, message: str) -> None:
        with self._lock:
            self.lines.append((level, message))

    def debug(self, message: str) -> None:
        self._add("debug", message)

    def info(self, message: str) -> None:
        self._add("info", message)

    def warning(self, message: str) -> None:
        self._add("warning", message)

    def error(self, message: str) -> None:
        self._add("error", message)


# -- generated data ---------------------------------------------------------------------
def make_rows(seed: int, n: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        rows.append(
            {
                "id": i,
                "score": None if i % 7 == 3 else round(rng.gauss(50, 10), 3),
                "arm": GROUPS[rng.randrange(3)],
                "label": None if i % 5 == 0 else rng.choice(["a", "b", "c", "d", "e", "f"]),
                "count": rng.randrange(-20, 100),
            }
        )
    return rows


def csv_text(rows: list[dict[str, Any]], delimiter: str = ",") -> str:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
    writer.writerow(list(rows[0]))
    for row in rows:
        writer.writerow(["" if v is None else v for v in row.values()])
    return out.getvalue()


def write_volume(root: Path) -> dict[str, list[dict[str, Any]]]:
    data = root / "data"
    (data / "nested" / "deeper").mkdir(parents=True)
    (data / "tables").mkdir()
    made: dict[str, list[dict[str, Any]]] = {}

    rows = make_rows(1, 240)
    (data / "plain.csv").write_text(csv_text(rows))
    made["plain.csv"] = rows

    rows = make_rows(2, 150)
    (data / "nested" / "deeper" / "compressed.csv.gz").write_bytes(
        gzip.compress(csv_text(rows).encode())
    )
    made["nested/deeper/compressed.csv.gz"] = rows

    rows = make_rows(3, 120)
    (data / "tables" / "tabbed.tsv").write_text(csv_text(rows, "\t"))
    made["tables/tabbed.tsv"] = rows

    rows = make_rows(4, 300)
    table = pa.table({k: [r[k] for r in rows] for k in rows[0]})
    pq.write_table(table, data / "tables" / "measures.parquet")
    made["tables/measures.parquet"] = rows

    rows = make_rows(5, 90)
    (data / "events.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    made["events.jsonl"] = rows

    (data / "broken.csv").write_text('a,b\n1,2\n3,4,5,6\n7,"never closed\n8,9\n')
    (data / "empty.csv").write_bytes(b"")
    (data / "nested" / "blob.bin").write_bytes(
        bytes(random.Random(9).randrange(256) for _ in range(5000))
    )
    (data / "nested" / "picture.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)
    return made


@pytest.fixture
def volume(tmp_path: Path) -> Iterator[tuple[Path, dict[str, list[dict[str, Any]]]]]:
    root = tmp_path / "volume"
    made = write_volume(root)
    yield root, made


def load_summary(root: Path) -> dict[str, Any]:
    def no_constants(name: str) -> None:
        raise AssertionError(f"summary.json holds {name}")

    text = (root / "results" / "summary.json").read_text()
    loaded: dict[str, Any] = json.loads(text, parse_constant=no_constants)
    return loaded


def by_path(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["path"]: f for f in summary["files"]}


def columns_of(entry: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in entry["columns"]}


def expected_top(values: list[Any], k: int = profiling.TOP_K) -> list[dict[str, Any]]:
    counts = Counter(v for v in values if v is not None)
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [{"value": v, "count": n} for v, n in ordered[:k]]


def check_numeric(column: dict[str, Any], values: list[Any]) -> None:
    present = [v for v in values if v is not None]
    assert column["kind"] == "numeric"
    assert column["nulls"] == len(values) - len(present)
    assert column["min"] == pytest.approx(min(present))
    assert column["max"] == pytest.approx(max(present))
    assert column["mean"] == pytest.approx(statistics.mean(present), rel=1e-9)
    assert column["std"] == pytest.approx(statistics.stdev(present), rel=1e-9)
    q25, q50, q75 = statistics.quantiles(present, n=4, method="inclusive")
    assert [column["q25"], column["q50"], column["q75"]] == pytest.approx([q25, q50, q75])


def check_table(entry: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    assert entry["kind"] == "table"
    assert "error" not in entry
    assert entry["rows"] == len(rows)
    cols = columns_of(entry)
    assert list(cols) == ["id", "score", "arm", "label", "count"]
    for name in ("id", "score", "count"):
        check_numeric(cols[name], [r[name] for r in rows])
    for name in ("arm", "label"):
        values = [r[name] for r in rows]
        present = [v for v in values if v is not None]
        col = cols[name]
        assert col["kind"] == "text"
        assert col["type"] == "VARCHAR"
        assert col["nulls"] == len(values) - len(present)
        assert col["distinct"] == len(set(present))
        assert col["min"] == min(present)
        assert col["max"] == max(present)
        assert col["top_values"] == expected_top(values)
        for key in ("mean", "std"):
            assert col[key] is None


# -- the profile -----------------------------------------------------------------------
def test_profile_numbers_match_independent_computation(
    volume: tuple[Path, dict[str, list[dict[str, Any]]]],
) -> None:
    root, made = volume
    log = ListLog()
    result = run_agent_remotely(str(root), "A pilot study.", log)

    assert result["artifacts"] == ["results/summary.json", "results/report.md"]
    summary = load_summary(root)
    files = by_path(summary)
    assert sorted(files) == sorted(
        [
            *made,
            "broken.csv",
            "empty.csv",
            "nested/blob.bin",
            "nested/picture.png",
        ]
    )
    for path, rows in made.items():
        check_table(files[path], rows)
    # required keys of every column, as clients rely on them
    for entry in summary["files"]:
        for col in entry["columns"]:
            assert {"name", "type", "nulls", "min", "max", "mean", "std"} <= set(col)

    blob = files["nested/blob.bin"]
    raw = (root / "data" / "nested" / "blob.bin").read_bytes()
    assert blob["kind"] == "other"
    assert blob["size"] == len(raw)
    assert blob["sha256"] == hashlib.sha256(raw).hexdigest()
    assert blob["type"] == "application/octet-stream"
    assert files["nested/picture.png"]["type"] == "image/png"
    empty = files["empty.csv"]
    assert empty["kind"] == "other"
    assert empty["size"] == 0
    assert empty["sha256"] == hashlib.sha256(b"").hexdigest()

    compact = result["summary"]
    assert compact["files"] == 9
    assert compact["tables"] == 5
    assert compact["unreadable"] == 1
    assert compact["rows_total"] == sum(len(r) for r in made.values())
    rows_by_path = {r["path"]: r for r in compact["per_file"]}
    assert rows_by_path["plain.csv"] == {
        "path": "plain.csv",
        "kind": "table",
        "rows": 240,
        "columns": 5,
        "error": None,
    }
    json.dumps(result, allow_nan=False)  # the result event must be JSON

    report = (root / "results" / "report.md").read_text()
    assert "| path | kind | size | rows | columns | note |" in report
    assert "## `tables/measures.parquet`" in report
    assert "broken.csv" in report


def test_malformed_file_is_reported_and_the_rest_profiled(
    volume: tuple[Path, dict[str, list[dict[str, Any]]]],
) -> None:
    root, made = volume
    log = ListLog()
    run_agent_remotely(str(root), "A pilot study.", log)
    broken = by_path(load_summary(root))["broken.csv"]
    assert broken["kind"] == "table"
    assert broken["rows"] is None
    assert "well-formed CSV" in broken["error"]
    warnings = [m for level, m in log.lines if level == "warning"]
    assert any(m.startswith("broken.csv: cannot be read as CSV") for m in warnings)
    infos = [m for level, m in log.lines if level == "info"]
    for path, rows in made.items():
        assert any(m.startswith(f"{path}: {len(rows):,} rows") for m in infos), path


def test_streamed_profile_on_large_files(
    volume: tuple[Path, dict[str, list[dict[str, Any]]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above the exact limit, one pass: exact counts and moments, approximate quartiles."""
    monkeypatch.setattr(profiling, "EXACT_MAX_BYTES", 0)
    root, made = volume
    run_agent_remotely(str(root), "A pilot study.", ListLog())
    files = by_path(load_summary(root))
    for path, rows in made.items():
        entry = files[path]
        assert entry["exact"] is False
        assert entry["rows"] == len(rows)
        cols = columns_of(entry)
        for name in ("score", "count"):
            present = [r[name] for r in rows if r[name] is not None]
            col = cols[name]
            assert col["nulls"] == len(rows) - len(present)
            assert col["min"] == pytest.approx(min(present))
            assert col["max"] == pytest.approx(max(present))
            assert col["mean"] == pytest.approx(statistics.mean(present))
            assert col["std"] == pytest.approx(statistics.stdev(present))
            assert min(present) <= col["q25"] <= col["q50"] <= col["q75"] <= max(present)
            assert col["q50"] == pytest.approx(statistics.median(present), abs=5)
        arm = cols["arm"]
        assert arm["distinct"] == 3
        assert arm["distinct_exact"] is False
        assert arm["top_values"][0]["value"] == expected_top([r["arm"] for r in rows])[0]["value"]
        assert {t["value"] for t in arm["top_values"]} == set(GROUPS)


def expected_histogram_counts(values: list[Any], edges: list[Any]) -> list[int]:
    """Counts per bin [e_i, e_i+1), the last bin closed, by bisection (not the agent's
    arithmetic)."""
    counts = [0] * (len(edges) - 1)
    for v in values:
        i = bisect.bisect_right(edges, v) - 1
        counts[min(i, len(counts) - 1)] += 1
    return counts


def check_histogram(column: dict[str, Any], values: list[Any], *, integer: bool) -> None:
    present = [v for v in values if v is not None]
    hist = column["histogram"]
    assert hist["edges_type"] == "number"
    edges, counts = hist["edges"], hist["counts"]
    assert 1 <= len(counts) <= 20
    assert len(edges) == len(counts) + 1
    assert sum(counts) == len(present)
    assert edges[0] == min(present)
    assert edges == sorted(edges)
    if integer:
        assert all(isinstance(e, int) for e in edges)
        widths = {b - a for a, b in itertools.pairwise(edges)}
        assert len(widths) == 1  # equal integer steps
        assert edges[-1] > max(present)
        assert counts == expected_histogram_counts(present, edges)
    else:
        assert edges[-1] == pytest.approx(max(present))
        want = expected_histogram_counts(present, edges)
        # a float that sits on an edge (to the last bit) may fall either side of it
        on_edge = sum(1 for v in present for e in edges[1:-1] if abs(v - e) < 1e-9)
        assert sum(abs(a - b) for a, b in zip(counts, want, strict=True)) <= 2 * on_edge


def check_pictures(entry: dict[str, Any], rows: list[dict[str, Any]], *, exact: bool) -> None:
    """The issue-15 keys: distinct, quantiles, histogram, top, duplicate_rows."""
    cols = columns_of(entry)
    for name in ("id", "score", "count"):
        values = [r[name] for r in rows]
        present = [v for v in values if v is not None]
        col = cols[name]
        assert col["distinct_approx"] is (not exact)
        assert col["distinct"] == pytest.approx(len(set(present)), rel=0 if exact else 0.1)
        assert col["quantiles"] == {"q25": col["q25"], "q50": col["q50"], "q75": col["q75"]}
        assert col["top"] is None
        check_histogram(col, values, integer=name != "score")
    for name in ("arm", "label"):
        values = [r[name] for r in rows]
        col = cols[name]
        assert col["histogram"] is None
        assert col["quantiles"] is None
        want = expected_top(values, 10)
        if exact:
            assert col["top"] == want
            assert col["top_approx"] is False
        else:
            # streamed: the candidates are approximate, their counts exact
            assert col["top_approx"] is True
            counts = Counter(v for v in values if v is not None)
            assert col["top"]
            assert all(t["count"] == counts[t["value"]] for t in col["top"])
            assert [t["count"] for t in col["top"]] == sorted(
                (t["count"] for t in col["top"]), reverse=True
            )
        assert col["top_values"] == col["top"]
    if exact:
        assert entry["duplicate_rows"] == 0  # every row has its own id
    else:
        assert entry["duplicate_rows"] is None


def test_histograms_top_values_and_distinct_on_real_files(
    volume: tuple[Path, dict[str, list[dict[str, Any]]]],
) -> None:
    root, made = volume
    run_agent_remotely(str(root), "A pilot study.", ListLog())
    files = by_path(load_summary(root))
    for path, rows in made.items():
        assert files[path]["exact"] is True
        check_pictures(files[path], rows, exact=True)


def test_histograms_and_top_counts_when_streamed(
    volume: tuple[Path, dict[str, list[dict[str, Any]]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(profiling, "EXACT_MAX_BYTES", 0)
    root, made = volume
    run_agent_remotely(str(root), "A pilot study.", ListLog())
    files = by_path(load_summary(root))
    for path, rows in made.items():
        assert files[path]["exact"] is False
        check_pictures(files[path], rows, exact=False)


def test_duplicate_rows_small_ranges_and_constant_columns(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    rows = [(i % 4, "same", 2.5) for i in range(10)] + [(0, "same", 2.5)] * 3
    (data / "dups.csv").write_text(
        "level,word,const\n" + "".join(f"{a},{b},{c}\n" for a, b, c in rows)
    )
    run_agent_remotely(str(tmp_path), "dups", ListLog())
    entry = load_summary(tmp_path)["files"][0]
    assert entry["duplicate_rows"] == len(rows) - len(set(rows))
    assert f"{len(rows) - len(set(rows))} duplicate rows." in (
        tmp_path / "results" / "report.md"
    ).read_text()
    cols = columns_of(entry)
    # four integer values: one bin each
    assert cols["level"]["histogram"]["edges"] == [0, 1, 2, 3, 4]
    assert cols["level"]["histogram"]["counts"] == [
        sum(1 for r in rows if r[0] == v) for v in range(4)
    ]
    # one value: one bin holding every row
    assert cols["const"]["histogram"] == {
        "edges": [2.5, 2.5],
        "counts": [len(rows)],
        "edges_type": "number",
    }
    assert cols["word"]["top"] == [{"value": "same", "count": len(rows)}]
    assert cols["word"]["distinct"] == 1


@pytest.mark.parametrize("exact", [True, False])
def test_type_change_after_the_sample_rereads_as_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exact: bool
) -> None:
    if not exact:
        monkeypatch.setattr(profiling, "EXACT_MAX_BYTES", 0)
    data = tmp_path / "data"
    data.mkdir()
    lines = ["a,b"] + [f"{i},{i * 2}" for i in range(30_000)] + ["7,not a number"]
    (data / "late.csv").write_text("\n".join(lines) + "\n")
    log = ListLog()
    run_agent_remotely(str(tmp_path), "late types", log)
    entry = load_summary(tmp_path)["files"][0]
    assert "error" not in entry
    assert entry["rows"] == 30_001
    cols = columns_of(entry)
    assert cols["a"]["kind"] == "numeric"
    assert cols["b"]["type"] == "VARCHAR"
    assert cols["b"]["distinct"] == pytest.approx(30_001, rel=0 if exact else 0.05)
    assert entry["exact"] is exact
    assert any("changes type after the sample" in m for _, m in log.lines)


def test_json_array_and_typed_columns(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    records = [
        {"when": f"2024-01-{d:02d}", "ok": d % 3 == 0, "tags": {"k": d}} for d in range(1, 29)
    ]
    (data / "records.json").write_text(json.dumps(records))
    run_agent_remotely(str(tmp_path), "dates", ListLog())
    entry = load_summary(tmp_path)["files"][0]
    assert entry["rows"] == 28
    cols = columns_of(entry)
    assert cols["when"]["kind"] == "temporal"
    assert cols["when"]["min"] == "2024-01-01"
    assert cols["when"]["max"] == "2024-01-28"
    assert cols["ok"]["kind"] == "boolean"
    assert cols["ok"]["top_values"] == [
        {"value": False, "count": 19},
        {"value": True, "count": 9},
    ]
    assert cols["ok"]["top"] == cols["ok"]["top_values"]
    # 28 days in bins of 2 days: 14 bins of 2, edges as ISO dates
    hist = cols["when"]["histogram"]
    assert hist["edges_type"] == "date"
    assert hist["edges"] == [f"2024-01-{d:02d}" for d in range(1, 30, 2)]
    assert hist["counts"] == [2] * 14
    assert cols["when"]["distinct"] == 28
    assert cols["when"]["quantiles"] == {
        "q25": "2024-01-07",
        "q50": "2024-01-14",
        "q75": "2024-01-21",
    }
    assert cols["tags"]["kind"] == "other"
    assert cols["tags"]["nulls"] == 0


def test_parquet_with_timezones_decimals_and_dates(tmp_path: Path) -> None:
    import datetime as dt
    from decimal import Decimal

    data = tmp_path / "data"
    data.mkdir()
    stamps = [dt.datetime(2024, 3, d % 28 + 1, 12, tzinfo=dt.UTC) for d in range(40)]
    prices = [Decimal(f"{d}.25") for d in range(40)]
    days = [dt.date(2024, 1, 1 + d % 2) for d in range(40)]
    table = pa.table(
        {
            "at": pa.array(stamps, pa.timestamp("us", tz="UTC")),
            "price": pa.array(prices, pa.decimal128(10, 2)),
            "day": pa.array(days, pa.date32()),
        }
    )
    pq.write_table(table, data / "prices.parquet")
    context = {"description": "price per day", "target": "price", "groups": ["day"]}
    run_agent_remotely(str(tmp_path), context, ListLog())
    summary = load_summary(tmp_path)
    entry = summary["files"][0]
    assert "error" not in entry
    cols = columns_of(entry)
    assert cols["at"]["kind"] == "temporal"
    assert cols["at"]["min"].startswith("2024-03-01")
    hist = cols["at"]["histogram"]
    assert hist["edges_type"] == "timestamp"
    assert hist["edges"][0] == "2024-03-01T12:00:00+00:00"
    assert len(hist["counts"]) == 20
    assert sum(hist["counts"]) == len(stamps)
    edges = [dt.datetime.fromisoformat(e) for e in hist["edges"]]
    assert hist["counts"] == expected_histogram_counts(stamps, edges)
    assert cols["price"]["histogram"]["edges"][0] == 0.25
    assert sum(cols["price"]["histogram"]["counts"]) == len(prices)
    values = [float(p) for p in prices]
    assert cols["price"]["mean"] == pytest.approx(statistics.mean(values))
    assert cols["price"]["max"] == 39.25
    groups = {r["group"]["day"]: r for r in summary["group_stats"][0]["rows"]}
    assert set(groups) == {"2024-01-01", "2024-01-02"}
    assert groups["2024-01-01"]["mean"] == pytest.approx(statistics.mean(values[0::2]))


# -- the experiment context -----------------------------------------------------------
def test_text_context_flags_the_columns_it_names(
    volume: tuple[Path, dict[str, list[dict[str, Any]]]],
) -> None:
    root, _ = volume
    result = run_agent_remotely(
        str(root), "We compare the SCORE of each Arm; counts are secondary.", ListLog()
    )
    summary = load_summary(root)
    assert summary["flagged_columns"] == ["arm", "score"]
    assert result["summary"]["flagged_columns"] == ["arm", "score"]
    cols = columns_of(by_path(summary)["plain.csv"])
    assert cols["score"]["flagged"] is True
    assert cols["score"]["flag_reasons"] == ["named in the description"]
    assert "flagged" not in cols["count"]  # "counts" is another word
    assert summary["context"]["kind"] == "text"
    assert summary["unknown_columns"] == []


def test_flag_matching_rules() -> None:
    text = ContextInfo.parse("Reaction time by group; see column 'x' but not a.")
    assert flag_reasons(text, "reaction_time") == ["named in the description"]
    assert flag_reasons(text, "x") == ["named in the description"]
    assert flag_reasons(text, "a") == []
    assert flag_reasons(text, "time_of_day") == []
    data = ContextInfo.parse({"description": "study", "notes": ["covers AGE"], "target": "y"})
    assert flag_reasons(data, "age") == ["named in the context"]
    assert flag_reasons(data, "Y") == ["target"]


def test_json_context_target_per_group(
    volume: tuple[Path, dict[str, list[dict[str, Any]]]],
) -> None:
    root, made = volume
    context = {
        "description": "Does the treatment change the score?",
        "target": "Score",
        "groups": ["arm", "site"],
    }
    log = ListLog()
    result = run_agent_remotely(str(root), context, log)
    summary = load_summary(root)
    assert summary["unknown_columns"] == ["site"]
    assert result["summary"]["unknown_columns"] == ["site"]
    assert summary["context"]["target"] == "Score"
    assert summary["flagged_columns"] == ["arm", "score"]
    assert any(level == "warning" and "site" in m for level, m in log.lines)

    stats = {g["path"]: g for g in summary["group_stats"]}
    assert set(stats) == set(made)
    rows = made["plain.csv"]
    plain = stats["plain.csv"]
    assert plain["target"] == "score"
    assert plain["groups"] == ["arm"]
    assert plain["groups_total"] == 3
    got = {r["group"]["arm"]: r for r in plain["rows"]}
    assert set(got) == set(GROUPS)
    for arm in GROUPS:
        values = [r["score"] for r in rows if r["arm"] == arm]
        present = [v for v in values if v is not None]
        g = got[arm]
        assert g["count"] == len(values)
        assert g["nulls"] == len(values) - len(present)
        assert g["mean"] == pytest.approx(statistics.mean(present))
        assert g["std"] == pytest.approx(statistics.stdev(present))
        assert g["min"] == pytest.approx(min(present))
        assert g["max"] == pytest.approx(max(present))
        assert g["median"] == pytest.approx(statistics.median(present))
    # ordered by group size, largest first
    assert [r["count"] for r in plain["rows"]] == sorted(
        (r["count"] for r in plain["rows"]), reverse=True
    )
    assert "## `score` by `arm` in `plain.csv`" in (root / "results" / "report.md").read_text()


def test_json_context_text_target_per_group(
    volume: tuple[Path, dict[str, list[dict[str, Any]]]],
) -> None:
    root, made = volume
    run_agent_remotely(
        str(root), {"description": "labels", "target": "label", "groups": "arm"}, ListLog()
    )
    stats = {g["path"]: g for g in load_summary(root)["group_stats"]}
    rows = made["tables/measures.parquet"]
    got = {r["group"]["arm"]: r for r in stats["tables/measures.parquet"]["rows"]}
    for arm in GROUPS:
        labels = [r["label"] for r in rows if r["arm"] == arm]
        counts = Counter(labels)
        ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0] is None, kv[0] or ""))
        want = [{"value": v, "count": n} for v, n in ordered[: profiling.GROUP_TOP_K]]
        assert got[arm]["count"] == len(labels)
        assert got[arm]["top_values"] == want


# -- failures ----------------------------------------------------------------------------
def test_no_readable_file_raises_a_clear_error(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "broken.csv").write_text("a,b\n1,2\n3,4,5,6\n")
    (data / "empty.tsv").write_bytes(b"")
    with pytest.raises(ValueError, match=r"^no readable data file: broken\.csv: not a well"):
        run_agent_remotely(str(tmp_path), "nothing good", ListLog())
    assert not (tmp_path / "results" / "summary.json").exists()


def test_no_file_at_all_raises(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    with pytest.raises(ValueError, match="no readable data file: nothing was uploaded"):
        run_agent_remotely(str(tmp_path), "empty", ListLog())


def test_context_json_is_read_when_no_context_is_given(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "t.csv").write_text("dose,effect\n1,2\n2,4\n")
    (tmp_path / "context.json").write_text(
        json.dumps({"kind": "json", "value": {"description": "dose response", "target": "effect"}})
    )
    result = run_agent_remotely(str(tmp_path), "", ListLog())
    assert result["summary"]["flagged_columns"] == ["dose", "effect"]


def test_jsonable_converts_duckdb_values() -> None:
    import datetime as dt
    from decimal import Decimal

    assert profiling.jsonable(Decimal("1.5")) == 1.5
    assert profiling.jsonable(float("nan")) is None
    assert profiling.jsonable(dt.date(2024, 2, 3)) == "2024-02-03"
    assert profiling.jsonable([Decimal(2), dt.timedelta(seconds=3)]) == [2.0, "0:00:03"]


# -- logging -------------------------------------------------------------------------------
class _Recorder(BaseHTTPRequestHandler):
    bodies: list[dict[str, Any]]
    auth: list[str]

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length))
        self.server.bodies.append(body)  # type: ignore[attr-defined]
        self.server.auth.append(self.headers.get("Authorization", ""))  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def log_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.bodies = []  # type: ignore[attr-defined]
    server.auth = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def test_log_lines_arrive_over_http_in_order(
    volume: tuple[Path, dict[str, list[dict[str, Any]]]], log_server: ThreadingHTTPServer
) -> None:
    root, made = volume
    port = log_server.server_address[1]
    log = AgentLog(f"http://127.0.0.1:{port}/log", "secret-token", flush_interval=0.01)
    try:
        run_agent_remotely(str(root), "score per arm", log)
    finally:
        log.close()
    bodies: list[dict[str, Any]] = log_server.bodies  # type: ignore[attr-defined]
    assert bodies
    assert set(log_server.auth) == {"Bearer secret-token"}  # type: ignore[attr-defined]
    records = [r for body in bodies for r in body["records"]]
    messages = [r["message"] for r in records]
    assert (
        messages[0]
        == "profiling 9 files ("
        + profiling.describe_size(
            sum(p.stat().st_size for p in (root / "data").rglob("*") if p.is_file())
        )
        + ")"
    )
    assert messages[-2].startswith("profiled 9 files (5 tables")
    assert messages[-1] == "columns the context names: arm, score"
    # one "<path>: ..." result line per file, in path order
    ordered = sorted([*made, "broken.csv", "empty.csv", "nested/blob.bin", "nested/picture.png"])
    firsts = []
    for m in messages:
        head = m.split(":", 1)[0]
        if head in ordered and head not in firsts and not m.startswith("profiling"):
            firsts.append(head)
    assert firsts == ordered
    levels = {r["message"].split(":", 1)[0]: r["level"] for r in records}
    assert levels["broken.csv"] == "warning"
    assert all(r["ts"].endswith("Z") for r in records)
    timestamps = [r["ts"] for r in records]
    assert timestamps == sorted(timestamps)


def test_heartbeat_reports_progress_while_a_step_runs() -> None:
    log = ListLog()
    seen = threading.Event()

    class Spy(ListLog):
        def info(self, message: str) -> None:
            log.info(message)
            seen.set()

    with Heartbeat(Spy(), "profiling big.csv", lambda: "42% done", interval=0.01):
        assert seen.wait(30)
    assert log.lines[0][1].startswith("still profiling big.csv: 42% done (")


def test_the_default_agent_is_named_by_both_spellings() -> None:
    from dashboard.agent.worker import load_agent
    from dashboard.config import DEFAULT_AGENT

    assert DEFAULT_AGENT == "dashboard.agent.builtin:run_agent_remotely"
    assert load_agent(DEFAULT_AGENT) is run_agent_remotely
    assert load_agent("dashboard.agent:run_agent_remotely") is run_agent_remotely
    with pytest.raises(AttributeError):
        load_agent("dashboard.agent:no_such_agent")

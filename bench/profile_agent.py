"""Benchmark: the built-in agent against DuckDB's SUMMARIZE and pandas on one big CSV.

    python bench/profile_agent.py [--size-mb 1024] [--runs 3] [--dir DIR] [--keep]
        [--skip pandas] [--sample-mb 100] [--ydata-python PATH]

Generates a CSV of mixed numeric and text columns (about ``--size-mb`` MB) in a temporary
directory laid out as a session volume, then runs each contender ``--runs`` times, each
run in its own child process (so its peak RSS is its own, read from ``os.wait4``):

* ``agent``: ``run_agent_remotely`` with a log that discards its lines;
* ``duckdb``: ``SUMMARIZE SELECT * FROM read_csv(...)`` with DuckDB's defaults;
* ``pandas``: ``read_csv`` + ``describe(include="all")`` (skipped when pandas is absent).

The agent's run includes everything ``summary.json`` holds (quartiles, distinct counts,
histograms, top values with counts: a second read of the file); its child reports how many
columns got a histogram and top values, so a run that skipped them shows.

Then, on a ``--sample-mb`` CSV of the same shape, the agent beside ydata-profiling's
minimal mode (``ProfileReport(df, minimal=True).to_json()`` after ``pandas.read_csv``),
when some interpreter can import ``ydata_profiling``: ``--ydata-python`` (or
``$YDATA_PYTHON``), else this one. ydata-profiling cannot share the project's environment
(4.18.4 needs pandas < 3 and numpy < 2.4; requirements-dev.txt pins pandas 3.1.1), so it
is meant to live in a venv of its own; without one the script says so and goes on.

Times are wall-clock seconds around the work inside the child (interpreter start-up
excluded); the median run counts. Targets: agent time <= 1.5 x DuckDB SUMMARIZE and agent
peak RSS < 1 GiB. Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TIME_RATIO_TARGET = 1.5
RSS_TARGET_MB = 1024.0
CSV_NAME = "measurements.csv"

SELECT = """
SELECT
    i AS id,
    round(random() * 1000, 3) AS x,
    CASE WHEN i % 17 = 0 THEN NULL ELSE round(random() * 50 - 25, 4) END AS score,
    (hash(i) % 1000)::INTEGER AS count_a,
    ['control', 'treatment_a', 'treatment_b', 'placebo'][1 + i % 4] AS arm,
    'subject_' || (hash(i * 7) % 100000)::VARCHAR AS subject,
    CASE WHEN i % 23 = 0 THEN NULL ELSE md5(i::VARCHAR)[1:12] END AS note,
    round(random() * 100, 2) AS y
FROM range({rows}) t(i)
"""


class NullLog:
    """A log that drops every line (the agent's log interface)."""

    def debug(self, message: str) -> None:
        pass

    def info(self, message: str) -> None:
        pass

    def warning(self, message: str) -> None:
        pass

    def error(self, message: str) -> None:
        pass

    def flush(self) -> None:
        pass


def generate(path: Path, size_mb: float) -> int:
    """Write a CSV of about ``size_mb`` MB; return its row count."""
    import duckdb

    con = duckdb.connect()
    con.execute("SELECT setseed(0.42)")
    probe = path.with_suffix(".probe.csv")
    probe_rows = 200_000
    con.execute(f"COPY ({SELECT.format(rows=probe_rows)}) TO '{probe}' (HEADER)")
    per_row = probe.stat().st_size / probe_rows
    probe.unlink()
    rows = max(1000, int(size_mb * 1024 * 1024 / per_row))
    con.execute(f"COPY ({SELECT.format(rows=rows)}) TO '{path}' (HEADER)")
    con.close()
    return rows


# -- children ----------------------------------------------------------------------------
def child(kind: str, volume: Path) -> dict[str, Any]:
    csv_path = volume / "data" / CSV_NAME
    # imports happen before the clock starts, for every contender
    if kind == "agent":
        sys.path.insert(0, str(ROOT))
        from dashboard.agent.builtin import run_agent_remotely
    elif kind == "duckdb":
        import duckdb
    elif kind == "pandas":
        import pandas as pd  # type: ignore[import-not-found, import-untyped, unused-ignore]
    elif kind == "ydata":
        import warnings

        warnings.simplefilter("ignore")  # its own deprecation notice
        import pandas as pd  # type: ignore[import-not-found, import-untyped, unused-ignore]
        from ydata_profiling import ProfileReport  # type: ignore[import-not-found, unused-ignore]
    started = time.perf_counter()
    detail: dict[str, Any] = {}
    if kind == "agent":
        result = run_agent_remotely(
            str(volume), {"description": "bench: score per arm", "target": "x"}, NullLog()
        )
        detail["rows"] = result["summary"]["rows_total"]
        summary = json.loads((volume / "results" / "summary.json").read_text())
        columns = [c for f in summary["files"] for c in f["columns"]]
        detail["histograms"] = sum(1 for c in columns if c.get("histogram"))
        detail["tops"] = sum(1 for c in columns if c.get("top"))
        detail["quantiles"] = sum(1 for c in columns if c.get("quantiles"))
    elif kind == "duckdb":
        con = duckdb.connect()
        rows = con.execute(f"SUMMARIZE SELECT * FROM read_csv('{csv_path}')").fetchall()
        detail["columns"] = len(rows)
        detail["rows"] = rows[0][-2] if rows else None  # "count" column
    elif kind == "pandas":
        frame = pd.read_csv(csv_path)
        described = frame.describe(include="all")
        detail["rows"] = len(frame)
        detail["columns"] = len(described.columns)
    elif kind == "ydata":
        frame = pd.read_csv(csv_path)
        report = ProfileReport(frame, minimal=True, progress_bar=False)
        detail["json_bytes"] = len(report.to_json())
        detail["rows"] = len(frame)
    else:
        raise SystemExit(f"unknown child kind {kind}")
    return {"seconds": time.perf_counter() - started, **detail}


def run_child(kind: str, volume: Path, python: str | None = None) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one child run."""
    proc = subprocess.Popen(
        [python or sys.executable, str(Path(__file__).resolve()), "--child", kind, str(volume)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL if kind == "ydata" else None,  # its progress bars
        text=True,
    )
    assert proc.stdout is not None
    out = proc.stdout.read()
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} run failed with exit code {proc.returncode}")
    report = json.loads(out.strip().splitlines()[-1])
    rss_mb = usage.ru_maxrss / 1024  # Linux: kilobytes
    if kind == "agent":
        LAST_AGENT_DETAIL.clear()
        LAST_AGENT_DETAIL.update(report)
    return float(report["seconds"]), rss_mb


LAST_AGENT_DETAIL: dict[str, Any] = {}


def ydata_python(given: str | None) -> tuple[str | None, str]:
    """An interpreter that imports ydata_profiling, or None and why not."""
    candidates = [c for c in (given, os.environ.get("YDATA_PYTHON"), sys.executable) if c]
    reasons = []
    for python in dict.fromkeys(candidates):
        probe = subprocess.run(
            [python, "-c", "import ydata_profiling, sys; print(ydata_profiling.__version__)"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode == 0:
            return python, probe.stdout.strip()
        last = (probe.stderr.strip().splitlines() or ["failed"])[-1]
        reasons.append(f"{python}: {last}")
    return None, "; ".join(reasons)


def sample_comparison(workdir: Path, sample_mb: float, runs: int, python: str | None) -> None:
    """The agent and ydata-profiling's minimal mode on a smaller CSV of the same shape."""
    found, why = ydata_python(python)
    if found is None:
        print(
            f"ydata-profiling: not run: no interpreter imports it ({why}). It does not "
            "install beside the project's pins (4.18.4 needs pandas < 3, numpy < 2.4); "
            "give --ydata-python a venv of its own."
        )
        return
    volume = workdir / "sample"
    (volume / "data").mkdir(parents=True)
    csv_path = volume / "data" / CSV_NAME
    rows = generate(csv_path, sample_mb)
    size_mb = csv_path.stat().st_size / 1024 / 1024
    print(f"\nsample {csv_path.name}: {size_mb:.0f} MB, {rows:,} rows; ydata-profiling {why}")
    measured: dict[str, list[tuple[float, float]]] = {"agent": [], "ydata": []}
    for run in range(runs):
        for kind in measured:
            seconds, rss = run_child(kind, volume, found if kind == "ydata" else None)
            measured[kind].append((seconds, rss))
            print(f"sample run {run + 1}: {kind:<7} {seconds:8.2f} s {rss:8.0f} MB")
    agent_s = statistics.median(s for s, _ in measured["agent"])
    ydata_s = statistics.median(s for s, _ in measured["ydata"])
    print(
        f"SAMPLE size={size_mb:.0f}MB runs={runs} agent={agent_s:.2f}s "
        f"(peak {max(r for _, r in measured['agent']):.0f} MB) ydata_minimal={ydata_s:.2f}s "
        f"(peak {max(r for _, r in measured['ydata']):.0f} MB) "
        f"ydata/agent={ydata_s / agent_s:.2f}"
    )


def have_pandas() -> bool:
    probe = subprocess.run(
        [sys.executable, "-c", "import pandas"], capture_output=True, check=False
    )
    return probe.returncode == 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=1024.0)
    parser.add_argument("--runs", type=int, default=1, choices=range(1, 100), metavar="N")
    parser.add_argument("--dir", type=Path, default=None, help="where to generate (a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the generated file")
    parser.add_argument("--skip", action="append", default=[], choices=["pandas", "sample"])
    parser.add_argument("--sample-mb", type=float, default=100.0)
    parser.add_argument("--ydata-python", help="an interpreter that imports ydata_profiling")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "VOLUME"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child[0], Path(args.child[1]))))
        return 0

    workdir = Path(tempfile.mkdtemp(prefix="profile-bench-", dir=args.dir))
    try:
        volume = workdir / "volume"
        (volume / "data").mkdir(parents=True)
        csv_path = volume / "data" / CSV_NAME
        started = time.perf_counter()
        rows = generate(csv_path, args.size_mb)
        size_mb = csv_path.stat().st_size / 1024 / 1024
        print(
            f"generated {csv_path.name}: {size_mb:.0f} MB, {rows:,} rows, 8 columns "
            f"in {time.perf_counter() - started:.1f} s; {os.cpu_count()} CPUs"
        )
        use_pandas = "pandas" not in args.skip and have_pandas()
        kinds = ["agent", "duckdb"] + (["pandas"] if use_pandas else [])
        if not use_pandas:
            print("pandas: skipped" if "pandas" in args.skip else "pandas: not installed, skipped")
        measured: dict[str, list[tuple[float, float]]] = {k: [] for k in kinds}
        for run in range(args.runs):
            for kind in kinds:
                seconds, rss = run_child(kind, volume)
                measured[kind].append((seconds, rss))
                print(f"run {run + 1}: {kind:<7} {seconds:8.2f} s {rss:8.0f} MB")
        medians = {
            k: (statistics.median(s for s, _ in v), max(r for _, r in v))
            for k, v in measured.items()
        }
        print()
        print(f"{'contender':<22} {'median s':>9} {'peak RSS MB':>12}")
        labels = {
            "agent": "agent (profile)",
            "duckdb": "DuckDB SUMMARIZE",
            "pandas": "pandas read+describe",
        }
        for kind, (seconds, rss) in medians.items():
            print(f"{labels[kind]:<22} {seconds:9.2f} {rss:12.0f}")
        agent_s, agent_rss = medians["agent"]
        duck_s = medians["duckdb"][0]
        ratio = agent_s / duck_s if duck_s else float("inf")
        time_ok = ratio <= TIME_RATIO_TARGET
        rss_ok = agent_rss < RSS_TARGET_MB
        pandas_part = (
            f"pandas {medians['pandas'][0]:.2f} s ({medians['pandas'][0] / agent_s:.2f}x agent), "
            if "pandas" in medians
            else "pandas skipped, "
        )
        print(
            f"agent's summary: {LAST_AGENT_DETAIL.get('histograms')} histograms, "
            f"{LAST_AGENT_DETAIL.get('tops')} top-value lists, "
            f"{LAST_AGENT_DETAIL.get('quantiles')} quantile sets"
        )
        print(
            f"RESULT size={size_mb:.0f}MB runs={args.runs} agent={agent_s:.2f}s "
            f"summarize={duck_s:.2f}s ratio={ratio:.2f} (target <= {TIME_RATIO_TARGET}) "
            f"{pandas_part}agent_peak_rss={agent_rss:.0f}MB (target < {RSS_TARGET_MB:.0f}) "
            f"{'OK' if time_ok and rss_ok else 'MISSED'}"
        )
        if "sample" not in args.skip:
            csv_path.unlink()  # room for the sample
            sample_comparison(workdir, args.sample_mb, args.runs, args.ydata_python)
        return 0 if time_ok and rss_ok else 1
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

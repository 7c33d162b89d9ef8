"""Benchmark: cold start of the web app (Modal containers start cold).

    .venv/bin/python bench/cold_start.py [--runs 7]

Each run is a fresh interpreter that imports ``api.app`` and calls ``create_app()``
(settings from a temporary ``DASHBOARD_DATA_DIR``); the time from before the import to
after construction is measured inside the child (interpreter start-up is reported
separately, as the child's wall time). Then one ``python -X importtime`` run lists the
slowest imports. Target: median import + construction <= 1 s.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import PY, ROOT, Targets, child_env, median, table

CHILD = (
    "import time\n"
    "t = time.perf_counter()\n"
    "from api.app import create_app\n"
    "i = time.perf_counter()\n"
    "app = create_app()\n"
    "e = time.perf_counter()\n"
    "print(i - t, e - t)\n"
)
TARGET_S = 1.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    imports: list[float] = []
    totals: list[float] = []
    walls: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-cold-") as tmp:
        env = child_env({"DASHBOARD_DATA_DIR": tmp})
        for _ in range(args.runs):
            start = time.perf_counter()
            out = subprocess.run(
                [PY, "-c", CHILD], cwd=ROOT, env=env, check=True, capture_output=True, text=True
            )
            walls.append(time.perf_counter() - start)
            imp, total = map(float, out.stdout.split())
            imports.append(imp)
            totals.append(total)
        trace = subprocess.run(
            [PY, "-X", "importtime", "-c", "from api.app import create_app"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
    rows = []
    for line in trace.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)", line)
        if m:
            rows.append((int(m.group(2)), int(m.group(1)), len(m.group(3)) // 2, m.group(4)))
    top_level = sorted((r for r in rows if r[2] in (1, 2)), reverse=True)[: args.top]
    by_self = sorted(rows, key=lambda r: r[1], reverse=True)[: args.top]
    print(
        table(
            ["import (depth 1-2 under api.app)", "cumulative ms"],
            [(r[3], r[0] / 1e3) for r in top_level],
        )
    )
    print()
    print(table(["module (any depth)", "self ms"], [(r[3], r[1] / 1e3) for r in by_self]))
    print()
    print(
        table(
            ["runs", "import s (median)", "import+create_app s (median)", "process wall s"],
            [(args.runs, median(imports), median(totals), median(walls))],
        )
    )
    targets = Targets()
    targets.check(
        "import + create_app() <= 1 s", f"{median(totals):.2f} s", median(totals) <= TARGET_S
    )
    summary = (
        f"cold start x{args.runs}: import {median(imports):.2f} s, import+create_app "
        f"{median(totals):.2f} s (target {TARGET_S:.0f} s), process {median(walls):.2f} s; "
        f"slowest import {top_level[0][3]} {top_level[0][0] / 1e3:.0f} ms"
    )
    return targets.finish(summary, {"bench": "cold_start", "total_s": median(totals)})


if __name__ == "__main__":
    sys.exit(main())

"""Markdown rendering of a dataset profile (``results/report.md``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dashboard.agent.profile import describe_size

MAX_CELL = 80


def cell(value: Any) -> str:
    """One markdown table cell: numbers compact, text escaped and cut short."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, int):
        text = f"{value:,}"
    else:
        text = str(value)
    text = text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return [*lines, ""]


def _top(values: list[dict[str, Any]]) -> str:
    parts = []
    for item in values:
        shown = cell(item["value"]) if item["value"] is not None else "null"
        parts.append(f"{shown} ({item['count']:,})" if item.get("count") is not None else shown)
    return ", ".join(parts)


def render(summary: dict[str, Any]) -> str:
    files: list[dict[str, Any]] = summary["files"]
    context = summary["context"]
    lines = ["# Dataset profile", ""]
    described = context.get("value")
    if isinstance(described, dict):
        described = described.get("description", "")
    lines += ["## Experiment context", "", "> " + str(described).replace("\n", "\n> "), ""]
    if context.get("target") or context.get("groups"):
        lines.append(
            f"Target: `{context.get('target') or '-'}`; groups: "
            + (", ".join(f"`{g}`" for g in context.get("groups") or []) or "-")
        )
        lines.append("")
    if summary.get("unknown_columns"):
        lines.append(
            "Named in the context but not found in any table: "
            + ", ".join(f"`{n}`" for n in summary["unknown_columns"])
        )
        lines.append("")
    lines += ["## Files", ""]
    lines += table(
        ["path", "kind", "size", "rows", "columns", "note"],
        [
            [
                f["path"],
                f["kind"],
                describe_size(f["size"]) if f.get("size") is not None else None,
                f.get("rows"),
                len(f.get("columns") or []) if f["kind"] == "table" else None,
                f.get("error") or f.get("description") or "",
            ]
            for f in files
        ],
    )
    flags = summary.get("flags") or []
    if flags:
        lines += ["## Columns the context names", ""]
        lines += table(
            ["file", "column", "why"],
            [[f["path"], f["column"], ", ".join(f["reasons"])] for f in flags],
        )
    for f in files:
        if f["kind"] != "table" or f.get("error"):
            continue
        mode = (
            "exact"
            if f.get("exact")
            else "streamed; quartiles, distinct counts and the set of top values are approximate"
        )
        shape = f"{f['rows']:,} rows, {len(f['columns'])} columns ({mode})."
        if f.get("duplicate_rows") is not None:
            shape += f" {f['duplicate_rows']:,} duplicate rows."
        lines += [f"## `{f['path']}`", "", shape, ""]
        lines += table(
            [
                "column",
                "type",
                "nulls",
                "min",
                "max",
                "mean",
                "std",
                "q25",
                "median",
                "q75",
                "distinct",
                "top values",
            ],
            [
                [
                    ("**" + c["name"] + "**") if c.get("flagged") else c["name"],
                    c["type"],
                    c["nulls"],
                    c["min"],
                    c["max"],
                    c["mean"],
                    c["std"],
                    c["q25"],
                    c["q50"],
                    c["q75"],
                    c["distinct"],
                    _top(c["top_values"]),
                ]
                for c in f["columns"]
            ],
        )
    for g in summary.get("group_stats") or []:
        title = f"`{g['target']}` by " if g.get("target") else "Group sizes by "
        lines += [f"## {title}{', '.join(f'`{n}`' for n in g['groups'])} in `{g['path']}`", ""]
        names = g["groups"]
        if g.get("target") is None or g.get("kind") == "numeric":
            extra = ["nulls", "mean", "std", "min", "max", "median"] if g.get("target") else []
            lines += table(
                [*names, "count", *extra],
                [
                    [*(r["group"][n] for n in names), r["count"], *(r[e] for e in extra)]
                    for r in g["rows"]
                ],
            )
        else:
            lines += table(
                [*names, "count", "top values"],
                [
                    [*(r["group"][n] for n in names), r["count"], _top(r["top_values"])]
                    for r in g["rows"]
                ],
            )
    others = [f for f in files if f["kind"] == "other"]
    if others:
        lines += ["## Other files", ""]
        lines += table(
            ["path", "size", "type", "sha256"],
            [[f["path"], f["size"], f.get("type"), f.get("sha256")] for f in others],
        )
    return "\n".join(lines).rstrip() + "\n"

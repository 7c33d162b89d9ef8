"""Relating a dataset profile to the experiment context (no I/O, no DuckDB).

A column is *flagged* when the context names it: a case-insensitive whole-word match of the
column name in the description text or in any string of a JSON context (``_``, ``-`` and
spaces in a name match each other, so ``reaction time`` names ``reaction_time``). A name
of a single character only counts when quoted (``'x'``, ``"x"`` or a backticked x), so
the article "a" does not flag a column ``a``. The JSON fields ``target`` and ``groups``
(a string or a list of strings) name columns directly; those not found in any table are
reported as unknown.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class ContextInfo:
    kind: str  # "text" | "json"
    value: str | dict[str, Any]
    description: str
    texts: list[str]
    target: str | None = None
    groups: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, value: Any) -> ContextInfo:
        if isinstance(value, dict):
            description = value.get("description")
            texts = list(_strings(value))
            target = value.get("target")
            groups_raw = value.get("groups")
            groups: list[str] = []
            if isinstance(groups_raw, str):
                groups = [groups_raw]
            elif isinstance(groups_raw, list):
                groups = [g for g in groups_raw if isinstance(g, str)]
            groups = [g.strip() for g in groups if g.strip()]
            clean_target = target.strip() if isinstance(target, str) and target.strip() else None
            if clean_target is not None:
                groups = [g for g in groups if g.lower() != clean_target.lower()]
            return cls(
                kind="json",
                value=value,
                description=str(description or ""),
                texts=texts,
                target=clean_target,
                groups=list(dict.fromkeys(groups)),
            )
        text = "" if value is None else str(value)
        return cls(kind="text", value=text, description=text, texts=[text])

    def named_columns(self) -> list[str]:
        """Column names the JSON fields give explicitly (target first)."""
        return ([self.target] if self.target else []) + self.groups

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "value": self.value,
            "target": self.target,
            "groups": self.groups,
        }


def load_context(volume: Path, given: Any) -> ContextInfo:
    """The context passed to the agent, else the volume's ``context.json``."""
    if given is None or (isinstance(given, str) and not given.strip()):
        stored_path = volume / "context.json"
        if stored_path.is_file():
            stored = json.loads(stored_path.read_text(encoding="utf-8"))
            if isinstance(stored, dict) and "value" in stored:
                return ContextInfo.parse(stored["value"])
    return ContextInfo.parse(given)


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _name_pattern(name: str) -> re.Pattern[str] | None:
    parts = [re.escape(p) for p in re.split(r"[\s_\-]+", name.strip().lower()) if p]
    if not parts:
        return None
    body = r"[\s_\-]+".join(parts)
    if len(name.strip()) == 1:
        return re.compile(r"(['\"`])" + body + r"\1", re.IGNORECASE)
    return re.compile(r"(?<![0-9a-z])" + body + r"(?![0-9a-z])", re.IGNORECASE)


def flag_reasons(context: ContextInfo, column: str) -> list[str]:
    """Why the context names ``column`` (empty when it does not)."""
    reasons: list[str] = []
    lowered = column.lower()
    if context.target is not None and context.target.lower() == lowered:
        reasons.append("target")
    if any(g.lower() == lowered for g in context.groups):
        reasons.append("group")
    pattern = _name_pattern(column)
    if pattern is not None:
        if pattern.search(context.description):
            reasons.append("named in the description")
        elif any(pattern.search(t) for t in context.texts):
            reasons.append("named in the context")
    return reasons


def find_column(names: Iterable[str], wanted: str) -> str | None:
    """The column called ``wanted`` (exact name first, then case-insensitive)."""
    names = list(names)
    if wanted in names:
        return wanted
    for name in names:
        if name.lower() == wanted.lower():
            return name
    return None

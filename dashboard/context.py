"""Experiment-context validation, exactly as DESIGN.md states it."""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from typing import Any

from dashboard.errors import InvalidInput

FIELD = "experiment_context"
MAX_CONTEXT_CHARS = 65_536


@dataclass(frozen=True)
class ExperimentContext:
    """A validated context: free text, or a JSON object with a non-empty description."""

    value: str | dict[str, Any]

    @property
    def description(self) -> str:
        if isinstance(self.value, dict):
            return str(self.value["description"])
        return self.value

    def to_json(self) -> dict[str, Any]:
        if isinstance(self.value, dict):
            return {"kind": "json", "value": self.value}
        return {"kind": "text", "value": self.value}

    @classmethod
    def from_json(cls, stored: dict[str, Any]) -> ExperimentContext:
        return cls(stored["value"])


def _check_text(text: str, what: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").strip()
    if not text:
        raise InvalidInput.field(FIELD, f"{what} is empty; describe the experiment in a few words.")
    if len(text) > MAX_CONTEXT_CHARS:
        raise InvalidInput.field(
            FIELD, f"{what} is {len(text)} characters long; the limit is {MAX_CONTEXT_CHARS}."
        )
    for ch in text:
        if ch not in "\t\n" and unicodedata.category(ch) == "Cc":
            raise InvalidInput.field(
                FIELD, f"{what} contains a control character (U+{ord(ch):04X})."
            )
    return text


def _normalise_strings(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\r\n", "\n").replace("\r", "\n")
    return value


def validate_context(raw: Any, *, parse_json_text: bool = False) -> ExperimentContext:
    """Validate a context given as text or as a JSON object.

    With ``parse_json_text`` (the legacy form), text that parses as a JSON object is
    treated as that object.
    """
    if raw is None:
        raise InvalidInput.field(FIELD, "the experiment context is missing.")
    if isinstance(raw, str) and parse_json_text and raw.strip().startswith("{"):
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            raw = parsed
    if isinstance(raw, dict):
        description = raw.get("description")
        if not isinstance(description, str):
            raise InvalidInput.field(
                FIELD, 'a JSON experiment context needs a "description" string.'
            )
        value = {k: _normalise_strings(v) for k, v in raw.items()}
        value["description"] = _check_text(description, "the description")
        return ExperimentContext(value)
    if isinstance(raw, str):
        return ExperimentContext(_check_text(raw, "the experiment context"))
    raise InvalidInput.field(FIELD, "the experiment context must be text or a JSON object.")

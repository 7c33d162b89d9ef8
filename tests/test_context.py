import pytest

from dashboard.context import MAX_CONTEXT_CHARS, validate_context
from dashboard.errors import InvalidInput


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "\n\t",
        None,
        42,
        ["x"],
        {"description": ""},
        {"description": "  "},
        {"x": "y"},
        {"description": 5},
        "bad\x00byte",
        "bell\x07",
        "x" * (MAX_CONTEXT_CHARS + 1),
        "esc\x1b[0m",
        "del\x7f",
    ],
)
def test_invalid_contexts_are_refused(raw: object) -> None:
    with pytest.raises(InvalidInput) as info:
        validate_context(raw)
    assert info.value.errors and info.value.errors[0]["field"] == "experiment_context"
    assert info.value.status == 422


def test_text_is_trimmed_and_line_endings_normalised() -> None:
    ctx = validate_context("  a\r\nb\rc\td  ")
    assert ctx.value == "a\nb\nc\td"


def test_length_limit_applies_after_trimming() -> None:
    assert validate_context("  " + "x" * MAX_CONTEXT_CHARS + "  ").value == "x" * MAX_CONTEXT_CHARS


def test_json_object_keeps_fields_and_trims_description() -> None:
    ctx = validate_context({"description": " growth ", "target": "yield"})
    assert ctx.value == {"description": "growth", "target": "yield"}


def test_legacy_text_that_is_json_object_becomes_object() -> None:
    ctx = validate_context('{"description": "d", "groups": ["g"]}', parse_json_text=True)
    assert ctx.value == {"description": "d", "groups": ["g"]}
    assert validate_context('{"description": "d"}').value == '{"description": "d"}'
    assert validate_context("{not json", parse_json_text=True).value == "{not json"

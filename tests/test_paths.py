from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dashboard.errors import InvalidInput
from dashboard.paths import clean_relative_path, resolve_inside

BAD = [
    "",
    "/etc/passwd",
    "\\\\server\\share",
    "C:\\x.csv",
    "c:/x",
    "a/../b",
    "..",
    "../x",
    "a//b",
    "a/./b",
    "./a",
    "a/",
    "a\\..\\b",
    "nul\x00byte",
    "tab\there",
    "new\nline",
    "x" * 256,
    "/".join(["a" * 200] * 21),
    "a/\x7f",
]


@pytest.mark.parametrize("raw", BAD)
def test_bad_paths_are_422(raw: str) -> None:
    with pytest.raises(InvalidInput):
        clean_relative_path(raw)


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("a.csv", "a.csv"),
        ("dir/sub/a.csv", "dir/sub/a.csv"),
        ("dir\\sub\\a.csv", "dir/sub/a.csv"),
        ("données/é.csv", "données/é.csv"),
        ("..a/b..", "..a/b.."),
        ("x" * 255, "x" * 255),
    ],
)
def test_good_paths_are_kept(raw: str, clean: str) -> None:
    assert clean_relative_path(raw) == clean


def test_symlinked_parent_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "vol"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "link").symlink_to(outside)
    with pytest.raises(InvalidInput):
        resolve_inside(root, "link/file.csv")


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.text(min_size=0, max_size=12),
            st.sampled_from(["..", ".", "", "C:", "/", "\\", "\x00", "a" * 300]),
        ),
        min_size=1,
        max_size=6,
    ).map(lambda parts: "/".join(parts))
)
def test_property_accepted_paths_stay_inside(raw: str) -> None:
    root = Path("/volume/data")
    try:
        clean = clean_relative_path(raw)
    except InvalidInput:
        return
    joined = (root / clean).resolve(strict=False)
    assert joined.is_relative_to(root)
    assert ".." not in clean.split("/")
    assert not clean.startswith("/")

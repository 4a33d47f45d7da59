"""SCAN's pieces: Redis glob patterns as a prefix and a filter, and the cursor table."""

from __future__ import annotations

import pytest

from dcounter_node._resp_scan import ScanCursors, compile_match


@pytest.mark.parametrize(
    ("pattern", "prefix", "matches", "misses"),
    [
        ("page:*", "page:", [], []),
        ("*", "", [], []),
        ("*:views", "", ["a:views", ":views"], ["a:view", "views"]),
        ("page:?", "page:", ["page:1"], ["page:10", "page:"]),
        ("c[0-2]x", "c", ["c0x", "c2x"], ["c3x", "cx"]),
        ("c[^0-2]", "c", ["c3", "cz"], ["c0", "c"]),
        ("c[ab]", "c", ["ca", "cb"], ["cc"]),
        ("a\\*b", "a", ["a*b"], ["axb"]),
        ("exact", "exact", ["exact"], ["exactly"]),
        ("a.b+c", "a.b+c", ["a.b+c"], ["aXb+c", "a.bbc"]),
    ],
)
def test_glob_patterns(pattern: str, prefix: str, matches: list[str], misses: list[str]) -> None:
    found_prefix, regex = compile_match(pattern)
    assert found_prefix == prefix
    if regex is None:
        assert pattern == prefix + "*"
        return
    assert [name for name in matches if regex.fullmatch(name)] == matches
    assert [name for name in misses if regex.fullmatch(name)] == []


def test_cursors_resume_after_the_saved_name() -> None:
    cursors = ScanCursors(first=7)
    assert cursors.save("k009") == 7
    assert cursors.save("k019") == 8
    assert cursors.resume(7) == "k009"
    assert cursors.resume(8) == "k019"
    assert cursors.resume(9) is None
    assert cursors.resume(0) is None


def test_the_least_recently_used_cursors_are_forgotten() -> None:
    cursors = ScanCursors(capacity=2, first=1)
    first, second = cursors.save("a"), cursors.save("b")
    assert cursors.resume(first) == "a"  # now the most recent
    third = cursors.save("c")
    assert len(cursors) == 2
    assert cursors.resume(second) is None
    assert (cursors.resume(first), cursors.resume(third)) == ("a", "c")


def test_cursors_stay_within_signed_64_bits_and_never_zero() -> None:
    cursors = ScanCursors(first=2**63 - 1)
    assert cursors.save("a") == 2**63 - 1
    assert cursors.save("b") == 1

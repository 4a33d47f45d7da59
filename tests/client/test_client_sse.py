"""The server-sent events decoder."""

from __future__ import annotations

from dcounter_client._sse import SSEDecoder


def feed(lines: list[str]) -> list[str]:
    decoder = SSEDecoder()
    return [data for line in lines if (data := decoder.feed(line)) is not None]


def test_an_event_ends_at_the_blank_line() -> None:
    assert feed(['data: {"value": 1}']) == []
    assert feed(['data: {"value": 1}', ""]) == ['{"value": 1}']


def test_comments_and_other_fields_are_ignored() -> None:
    assert feed([": keepalive", "", "event: x", "id: 3", "data:7", ""]) == ["7"]


def test_data_lines_of_one_event_are_joined() -> None:
    assert feed(["data: a", "data: b", "", "data: c", ""]) == ["a\nb", "c"]


def test_blank_lines_alone_yield_nothing() -> None:
    assert feed(["", "", ""]) == []

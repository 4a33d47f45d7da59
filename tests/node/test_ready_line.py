"""The ready line: the one line dcounter-node prints when it serves, and its public parser."""

from __future__ import annotations

import pytest

import dcounter_node
from dcounter_node import READY_PREFIX, ReadyLine, ReadyLineError, parse_ready_line

READY = ReadyLine("127.0.0.1:40001", "[::1]:40002", "127.0.0.1:40001#9f3a0c21", 1234)


def test_a_formatted_line_parses_back_to_the_same_fields() -> None:
    assert parse_ready_line(READY.format() + "\n") == READY


def test_the_line_starts_with_the_prefix_and_names_every_field() -> None:
    assert READY.format() == (
        f"{READY_PREFIX} gossip=127.0.0.1:40001 http=[::1]:40002"
        " replica=127.0.0.1:40001#9f3a0c21 pid=1234"
    )


def test_bytes_from_a_pipe_parse_like_text() -> None:
    assert parse_ready_line(READY.format().encode() + b"\n") == READY


def test_other_lines_are_not_ready_lines() -> None:
    assert parse_ready_line("starting up\n") is None
    assert parse_ready_line("") is None
    assert parse_ready_line("dcounter-node readying gossip=a:1") is None


def test_unknown_words_are_ignored_so_fields_can_be_added() -> None:
    assert parse_ready_line(READY.format() + " tls=on extra") == READY


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("dcounter-node ready gossip=a:1 http=a:2 replica=r", "without pid"),
        ("dcounter-node ready http=a:2 replica=r pid=1", "without gossip"),
        ("dcounter-node ready gossip= http=a:2 replica=r pid=1", "without gossip"),
        ("dcounter-node ready gossip=a:1 http=a:2 replica=r pid=12x", "malformed pid"),
        ("dcounter-node ready gossip=a:1 http=a:2 replica=r pid=\u00b2", "malformed pid"),
    ],
)
def test_an_incomplete_ready_line_is_a_typed_error(line: str, message: str) -> None:
    with pytest.raises(ReadyLineError, match=message):
        parse_ready_line(line)


def test_the_ready_line_api_is_public() -> None:
    for name in ("READY_PREFIX", "ReadyLine", "ReadyLineError", "parse_ready_line"):
        assert name in dcounter_node.__all__
    assert issubclass(ReadyLineError, dcounter_node.NodeError)

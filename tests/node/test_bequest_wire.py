"""The bequest messages' bytes (bequeath, answer, revoke), strictly decoded."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from dcounter_node._bequest import Answer
from dcounter_node._pruning_wire import (
    PRUNING_MAGIC,
    PruningDecodeError,
    PruningKind,
    decode_pruning,
    encode_answer,
    encode_bequeath,
    encode_revoke,
)


def raw(body: Any) -> bytes:
    return PRUNING_MAGIC + msgpack.packb(body, use_bin_type=True)


def test_the_exact_bytes_of_a_bequeath_as_the_readme_shows() -> None:
    assert encode_bequeath("a", (5, 2)) == bytes.fromhex("44 43 50 01 92 03 93 a1 61 05 02")


def test_bequeath_and_revoke_round_trip() -> None:
    for encode, kind in (
        (encode_bequeath, PruningKind.BEQUEATH),
        (encode_revoke, PruningKind.REVOKE),
    ):
        message = decode_pruning(encode("h:1#9", (2**64 - 1, 0)))
        assert (message.kind, message.victim, message.counts) == (kind, "h:1#9", (2**64 - 1, 0))


@pytest.mark.parametrize("answer", list(Answer))
def test_answers_round_trip(answer: Answer) -> None:
    message = decode_pruning(encode_answer("h:1#9", answer))
    assert (message.kind, message.victim, message.answer) == (PruningKind.ANSWER, "h:1#9", answer)


@pytest.mark.parametrize(
    "body",
    [
        [3, ["a", 1]],  # too few items
        [3, ["a", 1, 2, 3]],  # too many
        [3, ["", 1, 2]],  # empty id
        [3, ["a" * 256, 1, 2]],  # id too long
        [3, ["a", -1, 2]],  # negative count
        [3, ["a", 1.0, 2]],  # not an integer
        [3, ["a", True, 2]],  # a bool is no count
        [5, [7, 1, 2]],  # id not a string
        [4, ["a", 0]],  # unknown status
        [4, ["a", 5]],
        [4, ["a", True]],
        [4, ["a", 1, 2]],
        [6, []],  # unknown kind
    ],
)
def test_malformed_bequest_messages_are_refused(body: Any) -> None:
    with pytest.raises(PruningDecodeError):
        decode_pruning(raw(body))

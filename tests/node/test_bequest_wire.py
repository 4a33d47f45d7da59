"""The bequest messages' bytes (bequeath, answer, revoke), strictly decoded, and the files."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgpack
import pytest

from dcounter_node._bequest import Answer, Bequest, Given
from dcounter_node._bequest_service import GIVEN_FILENAME, HELD_FILENAME, load_bequests
from dcounter_node._errors import StorageError
from dcounter_node._pruning_service import write_json
from dcounter_node._pruning_wire import (
    PRUNING_MAGIC,
    PruningDecodeError,
    PruningKind,
    decode_pruning,
    encode_answer,
    encode_bequeath,
    encode_revoke,
    encode_stand,
)

if TYPE_CHECKING:
    from pathlib import Path


def raw(body: Any) -> bytes:
    return PRUNING_MAGIC + msgpack.packb(body, use_bin_type=True)


def test_the_exact_bytes_of_a_bequeath_as_the_readme_shows() -> None:
    assert encode_bequeath("a", (5, 2)) == bytes.fromhex("44 43 50 01 92 03 93 a1 61 05 02")


def test_the_exact_bytes_of_a_standing_bequest_as_the_readme_shows() -> None:
    assert encode_stand("a") == bytes.fromhex("44 43 50 01 92 06 91 a1 61")
    message = decode_pruning(encode_stand("h:1#9"))
    assert (message.kind, message.victim) == (PruningKind.STAND, "h:1#9")


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
        [4, ["a", 6]],
        [4, ["a", True]],
        [4, ["a", 1, 2]],
        [6, []],  # stand without its victim
        [6, ["a", 0, 0]],  # stand carries no counts
        [6, [""]],
        [7, ["a"]],  # unknown kind
    ],
)
def test_malformed_bequest_messages_are_refused(body: Any) -> None:
    with pytest.raises(PruningDecodeError):
        decode_pruning(raw(body))


def test_the_bequest_files_load_back(tmp_path: Path) -> None:
    write_json(tmp_path / HELD_FILENAME, {"version": 1, "held": [["h:1#9", 5, 2, 17.5]]})
    write_json(tmp_path / GIVEN_FILENAME, {"version": 1, "given": [["a:1#1", "h:1", 3, 0, True]]})
    heirloom, bequeathed = load_bequests(tmp_path)
    assert heirloom.held() == [Bequest("h:1#9", (5, 2), 17.5)]
    assert bequeathed.given() == [Given("a:1#1", "h:1", (3, 0), resumable=True)]
    write_json(
        tmp_path / HELD_FILENAME, {"version": 1, "held": [["h:1#9", 0, 0, 17.5, "h:1", True]]}
    )
    write_json(
        tmp_path / GIVEN_FILENAME,
        {"version": 1, "given": [["a:1#1", "h:1", 0, 0, True, True, False]], "own": ["a:1#0"]},
    )
    heirloom, bequeathed = load_bequests(tmp_path)
    assert heirloom.held() == [Bequest("h:1#9", (0, 0), 17.5, standing=True, owner="h:1")]
    assert bequeathed.given() == [Given("a:1#1", "h:1", (0, 0), standing=True, confirmed=False)]
    assert bequeathed.own() == {"a:1#0"}
    empty_heirloom, empty_given = load_bequests(tmp_path / "missing")
    assert (len(empty_heirloom), len(empty_given)) == (0, 0)


@pytest.mark.parametrize(
    "content",
    [
        "{",
        "[]",
        '{"held": 3}',
        '{"held": [["h:1#9", 5]]}',
        '{"held": [["x", "y", 1, 2]]}',
        '{"held": [], "own": 3}',
        '{"held": [], "own": [3]}',
    ],
)
def test_a_corrupt_bequest_file_is_a_storage_error(tmp_path: Path, content: str) -> None:
    (tmp_path / HELD_FILENAME).write_text(content, encoding="utf-8")
    with pytest.raises(StorageError):
        load_bequests(tmp_path)

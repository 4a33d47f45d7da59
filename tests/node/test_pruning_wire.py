"""Pruning messages' bytes and the records' journal file."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import msgpack
import pytest

from dcounter_node._errors import StorageError
from dcounter_node._pruning import MAX_VICTIMS, PruneRecord
from dcounter_node._pruning_service import _write_journal, load_journal
from dcounter_node._pruning_wire import (
    MAX_RECORDS_PER_MESSAGE,
    PRUNING_MAGIC,
    PruningDecodeError,
    PruningKind,
    decode_pruning,
    encode_have,
    encode_named_ack,
    encode_named_records,
    encode_records,
    is_pruning,
)

if TYPE_CHECKING:
    from pathlib import Path

MANY = [[f"a#{i}", 1, 0] for i in range(2, MAX_VICTIMS + 1)] + [["a#1", 1, 0]]
RECORD = PruneRecord("a:1#2'", {"a:1#1": (5, 2), "a:1#2": (1, 0)}, 1764520000.5)


def raw(body: Any) -> bytes:
    return PRUNING_MAGIC + msgpack.packb(body, use_bin_type=True)


def test_have_round_trips() -> None:
    message = decode_pruning(encode_have(["a:1#2'", "b:1#7'"]))
    assert message.kind is PruningKind.HAVE
    assert message.survivors == ("a:1#2'", "b:1#7'")


def test_records_round_trip() -> None:
    message = decode_pruning(encode_records([RECORD]))
    assert message.kind is PruningKind.RECORDS
    assert message.records == (RECORD,)


NAMED = PruneRecord(
    RECORD.survivor,
    RECORD.victims,
    RECORD.created,
    {"hits": {"a:1#1": (3, 0), "a:1#2": (1, 1)}, "x": {"a:1#2": (0, 4)}},
)


@pytest.mark.parametrize(
    "record",
    [NAMED, PruneRecord(RECORD.survivor, RECORD.victims, RECORD.created, {}), RECORD],
    ids=["named-part", "empty-named-part", "no-named-part"],
)
def test_named_records_round_trip_with_or_without_their_named_part(record: PruneRecord) -> None:
    message = decode_pruning(encode_named_records([record]))
    assert message.kind is PruningKind.NAMED_RECORDS
    assert message.records == (record,)


def test_a_records_message_leaves_the_named_part_out() -> None:
    # What an older node reads: the record as it always was (it rejects a 4th item).
    assert decode_pruning(encode_records([NAMED])).records == (RECORD,)


def test_the_exact_bytes_of_an_empty_named_records_message() -> None:
    # Sent once to a member first heard from: "I apply records' named parts".
    assert encode_named_records([]) == bytes.fromhex("44435001 92 07 90".replace(" ", ""))


def test_the_exact_bytes_of_a_named_ack() -> None:
    # The answer to that question: "I apply named parts too".
    assert encode_named_ack() == bytes.fromhex("44435001 92 08 90".replace(" ", ""))
    assert decode_pruning(encode_named_ack()).kind is PruningKind.NAMED_ACK


def test_the_exact_bytes_of_a_have() -> None:
    assert encode_have(["a"]) == bytes.fromhex("44435001 92 01 91 a1 61".replace(" ", ""))


def test_pruning_payloads_are_told_apart_from_membership_and_counter_messages() -> None:
    assert is_pruning(encode_have([]))
    assert not is_pruning(b"DCM\x01\x90")
    assert not is_pruning(b"\x00\x01")


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"DCP\x02\x92\x01\x90", "version 1"),
        (PRUNING_MAGIC + b"\xc1", "not msgpack"),
        (raw([1]), "[kind, items]"),
        (raw([9, []]), "unknown message kind"),
        (raw([True, []]), "unknown message kind"),
        (raw([1, [""]]), "1..255"),
        (raw([1, ["x" * 256]]), "1..255"),
        (raw([2, [["a#1'", 0.0]]]), "3 items"),
        (raw([2, [["a#1'", "now", [["a#1", 1, 0]]]]]), "created"),
        (raw([2, [["a#1'", float("nan"), [["a#1", 1, 0]]]]]), "finite"),
        (raw([2, [["a#1'", 0.0, []]]]), "victims"),
        (raw([2, [["a#1'", 0.0, [["a#1", -1, 0]]]]]), "unsigned"),
        (raw([2, [["a#1'", 0.0, [["a#1", 1, 0], ["a#1", 1, 0]]]]]), "named twice"),
        (raw([2, [["a#1'", 0.0, [["a#1'", 1, 0]]]]]), "survivor"),
        (raw([2, [["a#1'", 0.0, [[f"a#{i}", 1, 0] for i in range(MAX_VICTIMS + 1)]]]]), "1..64"),
        (
            raw([2, [["a#1'", 0.0, [["a#1", 1, 0]]]] * (MAX_RECORDS_PER_MESSAGE + 1)]),
            "at most 16",
        ),
        (raw([7, [["a#1'", 0.0, [["a#1", 1, 0]]]]]), "5 items"),
        (raw([8, ["x"]]), "no items"),
        (raw([7, [["a#1'", 0.0, [["a#1", 1, 0]], [], True]] * 2]), "at most 1 named record"),
        (raw([7, [["a#1'", 0.0, [["a#1", 1, 0]], [["n", [["a#1", 1, 0]]]], False]]]), "whether"),
        (raw([7, [["a#1'", 0.0, [["a#1", 1, 0]], [], 1]]]), "whether"),
        (raw([7, [["a#1'", 0.0, [["a#1", 1, 0]], [["n"]], True]]]), "[name, victims]"),
        (raw([7, [["a#1'", 0.0, [["a#1", 1, 0]], [["", [["a#1", 1, 0]]]], True]]]), "a name"),
        (raw([7, [["a#1'", 0.0, [["a#1", 1, 0]], [["n", []]], True]]]), "no victim"),
        (
            raw([7, [["a#1'", 0.0, [["a#1", 1, 0]], [["n", [["a#1", 1, 0]]]] * 2, True]]]),
            "listed twice",
        ),
        (raw([7, [["a#1'", 0.0, [["a#1", 1, 0]], [["n", [["b#1", 1, 0]]]], True]]]), "victim of"),
        (raw([7, [["a#1'", 0.0, [["a#1", 1, 0]], [["n", [["a#1", 1, -2]]]], True]]]), "unsigned"),
        (
            raw([7, [["a#1'", 0.0, MANY, [[f"n{i}", MANY] for i in range(17)], True]]]),
            "at most 1024 entries",
        ),
    ],
)
def test_malformed_messages_are_refused_with_the_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(PruningDecodeError, match=reason.replace("[", r"\[").replace(".", r"\.")):
        decode_pruning(payload)


def test_the_journal_keeps_records_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "pruning.json"
    assert len(load_journal(path)) == 0
    later = PruneRecord("a:1#3'", {"a:1#2'": (6, 2), "a:1#3": (4, 0)}, RECORD.created + 1)
    _write_journal(path, [RECORD, later])
    loaded = load_journal(path)
    assert loaded.records() == [RECORD, later]
    assert not (tmp_path / "pruning.json.tmp").exists()


def test_the_journal_keeps_named_parts_and_older_records_as_they_were(tmp_path: Path) -> None:
    path = tmp_path / "pruning.json"
    later = PruneRecord("a:1#3'", {"a:1#2'": (6, 2), "a:1#3": (4, 0)}, RECORD.created + 1, {})
    _write_journal(path, [RECORD, later, NAMED_LATER])
    assert load_journal(path).records() == [RECORD, later, NAMED_LATER]
    # A record without a named part keeps the three items an older version reads.
    assert '"a:1#2\'", ' in path.read_text()
    items = json.loads(path.read_text())["records"]
    assert [len(item) for item in items] == [3, 4, 4]


NAMED_LATER = PruneRecord(
    "a:1#4'", {"a:1#3'": (10, 2), "a:1#4": (0, 0)}, RECORD.created + 2, {"x": {"a:1#3'": (7, 1)}}
)


def test_a_corrupt_journal_is_a_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "pruning.json"
    path.write_text('{"records": [["a#1\'", 0.0]]}')
    with pytest.raises(StorageError, match="corrupt"):
        load_journal(path)

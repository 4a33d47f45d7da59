"""Pruning messages' bytes and the records' journal file."""

from __future__ import annotations

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
    encode_records,
    is_pruning,
)

if TYPE_CHECKING:
    from pathlib import Path

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


def test_a_corrupt_journal_is_a_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "pruning.json"
    path.write_text('{"records": [["a#1\'", 0.0]]}')
    with pytest.raises(StorageError, match="corrupt"):
        load_journal(path)

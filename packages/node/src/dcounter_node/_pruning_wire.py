"""The pruning messages' bytes, sans-IO (see "Pruning messages" in the node README).

::

    payload = "DCP" version(01) body
    body    = msgpack array [kind, items]
    kind    = 1 have (items: survivor ids) | 2 records (items: records)
            | 3 bequeath (items: [victim, p, n]) | 4 answer (items: [victim, status])
            | 5 revoke (items: [victim, p, n]) | 6 stand (items: [victim])
            | 7 named records (items: named records; none: "do you apply named parts?")
            | 8 named ack (items: none: "I apply named parts", the answer to an empty 7)
    record  = [survivor (str), created (float), victims: array of [id, p (uint64), n (uint64)]]
    named record = record + [named: array of [name (str), array of [id, p, n]]]

Like a membership payload, the first byte (``D``) is neither of the seed envelope's flags,
so the node routes it by its first bytes and a node without pruning rejects it as invalid.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any, Final

import msgpack

from dcounter_node._bequest import Answer
from dcounter_node._errors import NodeError
from dcounter_node._pruning import MAX_ID_BYTES, MAX_RECORDS, MAX_VICTIMS, PruneRecord
from dcounter_node._pruning_named import MAX_NAMED_ENTRIES

__all__ = [
    "MAX_RECORDS_PER_MESSAGE",
    "PRUNING_MAGIC",
    "PruningDecodeError",
    "PruningKind",
    "PruningMessage",
    "decode_pruning",
    "encode_answer",
    "encode_bequeath",
    "encode_have",
    "encode_named_ack",
    "encode_named_records",
    "encode_records",
    "encode_revoke",
    "encode_stand",
    "is_pruning",
]

PRUNING_MAGIC: Final = b"DCP\x01"
#: Records per ``records`` message (each holds up to MAX_VICTIMS entries: ~20 KB at most).
MAX_RECORDS_PER_MESSAGE: Final = 16
#: Longest counter name in a named record, in UTF-8 bytes.
MAX_NAME_BYTES: Final = 1024
_MAX_UINT64: Final = 2**64 - 1


class PruningDecodeError(NodeError):
    """A pruning payload that is not what the format allows (remote garbage)."""


class PruningKind(enum.IntEnum):
    HAVE = 1
    RECORDS = 2
    BEQUEATH = 3
    ANSWER = 4
    REVOKE = 5
    #: A standing bequest: the sender's current id, named in advance (no counts).
    STAND = 6
    #: Records with their named part (one a message; none: the sender speaks it).
    NAMED_RECORDS = 7
    #: The answer to an empty ``named records``: the sender applies named parts too.
    NAMED_ACK = 8


@dataclass(frozen=True, slots=True)
class PruningMessage:
    """``survivors`` for a ``have``, ``records`` for a ``records`` or ``named records``
    message; ``victim`` for
    the bequest messages, with ``counts`` (bequeath, revoke) or ``answer``."""

    kind: PruningKind
    survivors: tuple[str, ...] = ()
    records: tuple[PruneRecord, ...] = ()
    victim: str = ""
    counts: tuple[int, int] = (0, 0)
    answer: Answer | None = None


def is_pruning(payload: bytes) -> bool:
    """Whether ``payload`` claims to be a pruning message (by its magic)."""
    return payload[:3] == PRUNING_MAGIC[:3]


def encode_have(survivors: list[str]) -> bytes:
    return PRUNING_MAGIC + msgpack.packb([int(PruningKind.HAVE), survivors], use_bin_type=True)


def _record_items(record: PruneRecord) -> list[Any]:
    victims = [[v, p, n] for v, (p, n) in sorted(record.victims.items())]
    return [record.survivor, record.created, victims]


def encode_records(records: list[PruneRecord]) -> bytes:
    """A ``records`` message (without named parts: what every pruning node reads)."""
    items = [_record_items(r) for r in records]
    return PRUNING_MAGIC + msgpack.packb([int(PruningKind.RECORDS), items], use_bin_type=True)


def encode_named_records(records: list[PruneRecord]) -> bytes:
    """A ``named records`` message: each record with its named part (an empty one for a
    record without: the receiver tells them apart by kind 2 or 7 alone otherwise)."""
    items = []
    for record in records:
        named = record.named or {}
        part = [
            [name, [[v, p, n] for v, (p, n) in sorted(amounts.items())]]
            for name, amounts in sorted(named.items())
        ]
        items.append([*_record_items(record), part, record.named is not None])
    return PRUNING_MAGIC + msgpack.packb([int(PruningKind.NAMED_RECORDS), items], use_bin_type=True)


def encode_named_ack() -> bytes:
    return PRUNING_MAGIC + msgpack.packb([int(PruningKind.NAMED_ACK), []], use_bin_type=True)


def _bequest(kind: PruningKind, victim: str, second: int, third: int | None = None) -> bytes:
    items = [victim, second] if third is None else [victim, second, third]
    return PRUNING_MAGIC + msgpack.packb([int(kind), items], use_bin_type=True)


def encode_bequeath(victim: str, counts: tuple[int, int]) -> bytes:
    return _bequest(PruningKind.BEQUEATH, victim, *counts)


def encode_revoke(victim: str, counts: tuple[int, int]) -> bytes:
    return _bequest(PruningKind.REVOKE, victim, *counts)


def encode_stand(victim: str) -> bytes:
    return PRUNING_MAGIC + msgpack.packb([int(PruningKind.STAND), [victim]], use_bin_type=True)


def encode_answer(victim: str, answer: Answer) -> bytes:
    return _bequest(PruningKind.ANSWER, victim, int(answer))


def _id(value: object) -> str:
    if not isinstance(value, str) or not value or len(value.encode()) > MAX_ID_BYTES:
        raise PruningDecodeError(f"an id must be a string of 1..{MAX_ID_BYTES} UTF-8 bytes")
    return value


def _count(value: object) -> int:
    if type(value) is not int or not 0 <= value <= _MAX_UINT64:
        raise PruningDecodeError("a count must be an unsigned 64-bit integer")
    return value


def _named_record(value: object) -> PruneRecord:
    if not isinstance(value, list) or len(value) != 5:
        raise PruningDecodeError("a named record must be an array of 5 items")
    record = _record(value[:3])
    part, present = value[3], value[4]
    if not isinstance(part, list) or type(present) is not bool or (part and not present):
        raise PruningDecodeError("a named part must be an array, then whether there is one")
    named: dict[str, dict[str, tuple[int, int]]] = {}
    entries = 0
    for item in part:
        if not isinstance(item, list) or len(item) != 2 or not isinstance(item[1], list):
            raise PruningDecodeError("a named part's item must be [name, victims]")
        name, victims = item
        if not isinstance(name, str) or not name or len(name.encode()) > MAX_NAME_BYTES:
            raise PruningDecodeError(f"a name must be a string of 1..{MAX_NAME_BYTES} bytes")
        if name in named or not victims:
            raise PruningDecodeError("a name is listed twice, or with no victim")
        entries += len(victims)
        if entries > MAX_NAMED_ENTRIES:
            raise PruningDecodeError(f"a named part holds at most {MAX_NAMED_ENTRIES} entries")
        amounts = named[name] = {}
        for entry in victims:
            if not isinstance(entry, list) or len(entry) != 3:
                raise PruningDecodeError("a victim must be an array of 3 items")
            victim = _id(entry[0])
            if victim not in record.victims or victim in amounts:
                raise PruningDecodeError("a named victim must be a victim of its record, once")
            amounts[victim] = (_count(entry[1]), _count(entry[2]))
    return PruneRecord(record.survivor, record.victims, record.created, named if present else None)


def _record(value: object) -> PruneRecord:
    if not isinstance(value, list) or len(value) != 3:
        raise PruningDecodeError("a record must be an array of 3 items")
    survivor, created, victims = value
    survivor = _id(survivor)
    if isinstance(created, bool) or not isinstance(created, int | float):
        raise PruningDecodeError("created must be a number")
    if not math.isfinite(created):
        raise PruningDecodeError("created must be finite")
    if not isinstance(victims, list) or not 1 <= len(victims) <= MAX_VICTIMS:
        raise PruningDecodeError(f"a record must name 1..{MAX_VICTIMS} victims")
    amounts: dict[str, tuple[int, int]] = {}
    for item in victims:
        if not isinstance(item, list) or len(item) != 3:
            raise PruningDecodeError("a victim must be an array of 3 items")
        victim = _id(item[0])
        if victim == survivor or victim in amounts:
            raise PruningDecodeError("a victim is named twice, or is its record's survivor")
        amounts[victim] = (_count(item[1]), _count(item[2]))
    return PruneRecord(survivor, amounts, float(created))


def decode_pruning(payload: bytes) -> PruningMessage:
    """The message in ``payload``; :class:`PruningDecodeError` for anything malformed."""
    if payload[: len(PRUNING_MAGIC)] != PRUNING_MAGIC:
        raise PruningDecodeError("not a pruning message of version 1")
    try:
        body: Any = msgpack.unpackb(
            payload[len(PRUNING_MAGIC) :],
            raw=False,
            max_array_len=MAX_RECORDS,
            max_map_len=0,
            max_bin_len=0,
            max_ext_len=0,
        )
    except (ValueError, msgpack.UnpackException) as exc:
        raise PruningDecodeError(f"body is not msgpack: {exc}") from None
    if not isinstance(body, list) or len(body) != 2 or not isinstance(body[1], list):
        raise PruningDecodeError("body must be an array [kind, items]")
    kind_code, items = body
    if kind_code == PruningKind.HAVE and type(kind_code) is int:
        return PruningMessage(PruningKind.HAVE, survivors=tuple(_id(i) for i in items))
    if kind_code == PruningKind.RECORDS and type(kind_code) is int:
        if len(items) > MAX_RECORDS_PER_MESSAGE:
            raise PruningDecodeError(f"at most {MAX_RECORDS_PER_MESSAGE} records a message")
        return PruningMessage(PruningKind.RECORDS, records=tuple(_record(r) for r in items))
    if kind_code == PruningKind.NAMED_RECORDS and type(kind_code) is int:
        if len(items) > 1:
            raise PruningDecodeError("at most 1 named record a message")
        records = tuple(_named_record(r) for r in items)
        return PruningMessage(PruningKind.NAMED_RECORDS, records=records)
    if kind_code == PruningKind.NAMED_ACK and type(kind_code) is int:
        if items:
            raise PruningDecodeError("a named ack carries no items")
        return PruningMessage(PruningKind.NAMED_ACK)
    if type(kind_code) is int and kind_code in (PruningKind.BEQUEATH, PruningKind.REVOKE):
        if len(items) != 3:
            raise PruningDecodeError("bequeath and revoke carry [victim, p, n]")
        counts = (_count(items[1]), _count(items[2]))
        return PruningMessage(PruningKind(kind_code), victim=_id(items[0]), counts=counts)
    if kind_code == PruningKind.STAND and type(kind_code) is int:
        if len(items) != 1:
            raise PruningDecodeError("stand carries [victim]")
        return PruningMessage(PruningKind.STAND, victim=_id(items[0]))
    if kind_code == PruningKind.ANSWER and type(kind_code) is int:
        if len(items) != 2 or type(items[1]) is not int or items[1] not in set(Answer):
            raise PruningDecodeError("an answer carries [victim, status 1..5]")
        return PruningMessage(PruningKind.ANSWER, victim=_id(items[0]), answer=Answer(items[1]))
    raise PruningDecodeError(f"unknown message kind {kind_code!r}")

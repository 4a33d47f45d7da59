"""The seed messages' decoder: ``decode_message``, validating as the reference does.

The decoder is as lenient as the reference where that is
harmless (any integer width, any key order, unknown keys ignored, missing keys and nil read
as zero values, the last duplicate key wins) and stricter where the reference's leniency is an
accident (see the package README for every deliberate difference).

Every cause of refusal has its own :class:`~dcounter_protocol._errors.MessageError`, so a
node can count and log hostile input. Pure and thread-safe.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

import msgpack

from dcounter_crdt import MAX_COUNT
from dcounter_protocol._errors import (
    CountOutOfRangeError,
    EmptyMessageError,
    EmptyNodeIdError,
    EmptyPushError,
    InvalidFlagError,
    InvalidMessageTypeError,
    MalformedMessageError,
    MessageTooLargeError,
)
from dcounter_protocol._message import (
    DEFAULT_MAX_MESSAGE_SIZE,
    FLAG_COMPRESSED,
    FLAG_PLAIN,
    MESSAGE_CLASSES,
    MessageType,
)
from dcounter_protocol._zstd import decompress

if TYPE_CHECKING:
    from collections.abc import Mapping

    from dcounter_protocol._message import Message

__all__ = ["decode_message"]

_EMPTY: Final[Mapping[str, int]] = MappingProxyType({})
_MESSAGE_TYPES: Final[dict[int, MessageType]] = {int(kind): kind for kind in MessageType}
_STR_ONLY: Final = frozenset((str,))
_INT_ONLY: Final = frozenset((int,))
_INT_OR_NIL: Final = frozenset((int, type(None)))


def _field(fields: dict[str, Any], name: str, kind: type, zero: Any) -> Any:
    """One field, typed like the reference's struct field; nil or absent is its zero value."""
    value = fields.get(name)
    if value is None:
        return zero
    if type(value) is not kind:
        raise MalformedMessageError(
            f"field {name!r} must be {kind.__name__}, got {type(value).__name__}"
        )
    return value


def _counts(counts: dict[Any, Any] | None, what: str) -> Mapping[str, int] | None:
    if not counts:
        return None if counts is None else _EMPTY
    if not set(map(type, counts)) <= _STR_ONLY:
        raise MalformedMessageError(f"{what}: replica ids must be str")
    if "" in counts:
        raise MalformedMessageError(f"{what}: empty replica id")
    kinds = set(map(type, counts.values()))
    if not kinds <= _INT_ONLY:
        if not kinds <= _INT_OR_NIL:
            raise MalformedMessageError(f"{what}: counts must be unsigned integers")
        # The reference decodes a nil count as 0.
        counts = {replica: 0 if count is None else count for replica, count in counts.items()}
    if min(counts.values()) < 0:
        raise CountOutOfRangeError(f"{what}: negative count")
    return MappingProxyType(counts)


def _decode_body(body: bytes | memoryview) -> Message:
    try:
        # unpackb bounds every length by len(body) and rejects trailing bytes (ExtraData).
        fields = msgpack.unpackb(body, raw=False, strict_map_key=True)
    except (ValueError, msgpack.UnpackException) as exc:
        reason = str(exc) or type(exc).__name__
        raise MalformedMessageError(f"undecodable msgpack body: {reason}") from exc
    if type(fields) is not dict:
        raise MalformedMessageError(
            f"message body must be a msgpack map, got {type(fields).__name__}"
        )
    if not set(map(type, fields)) <= _STR_ONLY:
        raise MalformedMessageError("message field names must be str")
    # Type errors first, then validation in the reference's order (type, id, push maps).
    kind = _field(fields, "t", int, 0)
    node_id = _field(fields, "id", str, "")
    increments = _counts(_field(fields, "inc", dict, None), "increments")
    decrements = _counts(_field(fields, "dec", dict, None), "decrements")
    digest = _field(fields, "dig", int, 0)
    if not 0 <= digest <= MAX_COUNT:
        raise MalformedMessageError(f"digest {digest} is not a uint64")
    message_type = _MESSAGE_TYPES.get(kind)
    if message_type is None:
        raise InvalidMessageTypeError(f"invalid message type {kind}")
    if not node_id:
        raise EmptyNodeIdError("message without a node id")
    if message_type is MessageType.PUSH and not increments and not decrements:
        raise EmptyPushError("a push must carry increments or decrements")
    return MESSAGE_CLASSES[message_type](
        node_id=node_id, increments=increments, decrements=decrements, digest=digest
    )


def decode_message(data: bytes, *, max_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> Message:
    """Decode an envelope, validating it as the reference does, with one error per cause.

    Raises :class:`EmptyMessageError`, :class:`InvalidFlagError`,
    :class:`MessageTooLargeError` (envelope or decompressed body above ``max_size``),
    :class:`DecompressionError`, :class:`MalformedMessageError`,
    :class:`InvalidMessageTypeError`, :class:`EmptyNodeIdError`, :class:`EmptyPushError` or
    :class:`CountOutOfRangeError`; all are :class:`~dcounter_protocol._errors.MessageError`.
    """
    size = len(data)
    if size == 0:
        raise EmptyMessageError("empty message")
    if size > max_size:
        raise MessageTooLargeError(f"message of {size} bytes exceeds {max_size}")
    flag = data[0]
    if flag != FLAG_PLAIN and flag != FLAG_COMPRESSED:
        raise InvalidFlagError(f"unknown envelope flag 0x{flag:02x}")
    if size == 1:
        raise EmptyMessageError("envelope flag without a body")
    if flag == FLAG_COMPRESSED:
        return _decode_body(decompress(memoryview(data)[1:], max_size))
    return _decode_body(memoryview(data)[1:])

"""The seed messages' encoder: ``encode_message``, byte-exact with the reference, and fast.

The encoder writes the body itself instead of calling ``msgpack.packb``: the reference never
uses compact integers (``t`` is always ``cc XX``, every uint64 is ``cf`` + 8 bytes), and
``packb`` picks the smallest width.

It is the hot path of every push a node sends (see ``benchmarks/bench_protocol.py``): pushes
of a repeated shape are packed by one ``struct`` call of a cached layout
(:mod:`~dcounter_protocol._layout`), other ones from cached encoded entries, and
``encode_message`` stays one function on purpose (a call costs a third of a pull's time).
Pure and thread-safe.
"""

from __future__ import annotations

import struct
from operator import countOf
from typing import TYPE_CHECKING, Final

from dcounter_crdt import MAX_COUNT
from dcounter_protocol._errors import EncodeError, OversizeMessageError
from dcounter_protocol._layout import (
    KEY_DEC,
    KEY_DIG,
    KEY_INC,
    NIL,
    LayoutCache,
    encode_str,
    map_header,
)
from dcounter_protocol._message import (
    COMPRESSION_THRESHOLD,
    DEFAULT_MAX_MESSAGE_SIZE,
    MESSAGE_CLASSES,
    MessageType,
    Push,
)
from dcounter_protocol._zstd import compressor

if TYPE_CHECKING:
    from collections.abc import Mapping

    from dcounter_protocol._message import Message

__all__ = ["encode_message"]

_pack_u64: Final = struct.Struct(">BQ").pack

_KEY_T: Final = b"\xa1t"
_KEY_ID: Final = b"\xa2id"
#: A plain envelope's flag, the body's map header (4 or 5 fields) and its first key, ``t``.
_HEAD: Final = b"\x00\x84" + _KEY_T
_HEAD_DIG: Final = b"\x00\x85" + _KEY_T
#: ``t`` is a uint8 that the reference always writes as ``cc XX``.
_TYPE_BYTES: Final[dict[int, bytes]] = {kind: bytes((0xCC, kind)) for kind in MessageType}
#: Per message class: the start of a plain envelope without and with a digest (the flag,
#: the body's map header of 4 or 5 fields, and ``t`` written as ``cc XX``, as the reference
#: always does).
_HEADS: Final[dict[type[Message], tuple[bytes, bytes]]] = {
    cls: (_HEAD + _TYPE_BYTES[kind], _HEAD_DIG + _TYPE_BYTES[kind])
    for kind, cls in MESSAGE_CLASSES.items()
}
_PUSH_HEADS: Final = _HEADS[Push]


class _EntryCache(dict[tuple[str, int], bytes]):
    """Encoded map entries (``<str> cf <8 bytes>``) by (replica id, count), built on demand.

    A full-state push re-sends mostly unchanged entries, so a memo halves the cost of
    encoding it; the cache is cleared whenever it reaches its bound.
    """

    __slots__ = ()
    _LIMIT: Final = 1 << 14

    def __missing__(self, entry: tuple[str, int]) -> bytes:
        replica, count = entry
        if type(replica) is not str or not replica:
            raise EncodeError(f"replica ids must be non-empty str, got {replica!r}")
        try:
            encoded = encode_str(replica, "replica id") + _pack_u64(0xCF, count)
        except struct.error:
            raise EncodeError(f"count {count} of {replica!r} is outside 0..{MAX_COUNT}") from None
        if len(self) >= self._LIMIT:
            self.clear()
        self[entry] = encoded
        return encoded


_entries: Final = _EntryCache()
_INT_ONLY: Final = frozenset((int,))
#: Map headers of the sizes most messages have (fixmap), by size.
_SMALL_MAP_HEADERS: Final = tuple(bytes((0x80 | size,)) for size in range(16))


class _NodeIdCache(dict[str, bytes]):
    """``id`` key and encoded node id by node id: a node sends under one or a few ids."""

    __slots__ = ()
    _LIMIT: Final = 256

    def __missing__(self, node_id: str) -> bytes:
        encoded = _KEY_ID + encode_str(node_id, "node id")
        if len(self) >= self._LIMIT:
            self.clear()
        self[node_id] = encoded
        return encoded


_node_ids: Final = _NodeIdCache()
#: Pushes of up to this many entries are packed by a layout of their shape; larger ones
#: (compressed, and rarely of a repeated shape) are joined entry by entry.
_LAYOUT_MAX_ENTRIES: Final = 256
#: The longest envelope sent as it is, never compressed.
_PLAIN_MAX: Final = COMPRESSION_THRESHOLD + 1
_layouts: Final = LayoutCache(_node_ids.__getitem__, limit=1 << 14)


def _packed(msg: Push) -> bytes | None:
    """The push's envelope packed by the layout of its shape, or None when the entry-by-entry
    path must write it or name what is wrong with it (a nil map, too many entries, anything
    invalid): every check of :func:`encode_message` is made here or by the layout.
    """
    increments = msg.increments
    decrements = msg.decrements
    digest = msg.digest
    if (
        increments is None
        or decrements is None
        or type(digest) is not int
        or type(msg.node_id) is not str
    ):
        return None
    counts = [*increments.values(), *decrements.values()]
    if not counts or len(counts) > _LAYOUT_MAX_ENTRIES:
        return None
    # A CounterState's counts are exact ints already; others are checked here, in bulk (a
    # bool would pass the struct, and would hit an int's cached entry on the other path).
    if not msg._of_state and countOf(map(type, counts), int) != len(counts):
        return None
    try:
        layout = _layouts[(_PUSH_HEADS[digest != 0], msg.node_id, *increments, None, *decrements)]
    except EncodeError:
        return None
    args = layout.args.copy()
    args[1 : layout.counts_end : 2] = counts
    if digest:
        args[-2] = digest
    try:
        return layout.pack(*args)
    except struct.error:
        return None


def _add_counts(parts: list[bytes], counts: Mapping[str, int], what: str) -> None:
    """Append the encoded ``counts`` map to ``parts``."""
    # Checked up front: the cache would take True for 1 and 1.0 for 1 (equal keys).
    if not _INT_ONLY.issuperset(map(type, counts.values())):
        bad = next(v for v in counts.values() if type(v) is not int)
        raise EncodeError(f"{what}: counts must be int, got {bad!r}")
    size = len(counts)
    parts.append(_SMALL_MAP_HEADERS[size] if size < 16 else map_header(size))
    try:
        parts += map(_entries.__getitem__, counts.items())
    except EncodeError as exc:
        raise EncodeError(f"{what}: {exc}") from None


def encode_message(msg: Message, *, max_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> bytes:
    """Encode ``msg`` into an envelope exactly as the reference does.

    Raises :class:`EncodeError` for an invalid message (type not 1-3, empty node id, push
    without counts, a count or the digest outside uint64) or when the body or the envelope
    would exceed ``max_size`` (the size of the envelope: the payload a frame carries; then
    :class:`OversizeMessageError`, an ``EncodeError``).
    """
    # Pushes of a repeated shape take one struct call (and make every check on the way);
    # the rest, and pulls and acks, are checked and joined below, in this one function: the
    # call overhead was a third of a pull's cost.
    envelope = _packed(msg) if type(msg) is Push else None
    if envelope is not None and len(envelope) <= _PLAIN_MAX and len(envelope) <= max_size:
        return envelope
    if envelope is None:
        heads = _HEADS.get(type(msg))
        if heads is None:
            raise EncodeError(f"not a message: {msg!r} (a Push, DigestPull or DigestAck)")
        node_id = msg.node_id
        if type(node_id) is not str or not node_id:
            raise EncodeError(f"node id must be a non-empty str, got {node_id!r}")
        increments = msg.increments
        decrements = msg.decrements
        if not increments and not decrements and heads is _PUSH_HEADS:
            raise EncodeError("a push must carry increments or decrements")
        digest = msg.digest
        if type(digest) is not int or not 0 <= digest <= MAX_COUNT:
            raise EncodeError(f"digest must be an int in 0..{MAX_COUNT}, got {digest!r}")
        # Every piece goes into one list, joined once: cheaper than growing a bytearray, and
        # the flag byte comes first so that a plain envelope needs no second copy.
        parts = [heads[1] if digest else heads[0], _node_ids[node_id], KEY_INC]
        # Nil maps (pulls, acks, one-sided pushes) are the common case: no call for them.
        if increments is None:
            parts.append(NIL)
        else:
            _add_counts(parts, increments, "increments")
        parts.append(KEY_DEC)
        if decrements is None:
            parts.append(NIL)
        else:
            _add_counts(parts, decrements, "decrements")
        if digest:
            parts.append(KEY_DIG)
            parts.append(_pack_u64(0xCF, digest))
        envelope = b"".join(parts)

    size = len(envelope) - 1
    if size > max_size:
        raise OversizeMessageError(f"message body of {size} bytes exceeds {max_size}")
    if size > COMPRESSION_THRESHOLD:
        compressed = compressor().compress(memoryview(envelope)[1:])
        if len(compressed) < size:
            return b"\x80" + compressed
    if size + 1 > max_size:
        raise OversizeMessageError(f"message of {size + 1} bytes exceeds {max_size}")
    return envelope

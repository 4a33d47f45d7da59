"""The seed's message codec: msgpack bodies in a one-byte envelope, byte-exact with the reference.

Wire format (what the Go reference writes, see the golden vectors' README)::

    envelope = flag (1 byte: 0x00 plain, 0x80 zstd) + body (msgpack, zstd-compressed if 0x80)
    body     = map {"t": uint8, "id": str, "inc": map|nil, "dec": map|nil[, "dig": uint64]}

The encoder writes the body itself instead of calling ``msgpack.packb``: the reference never
uses compact integers (``t`` is always ``cc XX``, every uint64 is ``cf`` + 8 bytes), and
``packb`` picks the smallest width. The decoder is as lenient as the reference where that is
harmless (any integer width, any key order, unknown keys ignored, missing keys and nil read
as zero values, the last duplicate key wins) and stricter where the reference's leniency is an
accident (see the package README for every deliberate difference).

Both functions are pure and thread-safe: zstd contexts are cached per thread.
"""

from __future__ import annotations

import enum
import struct
import threading
from dataclasses import dataclass, field
from operator import countOf
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Final, Literal, TypeAlias

import msgpack
import zstandard

from dcounter_crdt import MAX_COUNT, CounterState
from dcounter_protocol._errors import (
    CountOutOfRangeError,
    DecompressionError,
    EmptyMessageError,
    EmptyNodeIdError,
    EmptyPushError,
    EncodeError,
    InvalidFlagError,
    InvalidMessageTypeError,
    MalformedMessageError,
    MessageTooLargeError,
    OversizeMessageError,
)
from dcounter_protocol._layout import (
    KEY_DEC,
    KEY_DIG,
    KEY_INC,
    NIL,
    LayoutCache,
    encode_str,
    map_header,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "COMPRESSION_THRESHOLD",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "FLAG_COMPRESSED",
    "FLAG_PLAIN",
    "DigestAck",
    "DigestPull",
    "Message",
    "MessageType",
    "Push",
    "decode_message",
    "encode_message",
]

#: Largest envelope (flag byte included) and largest decompressed body, as in the reference.
DEFAULT_MAX_MESSAGE_SIZE: Final = 10 * 1024 * 1024
#: Bodies longer than this are compressed when zstd makes them smaller.
COMPRESSION_THRESHOLD: Final = 1024
FLAG_PLAIN: Final = 0x00
FLAG_COMPRESSED: Final = 0x80

#: zstd level of the reference's encoder (klauspost/compress SpeedDefault matches level 3).
_ZSTD_LEVEL: Final = 3
#: Decompressed bytes read per step while bounding the output.
_DECOMPRESS_CHUNK: Final = 128 * 1024
#: Windows up to this size are always allowed, whatever ``max_size`` (Python's streaming
#: frames at level 3 declare 2 MiB; klauspost's streams up to 8 MiB).
_MIN_WINDOW_LIMIT: Final = 8 * 1024 * 1024


class MessageType(enum.IntEnum):
    """The seed's three message types (the ``t`` field)."""

    PUSH = 1
    DIGEST_PULL = 2
    DIGEST_ACK = 3


_EMPTY: Final[Mapping[str, int]] = MappingProxyType({})


def _is_frozen(counts: Mapping[str, int] | None) -> bool:
    # Read-only already (CounterState's maps, decoded maps): shared, not copied.
    return counts is None or type(counts) is MappingProxyType


class _Counts:
    """What the three messages share: the count maps every type carries on the wire.

    ``increments``/``decrements`` of ``None`` are Go nil maps (``c0`` on the wire), distinct
    from empty maps (``80``). The reference writes and reads them on every type, so pulls and
    acks keep them too (they mean nothing there). Maps given as plain mappings are copied
    into read-only views. Construction does not validate (so invalid messages can be
    represented and rejected by :func:`encode_message`); :func:`decode_message` only ever
    returns valid ones.
    """

    __slots__ = ()
    increments: Mapping[str, int] | None
    decrements: Mapping[str, int] | None

    def __post_init__(self) -> None:
        if not _is_frozen(self.increments):
            object.__setattr__(self, "increments", MappingProxyType(dict(self.increments or {})))
        if not _is_frozen(self.decrements):
            object.__setattr__(self, "decrements", MappingProxyType(dict(self.decrements or {})))

    def state(self) -> CounterState:
        """The message's counts as a counter state (nil maps read as empty)."""
        return CounterState.from_maps(self.increments, self.decrements)


@dataclass(frozen=True, slots=True)
class Push(_Counts):
    """A push carrying (part of) the sender's state (``t`` = 1)."""

    node_id: str
    increments: Mapping[str, int] | None = None
    decrements: Mapping[str, int] | None = None
    digest: int = 0
    #: The maps are a :class:`CounterState`'s, valid by construction (set by
    #: :meth:`from_state` only): the encoder does not check their counts again.
    _of_state: bool = field(default=False, init=False, repr=False, compare=False)
    type: ClassVar[Literal[MessageType.PUSH]] = MessageType.PUSH

    @classmethod
    def from_state(cls, node_id: str, state: CounterState, digest: int = 0) -> Push:
        """A push of ``state``'s maps; cheaper to encode than the same maps given as dicts."""
        push = cls(node_id, state.increments, state.decrements, digest)
        # A subclass could override the maps with anything: only the class itself is trusted.
        if type(state) is CounterState:
            object.__setattr__(push, "_of_state", True)
        return push


@dataclass(frozen=True, slots=True)
class DigestPull(_Counts):
    """A request to compare digests; the receiver pushes its state on mismatch (``t`` = 2)."""

    node_id: str
    digest: int = 0
    increments: Mapping[str, int] | None = None
    decrements: Mapping[str, int] | None = None
    type: ClassVar[Literal[MessageType.DIGEST_PULL]] = MessageType.DIGEST_PULL


@dataclass(frozen=True, slots=True)
class DigestAck(_Counts):
    """The answer to a digest pull whose digest matched (``t`` = 3)."""

    node_id: str
    digest: int = 0
    increments: Mapping[str, int] | None = None
    decrements: Mapping[str, int] | None = None
    type: ClassVar[Literal[MessageType.DIGEST_ACK]] = MessageType.DIGEST_ACK


#: One protocol message, field for field the reference's ``protocol.Message``, as a tagged
#: union: dispatch with ``match`` on the class (the ``type`` tag is a class constant).
Message: TypeAlias = Push | DigestPull | DigestAck

_CLASSES: Final[dict[MessageType, type[Push] | type[DigestPull] | type[DigestAck]]] = {
    cls.type: cls for cls in (Push, DigestPull, DigestAck)
}


# -- encoding ---------------------------------------------------------------------------

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
    for kind, cls in _CLASSES.items()
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
        compressed = _compressor().compress(memoryview(envelope)[1:])
        if len(compressed) < size:
            return b"\x80" + compressed
    if size + 1 > max_size:
        raise OversizeMessageError(f"message of {size + 1} bytes exceeds {max_size}")
    return envelope


# -- zstd contexts ----------------------------------------------------------------------

# python-zstandard contexts must not be used by two threads at once; one set per thread.
_local = threading.local()


def _compressor() -> zstandard.ZstdCompressor:
    cctx: zstandard.ZstdCompressor | None = getattr(_local, "cctx", None)
    if cctx is None:
        cctx = zstandard.ZstdCompressor(
            level=_ZSTD_LEVEL, write_checksum=True, write_content_size=True
        )
        _local.cctx = cctx
    return cctx


def _decompressor(window_limit: int) -> zstandard.ZstdDecompressor:
    cache: dict[int, zstandard.ZstdDecompressor] | None = getattr(_local, "dctx", None)
    if cache is None:
        cache = _local.dctx = {}
    dctx = cache.get(window_limit)
    if dctx is None:
        dctx = cache[window_limit] = zstandard.ZstdDecompressor(max_window_size=window_limit)
    return dctx


def _decompress(data: memoryview, max_size: int) -> bytes:
    """Decompress one or more concatenated zstd frames, never producing more than max_size."""
    try:
        declared = zstandard.frame_content_size(data)
    except zstandard.ZstdError:
        declared = -1  # not even a frame header: the general path reports why
    if declared > max_size:
        raise MessageTooLargeError(f"zstd frame declares {declared} bytes, above {max_size}")
    dctx = _decompressor(max(_MIN_WINDOW_LIMIT, 1 << max(max_size - 1, 1).bit_length()))
    if declared >= 0:
        # What Go and python-zstandard send: one frame that declares its size. A one-shot
        # decompression allocates exactly that much and fails on truncation or on more data.
        try:
            result: bytes = dctx.decompress(data, allow_extra_data=False)
        except zstandard.ZstdError:
            pass  # several frames, or a bad one: the general path tells which
        else:
            return result
    return _decompress_frames(dctx, data, max_size)


def _decompress_frames(dctx: zstandard.ZstdDecompressor, data: memoryview, max_size: int) -> bytes:
    """The general case: frames without a content size, concatenated frames, bad input.

    Two passes. ``stream_reader(read_across_frames=True)`` handles every frame layout and
    lets us stop as soon as the output passes ``max_size`` (a bomb costs one chunk of
    memory), but it ends silently at the end of the input, so a truncated frame would pass.
    Once the output is known to be bounded, ``decompressobj`` (which reports ``eof`` per
    frame) decompresses frame by frame and proves that every frame is complete.
    """
    try:
        total = 0
        with dctx.stream_reader(data, read_across_frames=True, closefd=False) as reader:
            while chunk := reader.read(_DECOMPRESS_CHUNK):
                total += len(chunk)
                if total > max_size:
                    raise MessageTooLargeError(f"decompressed message exceeds {max_size} bytes")
        parts: list[bytes] = []
        rest: bytes | memoryview = data
        while rest:
            dobj = dctx.decompressobj()
            parts.append(dobj.decompress(rest))
            if not dobj.eof:
                raise DecompressionError("zstd data ends in the middle of a frame")
            rest = dobj.unused_data
    except zstandard.ZstdError as exc:
        raise DecompressionError(f"zstd data does not decompress: {exc}") from exc
    return b"".join(parts)


# -- decoding ---------------------------------------------------------------------------

_MESSAGE_TYPES: Final[dict[int, MessageType]] = {int(kind): kind for kind in MessageType}
_STR_ONLY: Final = frozenset((str,))
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
    return _CLASSES[message_type](
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
        return _decode_body(_decompress(memoryview(data)[1:], max_size))
    return _decode_body(memoryview(data)[1:])

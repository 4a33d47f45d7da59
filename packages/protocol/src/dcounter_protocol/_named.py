"""Named-counter messages (issue 20), sans-IO: dcounter nodes only, stream mode only.

::

    payload = "DCN" 01 kind body            body: msgpack
    kind 01 push     [full (bool), {name: {replica: [p, n]}}]
    kind 02 pull     [buckets (uint), root (uint64)]
    kind 03 buckets  [buckets (uint), digests (bin, 8 bytes big-endian per bucket)]
    kind 04 keys     [buckets (uint), {bucket (uint): hashes (bin, 8 bytes per key)}]
    kind 05 want     hashes (bin, 8 bytes per key)

The first byte ``D`` (0x44) is neither of the seed envelope's flags (0x00, 0x80), so a node
that does not know these messages rejects one as an invalid envelope instead of misreading
it; they only go to peers whose stream confirmed :data:`~dcounter_protocol.CAP_NAMED`.
``full`` says the push holds the sender's whole state of each name it carries (an
anti-entropy repair), not a delta. The default counter never travels here: it stays in the
seed's messages, byte for byte.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import msgpack

from dcounter_crdt import DEFAULT_KEY, MAX_COUNT, CounterMapState, CounterState
from dcounter_protocol._errors import EncodeError, NamedMessageError, OversizeMessageError
from dcounter_protocol._message import DEFAULT_MAX_MESSAGE_SIZE

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

__all__ = [
    "MAX_NAMED_BUCKETS",
    "NAMED_MAGIC",
    "NamedBuckets",
    "NamedKeys",
    "NamedKind",
    "NamedMessage",
    "NamedPull",
    "NamedPush",
    "NamedWant",
    "decode_named",
    "encode_named",
    "is_named",
    "split_named",
]

NAMED_MAGIC: Final = b"DCN\x01"
#: The most buckets a digest message may describe (a power of two).
MAX_NAMED_BUCKETS: Final = 1 << 16
#: Longest counter name on the wire, in UTF-8 bytes (a node's own max_key_length applies
#: on top when it merges).
MAX_NAME_BYTES: Final = 65535
#: Longest replica id, in UTF-8 bytes (as for the seed's pushes).
MAX_REPLICA_BYTES: Final = 255
_HASHES: Final = struct.Struct(">Q")


class NamedKind(enum.Enum):
    """The kind byte after the magic (a plain Enum: never equal to a seed MessageType)."""

    NAMED_PUSH = 1
    NAMED_PULL = 2
    NAMED_BUCKETS = 3
    NAMED_KEYS = 4
    NAMED_WANT = 5


@dataclass(frozen=True, slots=True)
class NamedPush:
    """Counters by name; ``full``: the sender's whole state of each (a repair), else a delta."""

    state: CounterMapState
    full: bool = False

    @property
    def kind(self) -> NamedKind:
        return NamedKind.NAMED_PUSH


@dataclass(frozen=True, slots=True)
class NamedPull:
    """ "Here is my root digest over ``buckets`` buckets": answered by buckets if it differs."""

    buckets: int
    root: int

    @property
    def kind(self) -> NamedKind:
        return NamedKind.NAMED_PULL


@dataclass(frozen=True, slots=True)
class NamedBuckets:
    """Every bucket's digest (level 1), ``len(digests) == buckets``."""

    buckets: int
    digests: tuple[int, ...]

    @property
    def kind(self) -> NamedKind:
        return NamedKind.NAMED_BUCKETS


@dataclass(frozen=True, slots=True)
class NamedKeys:
    """Per differing bucket, the hash of each key the sender holds there (level 2)."""

    buckets: int
    keys: Mapping[int, tuple[int, ...]]

    @property
    def kind(self) -> NamedKind:
        return NamedKind.NAMED_KEYS


@dataclass(frozen=True, slots=True)
class NamedWant:
    """Key hashes (from a keys message) the sender lacks: "send me these names in full"."""

    hashes: tuple[int, ...]

    @property
    def kind(self) -> NamedKind:
        return NamedKind.NAMED_WANT


NamedMessage = NamedPush | NamedPull | NamedBuckets | NamedKeys | NamedWant


def is_named(payload: bytes) -> bool:
    """Whether ``payload`` claims to be a named-counter message (by its magic)."""
    return payload[:3] == NAMED_MAGIC[:3]


# -- encoding -------------------------------------------------------------------------------


def _pack_hashes(hashes: Iterable[int]) -> bytes:
    values = tuple(hashes)
    try:
        return struct.pack(f">{len(values)}Q", *values)
    except struct.error:
        raise EncodeError("a digest or key hash is not a uint64") from None


def _entries(state: CounterMapState) -> dict[str, dict[str, list[int]]]:
    # Sorted names and replica ids: the same state always encodes to the same bytes.
    body: dict[str, dict[str, list[int]]] = {}
    counters = state.counters
    for name in sorted(counters):
        if name == DEFAULT_KEY:
            raise EncodeError("the default counter travels in the seed's messages")
        counter = counters[name]
        inc, dec = counter.increments, counter.decrements
        body[name] = {r: [inc.get(r, 0), dec.get(r, 0)] for r in sorted(inc.keys() | dec.keys())}
    return body


def _check_buckets(buckets: int, error: type[NamedMessageError | EncodeError]) -> int:
    if type(buckets) is not int or not 1 <= buckets <= MAX_NAMED_BUCKETS:
        raise error(f"bucket count must be an int in 1..{MAX_NAMED_BUCKETS}, got {buckets!r}")
    if buckets & (buckets - 1):
        raise error(f"bucket count must be a power of two, got {buckets}")
    return buckets


def _body(message: NamedMessage) -> Any:
    match message:
        case NamedPush():
            return [bool(message.full), _entries(message.state)]
        case NamedPull():
            if type(message.root) is not int or not 0 <= message.root <= MAX_COUNT:
                raise EncodeError("root digest must be a uint64")
            return [_check_buckets(message.buckets, EncodeError), message.root]
        case NamedBuckets():
            buckets = _check_buckets(message.buckets, EncodeError)
            if len(message.digests) != buckets:
                raise EncodeError(f"{len(message.digests)} digests for {buckets} buckets")
            return [buckets, _pack_hashes(message.digests)]
        case NamedKeys():
            buckets = _check_buckets(message.buckets, EncodeError)
            if any(not 0 <= b < buckets for b in message.keys):
                raise EncodeError(f"a bucket index is outside 0..{buckets - 1}")
            return [buckets, {b: _pack_hashes(h) for b, h in message.keys.items()}]
        case NamedWant():
            return _pack_hashes(message.hashes)


def encode_named(message: NamedMessage, *, max_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> bytes:
    """The payload of ``message``.

    Raises :class:`EncodeError` for a message that cannot be encoded (the default counter in
    a push, a bad bucket count or hash) and :class:`OversizeMessageError` above ``max_size``
    (see :func:`split_named`).
    """
    if isinstance(message, NamedPush) and not message.state:
        raise EncodeError("a named push needs at least one counter")
    try:
        body = msgpack.packb(_body(message), use_bin_type=True)
    except (OverflowError, ValueError, TypeError) as exc:
        raise EncodeError(f"cannot encode {message.kind.name}: {exc}") from None
    payload = NAMED_MAGIC + bytes((message.kind.value,)) + body
    if len(payload) > max_size:
        raise OversizeMessageError(f"{message.kind.name} of {len(payload)} bytes > {max_size}")
    return payload


def split_named(message: NamedMessage, *, max_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> list[bytes]:
    """``message`` as one or more payloads of at most ``max_size`` bytes each.

    A push is split by names, keys by buckets and a want by hashes; each part is a valid
    message on its own. Raises :class:`OversizeMessageError` when one name's state (or one
    bucket's key hashes, or a buckets message) alone does not fit.
    """
    try:
        return [encode_named(message, max_size=max_size)]
    except OversizeMessageError:
        pass
    match message:
        case NamedPush():
            counters = message.state.counters
            full = message.full
            return _halves(
                sorted(counters),
                lambda part: NamedPush(CounterMapState({n: counters[n] for n in part}), full),
                max_size,
            )
        case NamedKeys():
            keys = message.keys
            return _halves(
                sorted(keys),
                lambda part: NamedKeys(message.buckets, {b: keys[b] for b in part}),
                max_size,
            )
        case NamedWant():
            return _halves(list(message.hashes), lambda part: NamedWant(tuple(part)), max_size)
        case _:
            raise OversizeMessageError(f"a {message.kind.name} message cannot be split")


def _halves(items: Sequence[Any], make: Any, max_size: int) -> list[bytes]:
    if len(items) <= 1:
        raise OversizeMessageError(f"one item alone does not fit {max_size} bytes")
    middle = len(items) // 2
    parts: list[bytes] = []
    for half in (items[:middle], items[middle:]):
        try:
            parts.append(encode_named(make(half), max_size=max_size))
        except OversizeMessageError:
            parts.extend(_halves(half, make, max_size))
    return parts


# -- decoding -------------------------------------------------------------------------------


def _uint(value: object, what: str) -> int:
    if type(value) is not int or not 0 <= value <= MAX_COUNT:
        raise NamedMessageError(f"{what} must be an unsigned 64-bit integer")
    return value


def _hashes(value: object, what: str) -> tuple[int, ...]:
    if not isinstance(value, bytes) or len(value) % 8:
        raise NamedMessageError(f"{what} must be bytes, 8 per hash")
    return struct.unpack(f">{len(value) // 8}Q", value)


def _text(value: object, what: str, limit: int) -> str:
    if not isinstance(value, str) or not value:
        raise NamedMessageError(f"{what} must be a non-empty string")
    if len(value) > limit // 4 and len(value.encode("utf-8", "surrogatepass")) > limit:
        raise NamedMessageError(f"{what} is longer than {limit} UTF-8 bytes")
    return value


def _counter(name: str, value: object) -> CounterState:
    if not isinstance(value, dict) or not value:
        raise NamedMessageError(f"counter {name!r} must be a non-empty map of replicas")
    inc: dict[str, int] = {}
    dec: dict[str, int] = {}
    for replica, counts in value.items():
        replica = _text(replica, "replica id", MAX_REPLICA_BYTES)
        if not isinstance(counts, list) or len(counts) != 2:
            raise NamedMessageError(f"counts of {replica!r} must be [p, n]")
        p, n = _uint(counts[0], "a count"), _uint(counts[1], "a count")
        if p:
            inc[replica] = p
        if n:
            dec[replica] = n
    return CounterState.from_maps(inc, dec)


def _state(value: object) -> CounterMapState:
    if not isinstance(value, dict) or not value:
        raise NamedMessageError("a push must carry a non-empty map of counters")
    counters: dict[str, CounterState] = {}
    for name, counter in value.items():
        name = _text(name, "counter name", MAX_NAME_BYTES)
        if name == DEFAULT_KEY:
            raise NamedMessageError("the default counter travels in the seed's messages")
        state = _counter(name, counter)
        if not state:
            raise NamedMessageError(f"counter {name!r} counts nothing")
        counters[name] = state
    return CounterMapState(counters)


def _pair(body: object, what: str) -> tuple[Any, Any]:
    if not isinstance(body, list) or len(body) != 2:
        raise NamedMessageError(f"a {what} body must be an array of 2 items")
    return body[0], body[1]


def _decode_body(kind: NamedKind, body: object) -> NamedMessage:
    if kind is NamedKind.NAMED_WANT:
        return NamedWant(_hashes(body, "wanted hashes"))
    first, second = _pair(body, kind.name.lower())
    if kind is NamedKind.NAMED_PUSH:
        if not isinstance(first, bool):
            raise NamedMessageError("a push's full flag must be true or false")
        return NamedPush(_state(second), first)
    buckets = _check_buckets(first, NamedMessageError)
    if kind is NamedKind.NAMED_PULL:
        return NamedPull(buckets, _uint(second, "root digest"))
    if kind is NamedKind.NAMED_BUCKETS:
        digests = _hashes(second, "bucket digests")
        if len(digests) != buckets:
            raise NamedMessageError(f"{len(digests)} bucket digests for {buckets} buckets")
        return NamedBuckets(buckets, digests)
    if not isinstance(second, dict):
        raise NamedMessageError("keys must be a map of bucket -> hashes")
    keys: dict[int, tuple[int, ...]] = {}
    for bucket, hashes in second.items():
        if type(bucket) is not int or not 0 <= bucket < buckets:
            raise NamedMessageError(f"bucket index {bucket!r} is outside 0..{buckets - 1}")
        keys[bucket] = _hashes(hashes, "key hashes")
    return NamedKeys(buckets, keys)


def decode_named(payload: bytes, *, max_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> NamedMessage:
    """The message in ``payload``; :class:`NamedMessageError` for anything malformed."""
    if len(payload) > max_size:
        raise NamedMessageError(f"named message of {len(payload)} bytes exceeds {max_size}")
    if payload[: len(NAMED_MAGIC)] != NAMED_MAGIC:
        raise NamedMessageError("not a named-counter message of version 1")
    if len(payload) < len(NAMED_MAGIC) + 2:
        raise NamedMessageError("named message without kind or body")
    try:
        kind = NamedKind(payload[len(NAMED_MAGIC)])
    except ValueError:
        raise NamedMessageError(f"unknown named message kind {payload[len(NAMED_MAGIC)]}") from None
    try:
        body = msgpack.unpackb(
            payload[len(NAMED_MAGIC) + 1 :],
            raw=False,
            strict_map_key=False,
            max_ext_len=0,
        )
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        # TypeError: a map key msgpack cannot hash (an array or a map).
        raise NamedMessageError(f"body is not msgpack: {exc}") from None
    try:
        return _decode_body(kind, body)
    except TypeError as exc:  # an unhashable key (a map or array used as one)
        raise NamedMessageError(f"malformed body: {exc}") from None

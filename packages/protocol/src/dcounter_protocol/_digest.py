"""The state digest of the seed: xxhash64 over the reference's deterministic serialization.

The reference (``deterministicSerialize``) msgpack-encodes ``[incs, decs]``, where both are
arrays over the sorted union of replica ids of both maps, each element the map
``{"NodeID": id, "Value": uint64}`` with a missing value read as 0. Values are always
``cf`` + 8 bytes. Sorting Python ``str`` by code point equals Go's bytewise sort of UTF-8.

A key present with value 0 changes the digest versus the key being absent, so these functions
take raw mappings and reproduce the reference for any input, zero entries included.
"""

from __future__ import annotations

import struct
from itertools import repeat
from typing import TYPE_CHECKING, Final

import xxhash

from dcounter_protocol._errors import CountOutOfRangeError

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["serialize_state", "state_digest"]

_ENTRY_HEAD: Final = b"\x82\xa6NodeID"
_VALUE_HEAD: Final = b"\xa5Value"
_pack_u64: Final = struct.Struct(">BQ").pack
_pack_u16: Final = struct.Struct(">BH").pack
_pack_u32: Final = struct.Struct(">BI").pack
_pack_u8: Final = struct.Struct(">BB").pack


def _array_header(size: int) -> bytes:
    if size < 16:
        return bytes((0x90 | size,))
    if size < 0x10000:
        return _pack_u16(0xDC, size)
    return _pack_u32(0xDD, size)


def _str(replica: str) -> bytes:
    raw = replica.encode("utf-8")
    size = len(raw)
    if size < 32:
        return bytes((0xA0 | size,)) + raw
    if size < 0x100:
        return _pack_u8(0xD9, size) + raw
    if size < 0x10000:
        return _pack_u16(0xDA, size) + raw
    return _pack_u32(0xDB, size) + raw


class _ElementCache(dict[tuple[str, int], bytes]):
    """Serialized array elements by (replica id, count), built on demand.

    Digests are recomputed after every change, mostly over unchanged entries, so a memo
    pays; the cache is cleared whenever it reaches its bound.
    """

    __slots__ = ()
    _LIMIT: Final = 1 << 14

    def __missing__(self, element: tuple[str, int]) -> bytes:
        replica, count = element
        try:
            value = _pack_u64(0xCF, count)
        except struct.error:
            raise CountOutOfRangeError(f"count {count!r} of {replica!r} is not a uint64") from None
        encoded = b"".join((_ENTRY_HEAD, _str(replica), _VALUE_HEAD, value))
        if len(self) >= self._LIMIT:
            self.clear()
        self[element] = encoded
        return encoded


_elements: Final = _ElementCache()


def serialize_state(increments: Mapping[str, int], decrements: Mapping[str, int]) -> bytes:
    """The reference's ``deterministicSerialize(inc, dec)`` bytes (the digest's input)."""
    ids = sorted(increments.keys() | decrements.keys())
    header = _array_header(len(ids))
    element = _elements.__getitem__
    return b"".join(
        (
            b"\x92",
            header,
            *map(element, zip(ids, map(increments.get, ids, repeat(0)), strict=True)),
            header,
            *map(element, zip(ids, map(decrements.get, ids, repeat(0)), strict=True)),
        )
    )


def state_digest(increments: Mapping[str, int], decrements: Mapping[str, int]) -> int:
    """xxhash64 (seed 0) of :func:`serialize_state`, equal to the reference's digest."""
    return xxhash.xxh64_intdigest(serialize_state(increments, decrements))

"""Bucketed digests of many named counters, kept up to date per change (Merkle-style).

Every node computes the same numbers from the same state::

    bucket(name)       = xxh3_64(UTF-8 name) mod buckets            buckets: a power of two
    key_hash(name, s)  = xxh3_64(u32 len(name) name
                                 (u16 len(replica) replica u64 p u64 n) per replica, sorted)
    digest(bucket)     = XOR of key_hash over the bucket's names     (0 for an empty bucket)
    root               = XOR of every bucket digest

XOR makes each change O(1): the old hash of a name goes out, its new one in, whatever the
number of names. Digests over fewer buckets (any smaller power of two) are folded from these
in O(buckets), so nodes with few names exchange few digests. Two states give the same bucket
digest iff they hold the same counters in that bucket, except with probability about 2**-64
per comparison.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Final

import xxhash

from dcounter_protocol._errors import InvalidOptionError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from dcounter_crdt import CounterMapState, CounterState

__all__ = ["NAMED_BUCKETS", "BucketDigests", "key_bucket", "key_hash"]

#: Buckets a node keeps: 32 KiB of level-1 digests, a few dozen names each at 100,000.
NAMED_BUCKETS: Final = 4096

_NAME: Final = struct.Struct(">I").pack
_ENTRY: Final = struct.Struct(">QQ").pack
_LEN16: Final = struct.Struct(">H").pack
_hash: Final = xxhash.xxh3_64_intdigest


def key_bucket(name: str, buckets: int = NAMED_BUCKETS) -> int:
    """The bucket of counter ``name`` among ``buckets`` (a power of two)."""
    return _hash(name.encode("utf-8")) & (buckets - 1)


def key_hash(name: str, state: CounterState) -> int:
    """The 64-bit hash of one named counter's state (0 only by chance for an empty one)."""
    raw = name.encode("utf-8")
    inc, dec = state.increments, state.decrements
    parts = [_NAME(len(raw)), raw]
    for replica in sorted(inc.keys() | dec.keys()):
        rid = replica.encode("utf-8")
        parts.append(_LEN16(len(rid)))
        parts.append(rid)
        parts.append(_ENTRY(inc.get(replica, 0), dec.get(replica, 0)))
    return _hash(b"".join(parts))


class BucketDigests:
    """Per-bucket digests of a set of named counters, updated one name at a time.

    :meth:`update` costs one hash of that counter's state; reading :attr:`root` and
    :attr:`digests` costs nothing more. Not thread-safe.
    """

    __slots__ = ("_buckets", "_digests", "_keys", "_root")

    def __init__(self, buckets: int = NAMED_BUCKETS) -> None:
        if type(buckets) is not int or buckets < 1 or buckets & (buckets - 1):
            raise InvalidOptionError(f"buckets must be a power of two, got {buckets!r}")
        self._buckets = buckets
        self._digests = [0] * buckets
        self._keys: list[dict[str, int]] = [{} for _ in range(buckets)]
        self._root = 0

    @classmethod
    def of(cls, state: CounterMapState, buckets: int = NAMED_BUCKETS) -> BucketDigests:
        """The digests of every counter in ``state``, computed from scratch."""
        digests = cls(buckets)
        for name, counter in state.counters.items():
            digests.update(name, counter)
        return digests

    @property
    def buckets(self) -> int:
        """How many buckets."""
        return self._buckets

    @property
    def root(self) -> int:
        """XOR of every bucket digest: equal roots mean equal states (w.h.p.)."""
        return self._root

    @property
    def digests(self) -> tuple[int, ...]:
        """Every bucket's digest, by bucket index."""
        return tuple(self._digests)

    def __len__(self) -> int:
        return sum(map(len, self._keys))

    def update(self, name: str, state: CounterState) -> None:
        """Record ``name``'s current state (an empty state removes the name)."""
        bucket = key_bucket(name, self._buckets)
        held = self._keys[bucket]
        old = held.pop(name, 0)
        new = key_hash(name, state) if state else 0
        if state:
            held[name] = new
        change = old ^ new
        self._digests[bucket] ^= change
        self._root ^= change

    def folded(self, buckets: int) -> tuple[int, ...]:
        """The digests over fewer ``buckets`` (a power of two up to :attr:`buckets`).

        A name's bucket among ``buckets`` is its bucket here modulo ``buckets``, so bucket
        ``i`` there is the XOR of the buckets ``j`` here with ``j % buckets == i``: equal to
        ``BucketDigests.of(state, buckets).digests``, in O(:attr:`buckets`).
        """
        self._check_fold(buckets)
        if buckets == self._buckets:
            return tuple(self._digests)
        mask = buckets - 1
        folded = [0] * buckets
        for index, digest in enumerate(self._digests):
            folded[index & mask] ^= digest
        return tuple(folded)

    def bucket_keys(self, bucket: int, buckets: int | None = None) -> dict[str, int]:
        """The names in ``bucket`` (among ``buckets``, default all) with their key hashes."""
        if buckets is None or buckets == self._buckets:
            return dict(self._keys[bucket])
        self._check_fold(buckets)
        held: dict[str, int] = {}
        for index in range(bucket, self._buckets, buckets):
            held.update(self._keys[index])
        return held

    def differing(self, theirs: Sequence[int]) -> list[int]:
        """Indexes of the buckets whose digest differs from ``theirs`` (over len(theirs))."""
        mine = self.folded(len(theirs))
        return [i for i, (a, b) in enumerate(zip(mine, theirs, strict=True)) if a != b]

    def _check_fold(self, buckets: int) -> None:
        if type(buckets) is not int or not 1 <= buckets <= self._buckets or buckets & (buckets - 1):
            raise InvalidOptionError(
                f"can fold into a power of two up to {self._buckets} buckets, not {buckets!r}"
            )

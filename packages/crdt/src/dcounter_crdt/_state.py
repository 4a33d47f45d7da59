"""The immutable state of a PN-counter: per-replica increment and decrement totals."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from dcounter_crdt._errors import CountOverflowError, InvalidReplicaIdError, InvalidStateError

__all__ = ["MAX_COUNT", "CounterState"]

#: The largest per-replica total: the wire format carries each count as a uint64.
MAX_COUNT: Final = 2**64 - 1

_EMPTY_MAP: Final[Mapping[str, int]] = MappingProxyType({})


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class CounterState:
    """An immutable PN-counter state: increment and decrement totals per replica id.

    The form is canonical: a replica whose total is 0 has no entry, so two states that
    count the same compare (and hash) equal. Construction validates its input; use
    :meth:`from_maps` or the constructor with plain mappings.
    """

    increments: Mapping[str, int] = field(default_factory=dict)
    decrements: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # The caller's mappings are copied, so a later change to them cannot reach us.
        _set_increments(self, MappingProxyType(_canonical(self.increments, "increments")))
        _set_decrements(self, MappingProxyType(_canonical(self.decrements, "decrements")))

    @classmethod
    def from_maps(
        cls,
        increments: Mapping[str, int] | None = None,
        decrements: Mapping[str, int] | None = None,
    ) -> CounterState:
        """Validate and build a state; ``None`` stands for an empty map."""
        inc = _EMPTY_MAP if increments is None else increments
        dec = _EMPTY_MAP if decrements is None else decrements
        if cls is CounterState and _plainly_valid(inc) and _plainly_valid(dec):
            # The common case (e.g. every decoded push) validated with builtins in bulk.
            return _trusted(_nonzero(inc), _nonzero(dec))
        return cls(inc, dec)

    @classmethod
    def empty(cls) -> CounterState:
        """The state that counts nothing (the identity of :meth:`merged`)."""
        return _EMPTY_STATE

    @property
    def value(self) -> int:
        """The counter's value: all increments minus all decrements (may be negative)."""
        return sum(self.increments.values()) - sum(self.decrements.values())

    def replicas(self) -> frozenset[str]:
        """The ids of every replica with a non-zero total."""
        return frozenset(self.increments.keys() | self.decrements.keys())

    def contribution(self, replica_id: str) -> int:
        """Increments minus decrements of one replica (0 when it has no entry)."""
        return self.increments.get(replica_id, 0) - self.decrements.get(replica_id, 0)

    def merged(self, other: CounterState) -> CounterState:
        """The pointwise maximum of both states (the least state that includes both)."""
        # States are immutable, so either side can stand for the result when it covers it.
        if not self:
            return other
        inc = _max_into(self.increments, other.increments)
        dec = _max_into(self.decrements, other.decrements)
        if inc is None and dec is None:
            return self
        return _trusted(
            dict(self.increments) if inc is None else inc,
            dict(self.decrements) if dec is None else dec,
        )

    def dominates(self, other: CounterState) -> bool:
        """True when every total of ``other`` is at most this state's total."""
        return _covers(self.increments, other.increments) and _covers(
            self.decrements, other.decrements
        )

    def delta_since(self, other: CounterState) -> CounterState:
        """The entries of this state that ``other`` lacks (is lower on).

        Merging the result into ``other`` gives the same state as merging all of ``self``.
        """
        return _trusted(
            _newer(self.increments, other.increments), _newer(self.decrements, other.decrements)
        )

    def __bool__(self) -> bool:
        return bool(self.increments) or bool(self.decrements)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CounterState):
            return NotImplemented
        return self.increments == other.increments and self.decrements == other.decrements

    def __hash__(self) -> int:
        return hash((frozenset(self.increments.items()), frozenset(self.decrements.items())))

    def __reduce__(self) -> tuple[type[CounterState], tuple[dict[str, int], dict[str, int]]]:
        # Read-only mapping proxies cannot be pickled; rebuild from plain dicts instead.
        return (CounterState, (dict(self.increments), dict(self.decrements)))

    def __repr__(self) -> str:
        # Sorted so that the same state always prints the same way.
        inc = dict(sorted(self.increments.items()))
        dec = dict(sorted(self.decrements.items()))
        return f"CounterState(increments={inc!r}, decrements={dec!r})"


# A frozen dataclass forbids attribute assignment; these slot setters are how the
# constructor canonicalises its fields and how trusted code builds states cheaply.
_set_increments: Final[Callable[[CounterState, Mapping[str, int]], None]] = CounterState.__dict__[
    "increments"
].__set__
_set_decrements: Final[Callable[[CounterState, Mapping[str, int]], None]] = CounterState.__dict__[
    "decrements"
].__set__
_new: Final[Callable[[type[CounterState]], CounterState]] = object.__new__


def _trusted(increments: dict[str, int], decrements: dict[str, int]) -> CounterState:
    """Wrap dicts already known to be canonical and valid, skipping validation.

    The dicts are owned by the new state from here on: callers must not keep them.
    """
    state = _new(CounterState)
    _set_increments(state, MappingProxyType(increments))
    _set_decrements(state, MappingProxyType(decrements))
    return state


def _canonical(counts: Any, field: str) -> dict[str, int]:
    """A validated copy of ``counts`` with its zero entries dropped."""
    if _plainly_valid(counts):
        return _nonzero(counts)
    if not isinstance(counts, Mapping):
        raise InvalidStateError(f"{field} must be a mapping, not {type(counts).__name__}")
    result: dict[str, int] = {}
    for replica_id, count in counts.items():
        replica_id = _check_replica_id(replica_id)
        if isinstance(count, bool) or not isinstance(count, int):
            raise InvalidStateError(
                f"{field}[{replica_id!r}] must be an int, not {type(count).__name__}"
            )
        if count < 0:
            raise InvalidStateError(f"{field}[{replica_id!r}] is negative: {count}")
        if count > MAX_COUNT:
            raise CountOverflowError(
                f"{field}[{replica_id!r}] = {count} exceeds the maximum count {MAX_COUNT}"
            )
        if count:
            # int() turns a subclass (an IntEnum, say) into a plain int, as str() did above.
            result[replica_id] = int(count)
    return result


def _plainly_valid(counts: object) -> bool:
    """True for the common case, checked with builtins in bulk: a dict (or a read-only view
    of one) of non-empty str ids to int counts in 0..MAX_COUNT, no subclasses. Anything else
    takes the per-entry path, which names the problem.
    """
    if type(counts) not in _PLAIN_MAPPINGS:
        return False
    assert isinstance(counts, dict | MappingProxyType)
    if len(counts) < 8:  # a delta: a plain loop beats building sets
        for replica_id, count in counts.items():
            if type(replica_id) is not str or not replica_id or type(count) is not int:
                return False
            if not 0 <= count <= MAX_COUNT:
                return False
        return True
    if not set(map(type, counts)) <= _STR_TYPE or "" in counts:
        return False
    values = counts.values()
    return set(map(type, values)) <= _INT_TYPE and min(values) >= 0 and max(values) <= MAX_COUNT


def _nonzero(counts: Mapping[str, int]) -> dict[str, int]:
    return {replica_id: count for replica_id, count in counts.items() if count}


_PLAIN_MAPPINGS: Final = frozenset((dict, MappingProxyType))
_STR_TYPE: Final = frozenset((str,))
_INT_TYPE: Final = frozenset((int,))


def _check_replica_id(replica_id: object) -> str:
    """``replica_id`` as a plain str if it is a non-empty str, else InvalidReplicaIdError."""
    if not isinstance(replica_id, str):
        raise InvalidReplicaIdError(f"replica id must be a str, not {type(replica_id).__name__}")
    if not replica_id:
        raise InvalidReplicaIdError("replica id must not be empty")
    return str(replica_id)


def _max_into(mine: Mapping[str, int], theirs: Mapping[str, int]) -> dict[str, int] | None:
    """A copy of ``mine`` raised to ``theirs`` pointwise, or None when it would not change."""
    result: dict[str, int] | None = None
    get = mine.get
    for replica_id, count in theirs.items():
        if count > get(replica_id, 0):
            if result is None:
                result = dict(mine)
            result[replica_id] = count
    return result


def _covers(mine: Mapping[str, int], theirs: Mapping[str, int]) -> bool:
    get = mine.get
    return all(count <= get(replica_id, 0) for replica_id, count in theirs.items())


def _newer(mine: Mapping[str, int], theirs: Mapping[str, int]) -> dict[str, int]:
    get = theirs.get
    return {r: count for r, count in mine.items() if count > get(r, 0)}


_EMPTY_STATE: Final = _trusted({}, {})

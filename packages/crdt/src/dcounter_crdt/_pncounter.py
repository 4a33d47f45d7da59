"""The PN-counter: a G-Counter of increments and one of decrements, per replica."""

from __future__ import annotations

from types import MappingProxyType

from dcounter_crdt._errors import CountOverflowError, InvalidStateError
from dcounter_crdt._gcounter import GCounter, _check_amount
from dcounter_crdt._state import (
    _EMPTY_MAP,
    MAX_COUNT,
    CounterState,
    _check_replica_id,
    _new,
    _set_decrements,
    _set_increments,
    _trusted,
)

__all__ = ["PNCounter"]


class PNCounter:
    """A mutable PN-counter replica: a plain value type with no I/O and no locks.

    Every local update returns its *delta*, a :class:`CounterState` holding just the
    entry it changed; merging a delta anywhere has the same effect as merging the whole
    state it came from (a delta-state CRDT). Callers serialize access.
    """

    __slots__ = ("_dec", "_inc", "_n", "_p", "_replica_id", "_value", "_value_stale")

    def __init__(self, replica_id: str, state: CounterState | None = None) -> None:
        self._replica_id = _check_replica_id(replica_id)
        self._p = GCounter()
        self._n = GCounter()
        # The hot paths work on the G-Counters' dicts directly: one attribute hop less.
        self._inc = self._p._counts
        self._dec = self._n._counts
        # Local updates keep the value current; a merge that changes anything marks it
        # stale instead, to be summed once on the next read rather than per merged entry.
        self._value = 0
        self._value_stale = False
        if state is not None:
            self.merge(state)

    @property
    def replica_id(self) -> str:
        """The id this replica counts its own updates under."""
        return self._replica_id

    @property
    def value(self) -> int:
        """All increments minus all decrements, over every replica (may be negative)."""
        if self._value_stale:
            self._value = sum(self._inc.values()) - sum(self._dec.values())
            self._value_stale = False
        return self._value

    def increment(self, by: int = 1) -> CounterState:
        """Add ``by`` (an int >= 1) for this replica and return the delta of the change.

        Raises InvalidAmountError for a bad amount and CountOverflowError when this
        replica's increment total would pass MAX_COUNT; the counter is then unchanged.
        """
        # Hot path: kept to plain dict operations, and the delta built without validation.
        if by.__class__ is not int or by < 1:
            by = _check_amount(by)
        inc = self._inc
        replica_id = self._replica_id
        total = inc.get(replica_id, 0) + by
        if total > MAX_COUNT:
            raise CountOverflowError(
                f"incrementing {replica_id!r} by {by} would exceed the maximum count {MAX_COUNT}"
            )
        inc[replica_id] = total
        self._value += by
        delta = _new(CounterState)
        _set_increments(delta, MappingProxyType({replica_id: total}))
        _set_decrements(delta, _EMPTY_MAP)
        return delta

    def decrement(self, by: int = 1) -> CounterState:
        """Subtract ``by`` (an int >= 1) for this replica and return the delta of the change.

        Raises InvalidAmountError for a bad amount and CountOverflowError when this
        replica's decrement total would pass MAX_COUNT; the counter is then unchanged.
        """
        if by.__class__ is not int or by < 1:
            by = _check_amount(by)
        dec = self._dec
        replica_id = self._replica_id
        total = dec.get(replica_id, 0) + by
        if total > MAX_COUNT:
            raise CountOverflowError(
                f"decrementing {replica_id!r} by {by} would exceed the maximum count {MAX_COUNT}"
            )
        dec[replica_id] = total
        self._value -= by
        delta = _new(CounterState)
        _set_increments(delta, _EMPTY_MAP)
        _set_decrements(delta, MappingProxyType({replica_id: total}))
        return delta

    def contribution(self, replica_id: str | None = None) -> int:
        """Increments minus decrements of one replica (default: this one; 0 if unknown)."""
        if replica_id is None:
            replica_id = self._replica_id
        return self._inc.get(replica_id, 0) - self._dec.get(replica_id, 0)

    def snapshot(self) -> CounterState:
        """An immutable copy of the whole state."""
        return _trusted(dict(self._inc), dict(self._dec))

    def merge(self, other: CounterState) -> bool:
        """Take the pointwise maximum with ``other``; True if anything changed."""
        if not isinstance(other, CounterState):
            raise InvalidStateError(f"can only merge a CounterState, not {type(other).__name__}")
        changed = self._p._merge_trusted(other.increments)
        if self._n._merge_trusted(other.decrements) or changed:
            self._value_stale = True
            return True
        return False

    def merge_delta(self, other: CounterState) -> CounterState:
        """Like :meth:`merge`, but return the entries of ``other`` that won (empty if none).

        The result is what this replica learned: what to persist or pass on.
        """
        if not isinstance(other, CounterState):
            raise InvalidStateError(f"can only merge a CounterState, not {type(other).__name__}")
        won_inc = self._p._merge_trusted_won(other.increments)
        won_dec = self._n._merge_trusted_won(other.decrements)
        if not won_inc and not won_dec:
            return CounterState.empty()
        self._value_stale = True
        return _trusted(won_inc, won_dec)

    def delta_since(self, known: CounterState) -> CounterState:
        """The entries of this replica's state that ``known`` lacks or holds lower.

        Merging the result into ``known`` equals merging the whole state into it.
        """
        get_inc = known.increments.get
        get_dec = known.decrements.get
        return _trusted(
            {r: c for r, c in self._inc.items() if c > get_inc(r, 0)},
            {r: c for r, c in self._dec.items() if c > get_dec(r, 0)},
        )

    def __repr__(self) -> str:
        return (
            f"PNCounter(replica_id={self._replica_id!r}, value={self.value}, "
            f"replicas={len(self._inc.keys() | self._dec.keys())})"
        )

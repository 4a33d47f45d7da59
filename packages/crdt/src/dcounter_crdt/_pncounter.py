"""The PN-counter: a G-Counter of increments and one of decrements, per replica."""

from __future__ import annotations

from types import MappingProxyType

from dcounter_crdt._errors import CountOverflowError, InvalidStateError
from dcounter_crdt._gcounter import _check_amount, _raise_to, _raise_to_won
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

    Two ways to update it locally, which can be mixed freely:

    - :meth:`add` / :meth:`subtract` are the fast path: they return nothing, and the
      change joins the *pending delta*, which :meth:`take_delta` returns (and resets)
      when the caller is ready to persist or gossip it, e.g. once per flush.
    - :meth:`increment` / :meth:`decrement` return the delta of that one update: a
      :class:`CounterState` holding just the entry it changed.

    Merging a delta anywhere has the same effect as merging the whole state it came from
    (a delta-state CRDT). Callers serialize access.
    """

    # This replica's own two totals live in plain int attributes, so that a local update
    # is one addition and one store; the dicts catch up (``_sync``) before anything reads
    # them. ``_base`` is the value without this replica's own contribution.
    __slots__ = (
        "_base",
        "_dec",
        "_inc",
        "_own_dec",
        "_own_inc",
        "_replica_id",
        "_taken_dec",
        "_taken_inc",
        "_value_stale",
    )

    def __init__(self, replica_id: str, state: CounterState | None = None) -> None:
        self._replica_id = _check_replica_id(replica_id)
        self._inc: dict[str, int] = {}
        self._dec: dict[str, int] = {}
        self._own_inc = 0
        self._own_dec = 0
        # The own totals when the pending delta was last taken: it holds what rose since.
        self._taken_inc = 0
        self._taken_dec = 0
        # A merge that changes anything marks the value stale instead of summing at once:
        # summed once on the next read rather than per merged entry.
        self._base = 0
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
            self._sync()
            self._base = (
                sum(self._inc.values()) - sum(self._dec.values()) - (self._own_inc - self._own_dec)
            )
            self._value_stale = False
        return self._base + self._own_inc - self._own_dec

    def add(self, by: int = 1) -> None:
        """Add ``by`` (an int >= 1) for this replica; the change joins the pending delta.

        Raises InvalidAmountError for a bad amount and CountOverflowError when this
        replica's increment total would pass MAX_COUNT; the counter is then unchanged.
        """
        # The hot path: one type check, one addition, one bound check, one store.
        if by.__class__ is not int or by < 1:
            by = _check_amount(by)
        total = self._own_inc + by
        if total > MAX_COUNT:
            raise _overflow("incrementing", self._replica_id, by)
        self._own_inc = total

    def subtract(self, by: int = 1) -> None:
        """Subtract ``by`` (an int >= 1) for this replica; the change joins the pending delta.

        Raises InvalidAmountError for a bad amount and CountOverflowError when this
        replica's decrement total would pass MAX_COUNT; the counter is then unchanged.
        """
        # add() line for line: a helper shared by both would cost the hot path a call.
        if by.__class__ is not int or by < 1:
            by = _check_amount(by)
        total = self._own_dec + by
        if total > MAX_COUNT:
            raise _overflow("decrementing", self._replica_id, by)
        self._own_dec = total

    def increment(self, by: int = 1) -> CounterState:
        """Like :meth:`add`, and return the delta of this one change.

        The change joins the pending delta too, so callers may use either method.
        """
        self.add(by)
        delta = _new(CounterState)
        _set_increments(delta, MappingProxyType({self._replica_id: self._own_inc}))
        _set_decrements(delta, _EMPTY_MAP)
        return delta

    def decrement(self, by: int = 1) -> CounterState:
        """Like :meth:`subtract`, and return the delta of this one change.

        The change joins the pending delta too, so callers may use either method.
        """
        self.subtract(by)
        delta = _new(CounterState)
        _set_increments(delta, _EMPTY_MAP)
        _set_decrements(delta, MappingProxyType({self._replica_id: self._own_dec}))
        return delta

    @property
    def pending_delta(self) -> CounterState:
        """The join of every local update's delta since the last :meth:`take_delta`.

        It holds this replica's own totals that rose since then (empty if none rose), so
        merging it anywhere has the effect of merging each of those deltas. Should a
        merge raise an own total while a local update is pending (a replica restarted
        without its history, and peers knew more), the pending delta carries the higher
        total: still part of this replica's state, so just as safe to merge.
        """
        replica_id = self._replica_id
        own_inc, own_dec = self._own_inc, self._own_dec
        return _trusted(
            {replica_id: own_inc} if own_inc > self._taken_inc else {},
            {replica_id: own_dec} if own_dec > self._taken_dec else {},
        )

    def take_delta(self) -> CounterState:
        """Return :attr:`pending_delta` and start a new one (Akka's ``resetDelta``).

        Take it when the update is about to be persisted or sent, e.g. once per flush;
        a caller with several consumers (a store and a gossip queue) hands the same
        delta to each.
        """
        delta = self.pending_delta
        self._taken_inc = self._own_inc
        self._taken_dec = self._own_dec
        return delta

    def contribution(self, replica_id: str | None = None) -> int:
        """Increments minus decrements of one replica (default: this one; 0 if unknown)."""
        if replica_id is None or replica_id == self._replica_id:
            return self._own_inc - self._own_dec
        return self._inc.get(replica_id, 0) - self._dec.get(replica_id, 0)

    def snapshot(self) -> CounterState:
        """An immutable copy of the whole state."""
        self._sync()
        return _trusted(dict(self._inc), dict(self._dec))

    def merge(self, other: CounterState) -> bool:
        """Take the pointwise maximum with ``other``; True if anything changed."""
        if not isinstance(other, CounterState):
            raise InvalidStateError(f"can only merge a CounterState, not {type(other).__name__}")
        self._sync()
        changed = _raise_to(self._inc, other.increments)
        if _raise_to(self._dec, other.decrements) or changed:
            self._merged()
            return True
        return False

    def merge_delta(self, other: CounterState) -> CounterState:
        """Like :meth:`merge`, but return the entries of ``other`` that won (empty if none).

        The result is what this replica learned: what to persist or pass on.
        """
        if not isinstance(other, CounterState):
            raise InvalidStateError(f"can only merge a CounterState, not {type(other).__name__}")
        self._sync()
        won_inc = _raise_to_won(self._inc, other.increments)
        won_dec = _raise_to_won(self._dec, other.decrements)
        if not won_inc and not won_dec:
            return CounterState.empty()
        self._merged()
        return _trusted(won_inc, won_dec)

    def delta_since(self, known: CounterState) -> CounterState:
        """The entries of this replica's state that ``known`` lacks or holds lower.

        Merging the result into ``known`` equals merging the whole state into it.
        """
        self._sync()
        get_inc = known.increments.get
        get_dec = known.decrements.get
        return _trusted(
            {r: c for r, c in self._inc.items() if c > get_inc(r, 0)},
            {r: c for r, c in self._dec.items() if c > get_dec(r, 0)},
        )

    def _sync(self) -> None:
        """Bring this replica's own entries in the dicts up to its own totals."""
        if self._own_inc:
            self._inc[self._replica_id] = self._own_inc
        if self._own_dec:
            self._dec[self._replica_id] = self._own_dec

    def _merged(self) -> None:
        """After a merge changed the (synced) dicts: reload the own totals, value stale."""
        self._value_stale = True
        replica_id = self._replica_id
        own_inc = self._inc.get(replica_id, 0)
        own_dec = self._dec.get(replica_id, 0)
        # An own total raised by a merge is state learned, not a local update: it only
        # joins the pending delta when a local update on that side is pending anyway.
        if self._taken_inc == self._own_inc:
            self._taken_inc = own_inc
        if self._taken_dec == self._own_dec:
            self._taken_dec = own_dec
        self._own_inc = own_inc
        self._own_dec = own_dec

    def __repr__(self) -> str:
        self._sync()
        return (
            f"PNCounter(replica_id={self._replica_id!r}, value={self.value}, "
            f"replicas={len(self._inc.keys() | self._dec.keys())})"
        )


def _overflow(verb: str, replica_id: str, by: int) -> CountOverflowError:
    return CountOverflowError(
        f"{verb} {replica_id!r} by {by} would exceed the maximum count {MAX_COUNT}"
    )

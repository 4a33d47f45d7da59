"""A map of PN-counters keyed by name (Akka's ``PNCounterMap``), with limits on its keys."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, TypeVar

from dcounter_crdt._errors import (
    InvalidAmountError,
    InvalidLimitError,
    InvalidStateError,
    KeyTooLongError,
    TooManyKeysError,
)
from dcounter_crdt._map_state import (
    _EMPTY_COUNTER,
    DEFAULT_KEY,
    CounterMapState,
    _check_key,
    _trusted_map,
)
from dcounter_crdt._pncounter import PNCounter
from dcounter_crdt._state import CounterState, _check_replica_id

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["DEFAULT_MAX_KEYS", "DEFAULT_MAX_KEY_LENGTH", "PNCounterMap"]

#: How many counter names a map holds unless told otherwise.
DEFAULT_MAX_KEYS: Final = 1_000_000
#: The longest counter name (in UTF-8 bytes) a map accepts unless told otherwise.
DEFAULT_MAX_KEY_LENGTH: Final = 256

_T = TypeVar("_T")


class PNCounterMap:
    """A mutable map of PN-counter replicas, one per counter name; no I/O, no locks.

    Each name's counter behaves as a :class:`PNCounter` of this replica; the map's
    states, deltas and merges are :class:`CounterMapState` values holding one
    :class:`CounterState` per name that changed, so a delta stays per key. A name exists
    once anything was counted under it; a CRDT counter cannot be removed. The single
    counter of a one-counter node is the name :data:`DEFAULT_KEY` (``"default"``).

    ``max_keys`` and ``max_key_length`` (UTF-8 bytes) bound what the map holds: a write
    or a merge that would pass them raises a :class:`KeyLimitError` and changes nothing.
    Callers serialize access.
    """

    __slots__ = ("_counters", "_max_key_length", "_max_keys", "_pending", "_replica_id")

    def __init__(
        self,
        replica_id: str,
        state: CounterMapState | None = None,
        *,
        max_keys: int = DEFAULT_MAX_KEYS,
        max_key_length: int = DEFAULT_MAX_KEY_LENGTH,
    ) -> None:
        self._replica_id = _check_replica_id(replica_id)
        self._max_keys = _check_limit("max_keys", max_keys)
        self._max_key_length = _check_limit("max_key_length", max_key_length)
        self._counters: dict[str, PNCounter] = {}
        # The names updated locally since the last take_delta(): only their counters can
        # hold a pending delta.
        self._pending: set[str] = set()
        if state is not None:
            self.merge(state)

    @property
    def replica_id(self) -> str:
        """The id this replica counts its own updates under, in every counter."""
        return self._replica_id

    @property
    def max_keys(self) -> int:
        """The most counter names this map holds."""
        return self._max_keys

    @property
    def max_key_length(self) -> int:
        """The longest counter name this map accepts, in UTF-8 bytes."""
        return self._max_key_length

    def __len__(self) -> int:
        return len(self._counters)

    def __contains__(self, key: object) -> bool:
        return key in self._counters if isinstance(key, str) else False

    def keys(self) -> list[str]:
        """Every counter name, sorted."""
        return sorted(self._counters)

    def value(self, key: str = DEFAULT_KEY) -> int:
        """One counter's value (0 for a name nothing was counted under)."""
        # The lookup inlined for a str key: this is read once per write by the front ends.
        counter = self._counters.get(key) if key.__class__ is str else self._lookup(key)
        return 0 if counter is None else counter.value

    def values(self) -> dict[str, int]:
        """Every counter's value by name."""
        return {key: counter.value for key, counter in self._counters.items()}

    def contribution(self, key: str = DEFAULT_KEY, replica_id: str | None = None) -> int:
        """One replica's increments minus decrements in one counter (default: this one)."""
        counter = self._lookup(key)
        return 0 if counter is None else counter.contribution(replica_id)

    def counter_state(self, key: str = DEFAULT_KEY) -> CounterState:
        """One counter's whole state (empty for an unknown name)."""
        counter = self._lookup(key)
        return _EMPTY_COUNTER if counter is None else counter.snapshot()

    def add(self, key: str, by: int = 1) -> int:
        """Add ``by`` (an int >= 1) to counter ``key``; return the counter's new value.

        The change joins the pending delta. Raises InvalidKeyError, KeyTooLongError or
        TooManyKeysError for a name the map cannot take, InvalidAmountError or
        CountOverflowError as PNCounter.add does; the map is then unchanged.
        """
        counter = self._counters.get(key) if key.__class__ is str else None
        if counter is None:
            key, _ = self._update(key, PNCounter.add, by)
            return self._counters[key].value
        # The common case, a name the map holds, without _update's generality.
        counter.add(by)
        self._pending.add(key)
        return counter.value

    def subtract(self, key: str, by: int = 1) -> int:
        """Subtract ``by`` (an int >= 1) from counter ``key``; return its new value.

        The change joins the pending delta; errors as :meth:`add`.
        """
        counter = self._counters.get(key) if key.__class__ is str else None
        if counter is None:
            key, _ = self._update(key, PNCounter.subtract, by)
            return self._counters[key].value
        counter.subtract(by)
        self._pending.add(key)
        return counter.value

    def add_within(self, key: str, delta: int, low: int, high: int) -> int | None:
        """Add ``delta`` (an int; below 0 it subtracts) to counter ``key`` unless its value
        would leave ``low..high``: the new value, or None with the map unchanged.

        For callers whose values must stay in a fixed range (Redis's signed 64 bits), in one
        lookup. ``delta`` 0 changes nothing and returns the value. Errors as :meth:`add`.
        """
        if delta.__class__ is not int:
            raise InvalidAmountError(f"amount must be an int, not {type(delta).__name__}")
        counter = self._counters.get(key) if key.__class__ is str else self._lookup(key)
        value = delta if counter is None else counter.value + delta
        if not low <= value <= high:
            return None
        if counter is None:  # a new name: added (or refused) with add()'s checks
            if delta > 0:
                return self.add(key, delta)
            return self.subtract(key, -delta) if delta else value
        if delta > 0:
            counter.add(delta)
        elif delta:
            counter.subtract(-delta)
        else:
            return value
        self._pending.add(key)
        return value

    def increment(self, key: str, by: int = 1) -> CounterMapState:
        """Like :meth:`add`, and return the delta of this one change (it joins the pending one)."""
        key, delta = self._update(key, PNCounter.increment, by)
        return _trusted_map({key: delta})

    def decrement(self, key: str, by: int = 1) -> CounterMapState:
        """Like :meth:`subtract`, and return the delta of this one change."""
        key, delta = self._update(key, PNCounter.decrement, by)
        return _trusted_map({key: delta})

    @property
    def pending_delta(self) -> CounterMapState:
        """Per name, the join of every local update's delta since the last :meth:`take_delta`."""
        counters = self._counters
        deltas = {key: counters[key].pending_delta for key in self._pending}
        return _trusted_map({key: delta for key, delta in deltas.items() if delta})

    def take_delta(self) -> CounterMapState:
        """Return :attr:`pending_delta` and start a new one, as :meth:`PNCounter.take_delta`."""
        counters = self._counters
        deltas = {key: counters[key].take_delta() for key in self._pending}
        self._pending.clear()
        return _trusted_map({key: delta for key, delta in deltas.items() if delta})

    def snapshot(self) -> CounterMapState:
        """An immutable copy of every counter's state."""
        # Every held counter counts something: names are only added with a change.
        return _trusted_map({key: counter.snapshot() for key, counter in self._counters.items()})

    def merge(self, other: CounterMapState) -> bool:
        """Merge each of ``other``'s counters into this map's; True if anything changed.

        Raises KeyTooLongError or TooManyKeysError, changing nothing, when ``other``
        brings names past this map's limits.
        """
        self._admit_all(other)
        counters = self._counters
        changed = False
        for key, state in other.counters.items():
            counter = counters.get(key)
            if counter is None:
                counters[key] = PNCounter(self._replica_id, state)
                changed = True
            elif counter.merge(state):
                changed = True
        return changed

    def merge_delta(self, other: CounterMapState) -> CounterMapState:
        """Like :meth:`merge`, but return, per name, the entries of ``other`` that won."""
        self._admit_all(other)
        counters = self._counters
        won: dict[str, CounterState] = {}
        for key, state in other.counters.items():
            counter = counters.get(key)
            if counter is None:
                counters[key] = PNCounter(self._replica_id, state)
                won[key] = state
            else:
                delta = counter.merge_delta(state)
                if delta:
                    won[key] = delta
        return _trusted_map(won)

    def delta_since(self, known: CounterMapState) -> CounterMapState:
        """Per name, the entries of this map that ``known`` lacks or holds lower.

        Merging the result into ``known`` equals merging the whole map into it.
        """
        get = known.counters.get
        result: dict[str, CounterState] = {}
        for key, counter in self._counters.items():
            theirs = get(key)
            delta = counter.snapshot() if theirs is None else counter.delta_since(theirs)
            if delta:
                result[key] = delta
        return _trusted_map(result)

    def _lookup(self, key: str) -> PNCounter | None:
        if key.__class__ is not str:
            key = _check_key(key)
        return self._counters.get(key)

    def _update(self, key: str, update: Callable[[PNCounter, int], _T], by: int) -> tuple[str, _T]:
        """Apply ``update`` to counter ``key``, creating it (within the limits) if new.

        A new counter joins the map only once ``update`` succeeded, so a refused amount
        leaves no empty counter behind.
        """
        counter = self._counters.get(key) if key.__class__ is str else None
        new = False
        if counter is None:
            key = _check_key(key)
            counter = self._counters.get(key)
            if counter is None:
                new = True
                self._admit_key(key)
                if len(self._counters) >= self._max_keys:
                    raise TooManyKeysError(
                        f"counter {key!r} would be this map's key number "
                        f"{len(self._counters) + 1}, past max_keys={self._max_keys}"
                    )
                counter = PNCounter(self._replica_id)
        result = update(counter, by)
        if new:
            self._counters[key] = counter
        self._pending.add(key)
        return key, result

    def _admit_key(self, key: str) -> None:
        """Raise KeyTooLongError unless ``key`` (already a valid name) fits max_key_length."""
        # A character takes 1 to 4 bytes in UTF-8: only a long name needs encoding.
        limit = self._max_key_length
        if len(key) * 4 > limit and (size := len(key.encode())) > limit:
            shown = key if len(key) <= 40 else key[:40] + "..."
            raise KeyTooLongError(
                f"counter name {shown!r} is {size} UTF-8 bytes, past max_key_length={limit}"
            )

    def _admit_all(self, other: CounterMapState) -> None:
        """Raise, before anything changes, if merging ``other`` would pass a key limit."""
        if not isinstance(other, CounterMapState):
            raise InvalidStateError(f"can only merge a CounterMapState, not {type(other).__name__}")
        counters = self._counters
        new_keys = [key for key in other.counters if key not in counters]
        for key in new_keys:
            self._admit_key(key)
        if len(counters) + len(new_keys) > self._max_keys:
            raise TooManyKeysError(
                f"merging {len(new_keys)} new counter names into {len(counters)} would pass "
                f"max_keys={self._max_keys}"
            )

    def __repr__(self) -> str:
        return f"PNCounterMap(replica_id={self._replica_id!r}, keys={len(self._counters)})"


def _check_limit(name: str, limit: object) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidLimitError(f"{name} must be an int >= 1, not {limit!r}")
    return int(limit)

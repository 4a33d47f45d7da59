"""The immutable state of a map of PN-counters: a :class:`CounterState` per counter name."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from dcounter_crdt._errors import InvalidKeyError, InvalidStateError
from dcounter_crdt._state import CounterState

__all__ = ["DEFAULT_KEY", "CounterMapState"]

#: The name under which a map holds what a single-counter node calls *the* counter.
DEFAULT_KEY: Final = "default"

_EMPTY_COUNTER: Final = CounterState.empty()


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class CounterMapState:
    """An immutable snapshot of a map of PN-counters: counter name -> :class:`CounterState`.

    The form is canonical: a name whose state is empty has no entry, so two maps that
    count the same compare (and hash) equal. Names are non-empty strings that UTF-8 can
    encode. Construction validates its input.
    """

    counters: Mapping[str, CounterState] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # The caller's mapping is copied, so a later change to it cannot reach us.
        _set_counters(self, MappingProxyType(_canonical(self.counters)))

    @classmethod
    def empty(cls) -> CounterMapState:
        """The map that counts nothing (the identity of :meth:`merged`)."""
        return _EMPTY_MAP_STATE

    def get(self, key: str) -> CounterState:
        """One counter's state (empty when the map has no such name)."""
        return self.counters.get(key, _EMPTY_COUNTER)

    def value(self, key: str = DEFAULT_KEY) -> int:
        """One counter's value (0 when the map has no such name)."""
        return self.get(key).value

    def merged(self, other: CounterMapState) -> CounterMapState:
        """Each counter merged with ``other``'s of the same name (the least upper bound)."""
        # States are immutable, so either side can stand for the result when it covers it.
        if not self:
            return other
        result: dict[str, CounterState] | None = None
        mine = self.counters
        for key, theirs in other.counters.items():
            own = mine.get(key)
            both = theirs if own is None else own.merged(theirs)
            if both is not own:
                if result is None:
                    result = dict(mine)
                result[key] = both
        return self if result is None else _trusted_map(result)

    def dominates(self, other: CounterMapState) -> bool:
        """True when each of ``other``'s counters is dominated by this map's counter."""
        get = self.counters.get
        return all(get(key, _EMPTY_COUNTER).dominates(s) for key, s in other.counters.items())

    def delta_since(self, other: CounterMapState) -> CounterMapState:
        """Per name, the entries of this map that ``other`` lacks (is lower on).

        Merging the result into ``other`` gives the same map as merging all of ``self``.
        """
        get = other.counters.get
        result: dict[str, CounterState] = {}
        for key, state in self.counters.items():
            theirs = get(key)
            delta = state if theirs is None else state.delta_since(theirs)
            if delta:
                result[key] = delta
        return _trusted_map(result)

    def __len__(self) -> int:
        return len(self.counters)

    def __bool__(self) -> bool:
        return bool(self.counters)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CounterMapState):
            return NotImplemented
        return self.counters == other.counters

    def __hash__(self) -> int:
        return hash(frozenset(self.counters.items()))

    def __reduce__(self) -> tuple[type[CounterMapState], tuple[dict[str, CounterState]]]:
        # Read-only mapping proxies cannot be pickled; rebuild from a plain dict instead.
        return (CounterMapState, (dict(self.counters),))

    def __repr__(self) -> str:
        return f"CounterMapState({dict(sorted(self.counters.items()))!r})"


# As for CounterState: the frozen slot's setter is how the constructor canonicalises its
# field and how trusted code builds states cheaply.
_set_counters: Final[Callable[[CounterMapState, Mapping[str, CounterState]], None]] = (
    CounterMapState.__dict__["counters"].__set__
)


def _trusted_map(counters: dict[str, CounterState]) -> CounterMapState:
    """Wrap a dict already known to be canonical (no empty states, valid names).

    The dict is owned by the new state from here on: callers must not keep it.
    """
    state: CounterMapState = object.__new__(CounterMapState)
    _set_counters(state, MappingProxyType(counters))
    return state


def _canonical(counters: Any) -> dict[str, CounterState]:
    """A validated copy of ``counters`` with its empty states dropped."""
    if not isinstance(counters, Mapping):
        raise InvalidStateError(f"counters must be a mapping, not {type(counters).__name__}")
    result: dict[str, CounterState] = {}
    for key, state in counters.items():
        key = _check_key(key)
        if not isinstance(state, CounterState):
            raise InvalidStateError(
                f"counters[{key!r}] must be a CounterState, not {type(state).__name__}"
            )
        if state:
            result[key] = state
    return result


def _check_key(key: object) -> str:
    """``key`` as a plain str if it is a non-empty str UTF-8 can encode, else InvalidKeyError."""
    if not isinstance(key, str):
        raise InvalidKeyError(f"counter name must be a str, not {type(key).__name__}")
    if not key:
        raise InvalidKeyError("counter name must not be empty")
    if not key.isascii():
        try:
            key.encode()
        except UnicodeEncodeError:
            raise InvalidKeyError(f"counter name {key!r} is not valid UTF-8 text") from None
    return str(key)


_EMPTY_MAP_STATE: Final = _trusted_map({})

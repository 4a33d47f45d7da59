"""A node's counters by name: the default counter and the named ones (issue 20).

:class:`Counters` is what the HTTP API, the Redis front end and programs use to count
under a name. The name :data:`~dcounter_crdt.DEFAULT_KEY` (``"default"``) is the node's
own single counter (:meth:`Node.increment`, the seed's wire); every other name lives in a
:class:`~dcounter_crdt.PNCounterMap` that only dcounter nodes exchange.

It holds no sockets and no tasks: the node drives it. Local writes accumulate in the
map's pending delta until the node calls :meth:`Counters.stage_local` (before a commit and
before any send), which hands them once to the two sinks the node connects: ``persist``
(the store) and ``push`` (named-counter gossip). What peers sent goes through
:meth:`Counters.merge_remote`, whose winning entries go to ``persist``.
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING, Final

from dcounter_crdt import DEFAULT_KEY, CounterMapState, CounterState, KeyLimitError, PNCounterMap
from dcounter_node._pruning_named import adopt_map
from dcounter_node._watch import ValueWatch, Watchers

if TYPE_CHECKING:
    from collections.abc import Callable

    from dcounter_node._node import Node
    from dcounter_node._pruning import Tombstones

__all__ = ["DEFAULT_PAGE", "Counters"]

#: Names listed per call unless the caller asks for another limit.
DEFAULT_PAGE: Final = 100


class Counters:
    """Every counter of one node, by name; :data:`~dcounter_crdt.DEFAULT_KEY` is the node's.

    Get it as :attr:`Node.counters`. Writes raise the node's errors
    (:class:`NodeNotStartedError`, :class:`NodeClosedError`), the CRDT's for a bad amount
    (:class:`~dcounter_crdt.InvalidAmountError`, :class:`~dcounter_crdt.CountOverflowError`)
    and for a bad or excess name (:class:`~dcounter_crdt.InvalidKeyError`,
    :class:`~dcounter_crdt.KeyTooLongError`, :class:`~dcounter_crdt.TooManyKeysError`,
    within the node's ``max_keys`` and ``max_key_length``). A write is durable once
    :meth:`Node.commit` returns, as for the default counter.
    """

    __slots__ = (
        "__weakref__",
        "_local",
        "_map",
        "_node",
        "_on_local",
        "_open",
        "_sorted",
        "_watches",
        "persist",
        "push",
    )

    def __init__(self, node: Node, on_local: Callable[[], None]) -> None:
        self._node = node
        # Told after every local write to a named counter (the node wakes its flush).
        self._on_local = on_local
        self._map: PNCounterMap | None = None
        # The map while the node takes writes (from its binding until it starts closing):
        # one attribute to test per write instead of asking the node.
        self._open: PNCounterMap | None = None
        # All names but the default, sorted, rebuilt lazily after new names arrive.
        self._sorted: list[str] | None = []
        self._watches: dict[str, Watchers] = {}
        # Whether local writes wait for stage_local(): a bool to test on every send.
        self._local = False
        #: Set by the node: takes every change to persist (local ones once staged, and the
        #: entries a merge changed), in the order they happened.
        self.persist: Callable[[CounterMapState], None] | None = None
        #: Set by the node: takes the local changes to push to peers.
        self.push: Callable[[CounterMapState], None] | None = None

    def _bind(self, replica_id: str, state: CounterMapState | None = None) -> None:
        """Called by the node once its replica id is known (at start)."""
        config = self._node.config
        self._map = PNCounterMap(
            replica_id,
            state,
            max_keys=config.max_keys,
            max_key_length=config.max_key_length,
        )
        self._sorted = None
        self._open = self._map

    def _apply_tombstones(
        self, tombstones: Tombstones, own_id: str, replica_id: str
    ) -> tuple[set[str], int]:
        """Apply the pruning records to the named counters (see "Pruning"), for the owner
        of ``own_id`` that counts under ``replica_id`` from now on (what the default
        counter's records gave it); the names that changed and the entries removed.

        Values do not change; the entries that rose go to ``persist``.
        """
        counters = self._map
        if counters is None:
            return set(), 0
        self.stage_local()  # local writes leave under the id they were made under
        before = counters.snapshot()
        after = adopt_map(tombstones, own_id, before)
        if replica_id == counters.replica_id and after == before:
            return set(), 0
        names = {
            name
            for name in before.counters.keys() | after.counters.keys()
            if before.get(name) != after.get(name)
        }
        removed = sum(len(before.get(n).replicas() - after.get(n).replicas()) for n in names)
        config = self._node.config
        try:
            rebased = PNCounterMap(
                replica_id, after, max_keys=config.max_keys, max_key_length=config.max_key_length
            )
        except KeyLimitError:
            # A record raised survivors in names beyond the limits (they bound what peers
            # push, not what a record moves): the counts are kept, the limits widened.
            longest = max(len(name.encode("utf-8", "surrogatepass")) for name in after.counters)
            rebased = PNCounterMap(
                replica_id,
                after,
                max_keys=max(config.max_keys, len(after)),
                max_key_length=max(config.max_key_length, longest),
            )
        self._map = rebased
        if self._open is not None:
            self._open = rebased
        self._sorted = None
        rose = after.delta_since(before)
        if rose and self.persist is not None:
            self.persist(rose)
        return names, removed

    def _closing(self) -> None:
        """Called by the node as it starts closing: writes are refused from now on."""
        self._open = None

    # -- reading ----------------------------------------------------------------------------

    def value(self, name: str = DEFAULT_KEY) -> int:
        """The counter's value as this replica sees it (0 for a name never counted)."""
        if name == DEFAULT_KEY:
            return self._node.value
        counters = self._map
        return 0 if counters is None else counters.value(name)

    def state(self, name: str = DEFAULT_KEY) -> CounterState:
        """One counter's per-replica state (empty for a name never counted)."""
        if name == DEFAULT_KEY:
            return self._node.state()
        if self._map is None or name not in self._map:
            return CounterState.empty()
        return self._map.counter_state(name)

    def __contains__(self, name: object) -> bool:
        """Whether anything was ever counted under ``name`` (by any replica)."""
        if name == DEFAULT_KEY:
            return bool(self._node.state())
        return self._map is not None and name in self._map

    def __len__(self) -> int:
        """How many names hold counts, the default counter included once it does."""
        named = 0 if self._map is None else len(self._map)
        return named + (1 if DEFAULT_KEY in self else 0)

    def names(
        self, prefix: str = "", *, after: str | None = None, limit: int = DEFAULT_PAGE
    ) -> list[str]:
        """Up to ``limit`` names starting with ``prefix``, sorted, each after ``after``.

        Pass the last name of one page as ``after`` to get the next page.
        """
        if limit < 1:
            return []
        names = self._sorted_names()
        start = bisect.bisect_left(names, prefix)
        if after is not None and after >= prefix:
            start = max(start, bisect.bisect_right(names, after))
        page: list[str] = []
        for name in names[start:]:
            if not name.startswith(prefix) or len(page) >= limit:
                break
            page.append(name)
        return page

    def items(
        self, prefix: str = "", *, after: str | None = None, limit: int = DEFAULT_PAGE
    ) -> list[tuple[str, int]]:
        """Like :meth:`names`, with each counter's value."""
        return [(name, self.value(name)) for name in self.names(prefix, after=after, limit=limit)]

    def _sorted_names(self) -> list[str]:
        names = self._sorted
        if names is None:
            held = [] if self._map is None else self._map.keys()
            if DEFAULT_KEY in self:
                held.append(DEFAULT_KEY)
            names = self._sorted = sorted(held)
        elif DEFAULT_KEY not in names and DEFAULT_KEY in self:
            bisect.insort(names, DEFAULT_KEY)
        return names

    # -- writing ----------------------------------------------------------------------------

    def increment(self, name: str, by: int = 1) -> int:
        """Add ``by`` (an int >= 1) to counter ``name``; return its new value."""
        if name == DEFAULT_KEY:
            return self._node.increment(by)
        counters = self._writable()
        if self._sorted is None:  # nothing to keep sorted: whether the name is new is moot
            return self._counted(name, counters.add(name, by))
        held = len(counters)
        return self._counted(name, counters.add(name, by), len(counters) != held)

    def decrement(self, name: str, by: int = 1) -> int:
        """Subtract ``by`` (an int >= 1) from counter ``name``; return its new value."""
        if name == DEFAULT_KEY:
            return self._node.decrement(by)
        counters = self._writable()
        if self._sorted is None:
            return self._counted(name, counters.subtract(name, by))
        held = len(counters)
        return self._counted(name, counters.subtract(name, by), len(counters) != held)

    def add_within(self, name: str, delta: int, low: int, high: int) -> int | None:
        """Add ``delta`` (an int, below 0 to subtract) to counter ``name`` unless its value
        would leave ``low..high``: the new value, or None with nothing counted.

        For front ends whose clients hold values in a fixed range (Redis's signed 64 bits),
        in one call: the Redis front end's INCR path. ``delta`` 0 counts nothing and
        returns the value. Raises as :meth:`increment` and :meth:`decrement` do.
        """
        if name == DEFAULT_KEY:
            node = self._node
            if not low <= node.value + delta <= high:
                return None
            if delta > 0:
                return node.increment(delta)
            return node.decrement(-delta) if delta else node.value
        counters = self._open
        if counters is None:
            counters = self._writable()  # raises
        held = len(counters) if self._sorted is not None else -1
        value = counters.add_within(name, delta, low, high)
        if value is None or not delta:
            return value
        if held >= 0 and len(counters) != held:  # a new name: the sorted names are stale
            self._sorted = None
        if not self._local:  # as _counted(), inline on this path
            self._local = True
            self._on_local()
        if name in self._watches:
            self._publish(name, value)
        return value

    def watch(self, name: str = DEFAULT_KEY, *, initial: bool = True) -> ValueWatch:
        """Iterate over counter ``name``'s value as it changes (see :meth:`Node.watch`)."""
        if name == DEFAULT_KEY:
            return self._node.watch(initial=initial)
        if self._node.closed:
            return Watchers().new(None, closed=True)
        watchers = self._watches.get(name)
        if not watchers:  # a name whose watches were all dropped gets a fresh registry
            watchers = self._watches[name] = Watchers()
        return watchers.new(self.value(name) if initial else None)

    def _writable(self) -> PNCounterMap:
        counters = self._open
        if counters is None:
            self._node._writable()  # raises outside the node's lifetime
            raise AssertionError("counters used before the node bound them")  # pragma: no cover
        return counters

    def _counted(self, name: str, value: int, new: bool = False) -> int:
        """After a local write of ``value`` to ``name`` (``new``: a name not held before)."""
        if new:
            self._sorted = None
        # The node is told once per staging: whatever disarms its flush or spares a sync
        # round stages the local writes first (``stage_local``, which clears ``_local``), so
        # while ``_local`` holds, the first write's wake-up still stands.
        if not self._local:
            self._local = True
            self._on_local()
        if name in self._watches:
            self._publish(name, value)
        return value

    # -- what the node moves -----------------------------------------------------------------

    def snapshot(self) -> CounterMapState:
        """Every named counter's state (the default counter is not in it)."""
        return CounterMapState.empty() if self._map is None else self._map.snapshot()

    @property
    def has_local(self) -> bool:
        """Whether local writes are waiting for :meth:`stage_local`."""
        return self._local

    def stage_local(self) -> CounterMapState:
        """Hand the local changes since the last call to ``persist``, then ``push``.

        Returns them (empty when there were none).
        """
        if not self._local or self._map is None:
            return CounterMapState.empty()
        self._local = False
        changes = self._map.take_delta()
        if changes:
            if self.persist is not None:
                self.persist(changes)
            if self.push is not None:
                self.push(changes)
        return changes

    def merge_remote(self, state: CounterMapState) -> CounterMapState:
        """Merge what a peer sent; return, per name, the entries that changed anything.

        Raises :class:`~dcounter_crdt.KeyLimitError`, changing nothing, when ``state``
        would pass the node's key limits.
        """
        counters = self._map
        if counters is None:  # pragma: no cover - bound before the node runs
            raise AssertionError("counters used before the node bound them")
        before = len(counters)
        won = counters.merge_delta(state)
        if len(counters) != before:
            self._sorted = None
        if won and self.persist is not None:
            self.persist(won)
        for name in won.counters:
            if name in self._watches:
                self._publish(name, counters.value(name))
        return won

    def _publish(self, name: str, value: int) -> None:
        watchers = self._watches[name]
        if watchers:
            watchers.publish(value)
        else:  # every watch of it was dropped: forget the name
            del self._watches[name]

    def _end_watches(self) -> None:
        """Called by the node as it closes: every named watch ends."""
        for watchers in self._watches.values():
            watchers.end()
        self._watches.clear()

"""Pruning of the named counters' entries, as pure code (see "Pruning" in the node README).

A record's named part (:attr:`PruneRecord.named`) lists, per counter name, the victims'
``(p, n)`` in that name at the collapse; a victim a name does not list is tombstoned there
at ``(0, 0)``. Each name's state then follows the default counter's rules
(:class:`~dcounter_node._pruning.Tombstones`): the victims' entries are dropped and the
survivor's raised to their sum in one step, merges never bring a victim back nor admit a
successor whose record is unknown, and the owner of a victim moves its counts above the
record's to the successor. A record without a named part (an older node made it, or a
member could not learn one) leaves the victims' named entries counted as they are.

:class:`NamedSpeakers` decides whether a record may carry a named part: only while every
member applies them (a member that does not would count the victims' named entries and the
raised survivor both). No asyncio, no sockets, no files.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Final

from dcounter_crdt import MAX_COUNT, CounterMapState, CounterState
from dcounter_node._pruning import successor

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping

    from dcounter_node._pruning import PruneRecord, Tombstones

__all__ = ["MAX_NAMED_ENTRIES", "admit_map", "adopt_map", "apply_map", "with_named_part"]

#: Most (name, victim) entries in one record's named part: a collapse whose victims hold
#: more is made without one (their named entries stay, exactly counted), which bounds a
#: record's bytes (each entry is at most a name, an id and two counts: about 530 KB).
MAX_NAMED_ENTRIES: Final = 1024

_EMPTY: Final = CounterState.empty()


def with_named_part(
    record: PruneRecord, counters: CounterMapState, *, limit: int = MAX_NAMED_ENTRIES
) -> PruneRecord:
    """``record`` with the named part this node's ``counters`` give its victims.

    Unchanged (no named part) when the victims hold more than ``limit`` named entries.
    """
    victims = record.victims.keys()
    named: dict[str, dict[str, tuple[int, int]]] = {}
    entries = 0
    for name, state in counters.counters.items():
        inc, dec = state.increments, state.decrements
        held = victims & (inc.keys() | dec.keys())
        if not held:
            continue
        entries += len(held)
        if entries > limit:
            return record
        named[name] = {v: (inc.get(v, 0), dec.get(v, 0)) for v in sorted(held)}
    return dataclasses.replace(record, named=named)


def admit_map(tombstones: Tombstones, state: CounterMapState) -> CounterMapState:
    """``state`` (named counters a peer sent) without the entries the records refuse."""
    counters: dict[str, CounterState] = {}
    changed = False
    for name, counter in state.counters.items():
        kept = tombstones.admit(counter, named=True)
        changed = changed or kept is not counter
        if kept:
            counters[name] = kept
    return CounterMapState(counters) if changed else state


def apply_map(tombstones: Tombstones, state: CounterMapState) -> CounterMapState:
    """``state`` with every known named part applied: victims dropped, survivors raised."""
    result = admit_map(tombstones, state)
    raised: dict[str, CounterState] = {}
    for record in tombstones.records():
        # A survivor whose named entries a later record tombstoned is in that one's sum.
        if record.named is None or tombstones.named_record(record.survivor) is not None:
            continue
        for name, amounts in record.named.items():
            initial = _initial(record.survivor, amounts)
            raised[name] = raised.get(name, _EMPTY).merged(initial)
    if not raised:
        return result
    return result.merged(CounterMapState(raised))


def adopt_map(tombstones: Tombstones, own_id: str, state: CounterMapState) -> CounterMapState:
    """The named counters to hold (every named part applied) for the owner of ``own_id``
    (and of the ids :meth:`Tombstones.claim` remembers), whose own entries are complete.

    As :meth:`Tombstones.adopt`, per name: an own id ``x`` that a record with a named part
    tombstoned moves its counts above the record's amounts in that name to ``x'``, as
    ``x' = max(x', excess)`` (idempotent: the owner never counts under ``x`` again). The
    owner's id itself is the one :meth:`Tombstones.adopt` gives.
    """
    own = sorted({own_id, *tombstones.claimed})
    moved: dict[str, CounterState] = {}
    for name, counter in state.counters.items():
        after = _move_excess(tombstones, own, name, counter)
        if after is not counter:
            moved[name] = after
    if moved:
        state = CounterMapState({**state.counters, **moved})
    return apply_map(tombstones, state)


def _move_excess(
    tombstones: Tombstones, own: list[str], name: str, counter: CounterState
) -> CounterState:
    raw_inc = dict(counter.increments)
    raw_dec = dict(counter.decrements)
    for start in own:
        current = start
        while (record := tombstones.tombstoned_by(current)) is not None:
            after = successor(current)
            if record.named is not None:
                amounts = record.named.get(name, {}).get(current, (0, 0))
                for raw, amount in ((raw_inc, amounts[0]), (raw_dec, amounts[1])):
                    excess = raw.get(current, 0) - amount
                    if excess > raw.get(after, 0):
                        raw[after] = min(excess, MAX_COUNT)
            current = after
    if raw_inc == counter.increments and raw_dec == counter.decrements:
        return counter
    return CounterState.from_maps(raw_inc, raw_dec)


def _initial(survivor: str, amounts: Mapping[str, tuple[int, int]]) -> CounterState:
    inc = sum(p for p, _ in amounts.values())
    dec = sum(n for _, n in amounts.values())
    return CounterState.from_maps(
        {survivor: min(inc, MAX_COUNT)} if inc else None,
        {survivor: min(dec, MAX_COUNT)} if dec else None,
    )


class NamedSpeakers:
    """Which members apply records' named parts, as far as this node has learned.

    A member is asked once (an empty ``named records`` message) when it is first heard
    from; one that speaks it answers (``named ack``), an older one drops the question. A
    member that is no longer alive is forgotten, so one that comes back (maybe as another
    version) is asked again. ``patience`` is how long an answer may take.
    """

    def __init__(self, patience: float) -> None:
        self._patience = patience
        self._speak: set[str] = set()
        self._asked: dict[str, float] = {}

    @property
    def speakers(self) -> frozenset[str]:
        return frozenset(self._speak)

    def heard(self, sender: str, now: float) -> bool:
        """A pruning message came from ``sender``: whether to ask it now."""
        if sender in self._speak or sender in self._asked:
            return False
        self._asked[sender] = now
        return True

    def answered(self, sender: str) -> None:
        """``sender`` sent a named message: it applies named parts."""
        self._speak.add(sender)

    def forget_absent(self, alive: Collection[str]) -> None:
        """Forget the members not in ``alive`` (left, dead or removed)."""
        self._speak.intersection_update(alive)
        for address in [a for a in self._asked if a not in alive]:
            del self._asked[address]

    def all_speak(self, alive: Collection[str], now: float) -> bool | None:
        """True: every member in ``alive`` applies named parts; False: one does not (asked
        ``patience`` ago, or never heard from); None: an answer may still come."""
        result: bool | None = True
        for address in alive:
            if address in self._speak:
                continue
            asked = self._asked.get(address)
            if asked is None or now - asked >= self._patience:
                return False
            result = None
        return result

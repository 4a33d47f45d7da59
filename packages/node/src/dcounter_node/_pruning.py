"""Pruning of superseded incarnations, as pure code (see "Pruning" in the node README).

No asyncio, no sockets, no files: :class:`Tombstones` is the set of prune records a node
knows and the rules that follow from it, over one :class:`~dcounter_crdt.CounterState`
(the named counters' map applies a record's per-name part to each name's state, in
:mod:`dcounter_node._pruning_named`); :func:`plan` decides whether this node collapses its
lineage now; :func:`pause_reason` whether it may at all.
The asyncio driver is :mod:`dcounter_node._pruning_service`.

The rules in short:

* a record ``(survivor, victims {id: (p, n)}, created)`` removes the victims' entries and
  raises the survivor's entry to the victims' sum, in one step;
* merged states never bring a victim back, and the entry of a successor id ``x'`` is only
  admitted where ``x`` is a known victim (so no node counts a survivor together with the
  victims it includes);
* the owner of a victim continues under its successor with the counts it made above the
  record's amounts (:meth:`Tombstones.adopt`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from dcounter_crdt import MAX_COUNT, CounterState

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Mapping

__all__ = [
    "MAX_RECORDS",
    "MAX_VICTIMS",
    "SUCCESSOR_MARK",
    "Added",
    "PruneRecord",
    "Tombstones",
    "lineage",
    "pause_reason",
    "plan",
    "successor",
]

#: Appended to an id to name its successor: the id its owner counts under once it is pruned.
SUCCESSOR_MARK: Final = "'"
#: Most victims in one record (a bigger lineage is pruned over several rounds).
MAX_VICTIMS: Final = 64
#: Most records a node keeps; it makes none beyond, and ignores received ones beyond.
MAX_RECORDS: Final = 1024
#: Longest replica id, in UTF-8 bytes (as gossip accepts).
MAX_ID_BYTES: Final = 255


def successor(replica_id: str) -> str:
    """The id the owner of ``replica_id`` counts under once ``replica_id`` is pruned."""
    return replica_id + SUCCESSOR_MARK


def lineage(address: str, own_id: str, ids: Iterable[str]) -> list[str]:
    """The ids among ``ids`` of earlier incarnations at ``address`` (not ``own_id``), sorted.

    Incarnation ids are ``address#...`` (see "Replica ids are per incarnation"); a node whose
    own id does not have that form (a configured id) has no lineage to prune.
    """
    prefix = f"{address}#"
    if not own_id.startswith(prefix):
        return []
    return sorted(i for i in ids if i.startswith(prefix) and i != own_id)


@dataclass(frozen=True, slots=True)
class PruneRecord:
    """A tombstone: the victims' entries, collapsed into the survivor's.

    ``victims`` maps each victim id to its ``(increments, decrements)`` at the collapse.
    ``named`` is the same for the named counters, by name (only nonzero amounts: a victim
    a name does not list is tombstoned there at ``(0, 0)``); None for a record whose named
    entries were not collapsed (made by an older node, or while a member could not learn
    it), which leaves the victims' named entries counted as they are.
    """

    survivor: str
    victims: Mapping[str, tuple[int, int]]
    created: float
    named: Mapping[str, Mapping[str, tuple[int, int]]] | None = None

    def total(self) -> tuple[int, int]:
        """The survivor's entry right after the collapse: the victims' sum."""
        inc = sum(p for p, _ in self.victims.values())
        dec = sum(n for _, n in self.victims.values())
        return inc, dec

    def initial(self) -> CounterState:
        """The survivor's entry right after the collapse, as a state."""
        inc, dec = self.total()
        return CounterState.from_maps(
            {self.survivor: inc} if inc else None, {self.survivor: dec} if dec else None
        )


class Added(enum.Enum):
    """What :meth:`Tombstones.add` did with a record."""

    NEW = "new"
    KNOWN = "known"
    #: Names a victim of a known record (or its survivor is a victim): refused.
    CONFLICT = "conflicts with a known record"
    #: Prunes a survivor whose record is not known yet: not applied (yet).
    WAITING = "waits for an earlier record"
    #: MAX_RECORDS held already: ignored (the node stays stale, never wrong).
    FULL = "too many records held"


class Tombstones:
    """The prune records one node knows, and what they mean for a counter state."""

    def __init__(self, records: Iterable[PruneRecord] = ()) -> None:
        self._records: dict[str, PruneRecord] = {}
        self._victims: dict[str, PruneRecord] = {}
        # The victims of records with a named part: their named entries are tombstoned.
        self._named_victims: dict[str, PruneRecord] = {}
        self._own: set[str] = set()
        self.add_all(records)

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, survivor: object) -> bool:
        return survivor in self._records

    def records(self) -> list[PruneRecord]:
        """Every record, oldest first."""
        return sorted(self._records.values(), key=lambda r: (r.created, r.survivor))

    def survivors(self) -> list[str]:
        """The records' survivor ids (what ``have`` messages carry), sorted."""
        return sorted(self._records)

    def get(self, survivor: str) -> PruneRecord | None:
        return self._records.get(survivor)

    def is_victim(self, replica_id: str) -> bool:
        return replica_id in self._victims

    def amounts(self, victim: str) -> tuple[int, int] | None:
        """The ``(p, n)`` a record tombstoned ``victim`` at (None if it is no victim)."""
        record = self._victims.get(victim)
        return None if record is None else record.victims[victim]

    def add(self, record: PruneRecord) -> Added:
        """Remember ``record`` unless it is known, conflicts, waits, or there are too many."""
        known = self._records.get(record.survivor)
        if known is not None:
            return Added.KNOWN if known == record else Added.CONFLICT
        victims = record.victims
        if record.survivor in self._victims or any(v in self._victims for v in victims):
            return Added.CONFLICT
        if not any(successor(v) == record.survivor for v in victims):
            return Added.CONFLICT  # only a victim's owner collapses, into its successor
        if not all(self.admitted(v) for v in victims):
            # It prunes a survivor whose own record is not known here: applying it now
            # would drop an entry this node does not count while it still counts the
            # earlier victims inside it. It comes again with the earlier record.
            return Added.WAITING
        if len(self._records) >= MAX_RECORDS:
            return Added.FULL
        self._records[record.survivor] = record
        for victim in victims:
            self._victims[victim] = record
            if record.named is not None:
                self._named_victims[victim] = record
        return Added.NEW

    def add_all(self, records: Iterable[PruneRecord]) -> list[tuple[PruneRecord, Added]]:
        """Add records in any order (one may wait for another in the same batch)."""
        waiting = sorted(records, key=lambda r: (r.created, r.survivor))
        outcomes: list[tuple[PruneRecord, Added]] = []
        progress = True
        while waiting and progress:
            progress = False
            still: list[PruneRecord] = []
            for record in waiting:
                added = self.add(record)
                if added is Added.WAITING:
                    still.append(record)
                    continue
                progress = progress or added is Added.NEW
                outcomes.append((record, added))
            waiting = still
        outcomes.extend((record, Added.WAITING) for record in waiting)
        return outcomes

    def admitted(self, replica_id: str) -> bool:
        """Whether an entry of ``replica_id`` may be merged from a peer's state."""
        if replica_id in self._victims:
            return False
        if replica_id.endswith(SUCCESSOR_MARK):
            return replica_id[: -len(SUCCESSOR_MARK)] in self._victims
        return True

    def tombstoned_by(self, victim: str) -> PruneRecord | None:
        """The record that tombstones ``victim`` (None if it is no victim)."""
        return self._victims.get(victim)

    def named_record(self, victim: str) -> PruneRecord | None:
        """The record with a named part that tombstones ``victim`` (None if none does)."""
        return self._named_victims.get(victim)

    def admitted_named(self, replica_id: str) -> bool:
        """Whether a named counter's entry of ``replica_id`` may be merged from a peer.

        As :meth:`admitted`, but only the victims of records with a named part are refused:
        a record without one left its victims' named entries counted.
        """
        if replica_id in self._named_victims:
            return False
        if replica_id.endswith(SUCCESSOR_MARK):
            return replica_id[: -len(SUCCESSOR_MARK)] in self._victims
        return True

    def admit(self, state: CounterState, *, named: bool = False) -> CounterState:
        """``state`` without the entries that :meth:`admitted` (with ``named``,
        :meth:`admitted_named`) refuses."""
        ids = state.increments.keys() | state.decrements.keys()
        if not self._victims and not any(i.endswith(SUCCESSOR_MARK) for i in ids):
            return state  # the common case: nothing pruned, nothing to refuse
        admitted = self.admitted_named if named else self.admitted
        refused = {i for i in ids if not admitted(i)}
        if not refused:
            return state
        return CounterState.from_maps(
            {i: c for i, c in state.increments.items() if i not in refused},
            {i: c for i, c in state.decrements.items() if i not in refused},
        )

    def apply(self, state: CounterState) -> CounterState:
        """``state`` with every known record applied: victims dropped, survivors raised."""
        result = self.admit(state)
        for record in self._records.values():
            # A survivor pruned since by a later record is in that record's survivor.
            if record.survivor not in self._victims:
                result = result.merged(record.initial())
        return result

    def claim(self, ids: Iterable[str]) -> None:
        """Remember ids this node's data directory counted under before (its previous
        incarnations, kept in ``bequest.json``): :meth:`adopt` moves their excess too."""
        self._own.update(ids)

    @property
    def claimed(self) -> frozenset[str]:
        return frozenset(self._own)

    def adopt(self, own_id: str, state: CounterState) -> tuple[str, CounterState]:
        """The id to count under and the state to hold (every record applied), for the
        owner of ``own_id`` whose own entries in ``state`` are complete.

        The counts an own id (``own_id`` or a :meth:`claim`-ed previous one) ``x`` holds
        above the amounts a record tombstoned it at were made by this node's data
        directory and are in no record: they go to ``x'`` (no one else can hold them:
        only the owner counts under an id), as ``x' = max(x', excess)``. The owner never
        counts under ``x`` again, so the excess is fixed and the move idempotent (the store
        keeps ``x``'s entry: every restart computes the same). While ``own_id`` is a victim
        its owner continues under the last successor that is no victim, which holds that
        excess and its later writes.
        """
        raw_inc = dict(state.increments)
        raw_dec = dict(state.decrements)
        for start in sorted({own_id, *self._own}):
            current = start
            while (amounts := self.amounts(current)) is not None:
                after = successor(current)
                for raw, amount in ((raw_inc, amounts[0]), (raw_dec, amounts[1])):
                    excess = raw.get(current, 0) - amount
                    if excess > raw.get(after, 0):
                        raw[after] = min(excess, MAX_COUNT)
                current = after
            if start == own_id:
                own_id = current
        if raw_inc == state.increments and raw_dec == state.decrements:
            return own_id, self.apply(state)
        return own_id, self.apply(CounterState.from_maps(raw_inc, raw_dec))


def plan(
    address: str,
    own_id: str,
    state: CounterState,
    tombstones: Tombstones,
    created: float,
    *,
    bequests: Mapping[str, tuple[int, int]] | None = None,
    keep: Collection[str] = (),
) -> PruneRecord | None:
    """The record that collapses this node's lineage now, or None when there is nothing.

    Victims: the ``bequests`` due (ids members that left gave this node, at the counts
    they gave), the earlier incarnations at ``address`` held in ``state`` but not in
    ``keep`` (ids this node bequeathed: their heir prunes them), at most MAX_VICTIMS in
    all, oldest ids first, and this node's own id; survivor: its successor.
    """
    if len(tombstones) >= MAX_RECORDS:
        return None
    given = {
        v: counts
        for v, counts in (bequests or {}).items()
        if v != own_id and tombstones.admitted(v)
    }
    # Earlier survivors are victims like any earlier incarnation: their records are known
    # here (their entries would have been refused otherwise), and the new record names
    # them, so it waits wherever theirs is not known yet.
    earlier = [
        i
        for i in lineage(address, own_id, state.replicas())
        if tombstones.admitted(i) and i not in keep and i not in given
    ]
    chosen = [*given, *earlier][: MAX_VICTIMS - 1]
    survivor = successor(own_id)
    if not chosen or len(survivor.encode("utf-8", "surrogatepass")) > MAX_ID_BYTES:
        return None
    victims = {
        i: given.get(i, (state.increments.get(i, 0), state.decrements.get(i, 0))) for i in chosen
    }
    victims[own_id] = (state.increments.get(own_id, 0), state.decrements.get(own_id, 0))
    return PruneRecord(survivor, victims, created)


def pause_reason(
    *,
    peers: Collection[str],
    members: Mapping[str, bool],
    capable: Collection[str],
    suspects: Collection[str],
) -> str | None:
    """Why this node must not prune now (None: it may).

    ``peers`` are its gossip peers; ``members`` maps each member believed alive or suspect
    to whether it is suspect; ``capable`` are the members that sent a pruning message.
    """
    for peer in sorted(peers):
        if peer not in members:
            return f"peer {peer} is not a member (a Go or older node cannot learn records)"
    for member in sorted(members):
        if member not in capable:
            return f"member {member} has not shown it speaks pruning yet"
    if suspects:
        return f"member {sorted(suspects)[0]} is suspect"
    return None

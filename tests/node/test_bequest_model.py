"""Bequests against a model of a cluster: leaves, crashes, returns, lost answers, heirs' and
lineage prunes.

Each address runs at most one process (:class:`Process` of the pruning model) and keeps a data
directory: its state when stopped, its records, what it holds as an heir (:class:`Heirloom`)
and what it bequeathed (:class:`Bequeathed`), all written at once (the node fsyncs them).
Hypothesis picks the schedule: writes, lossy gossip, a leave (the bequest to the heirs in
order, each refusing or accepting, the answer sometimes lost), a return (the revoke reaching
the heir or not, its answer sometimes lost), heirs' prunes of what they hold (every bequest
is due: the model has no clock) and lineage prunes after catching up (assumption A).

Standing bequests: a running process offers one of its id (answers accepted, refused or
lost), crashes (its data directory keeps what it had; it comes back as a new incarnation),
and an heir prunes a standing bequest **at any time**, at its own view of the id: also while
the owner runs on behind a partition and counts more, or before a crashed owner learns the
record. Only the owner's data directory holds counts above the heir's view, and it moves
them to the id's successor (its previous ids are claimed). A collapse that names a process's
own id first has its standing heir revoke it. At every step nothing is counted twice and no
id is a victim of two records; once everyone is back and gossip has had its way, every
process holds the exact total. The unsafe variants (``Unsafe``) fail on given schedules.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from dcounter_crdt import CounterState
from dcounter_node._bequest import (
    Answer,
    Bequeathed,
    Bequest,
    Given,
    Heirloom,
    Outcome,
    after_revoke,
    standing_heirs,
)
from dcounter_node._pruning import PruneRecord, Tombstones, plan

from .test_pruning_model import ADDRESSES, Process

if TYPE_CHECKING:
    from collections.abc import Collection


class Unsafe(enum.Enum):
    """Rules the model can break, to show the checks catch each one."""

    #: Previous own ids are not claimed: a crashed incarnation's excess is dropped.
    NO_CLAIM = "no claim"
    #: A lost answer to a standing offer goes on to the next heir.
    SECOND_HEIR = "second heir"
    #: A process collapses its own id without its standing heir's revoke.
    NO_REVOKE = "no revoke"


@dataclass
class Directory:
    own: str
    crashed: bool = False
    #: Restarted and not caught up yet (a node prunes --prune-after after its start, by
    #: when it has every record made before: assumption A).
    fresh: bool = False
    state: CounterState = field(default_factory=CounterState.empty)
    records: list[PruneRecord] = field(default_factory=list)
    heirloom: Heirloom = field(default_factory=Heirloom)
    bequeathed: Bequeathed = field(default_factory=Bequeathed)


@dataclass
class World:
    running: dict[str, Process] = field(default_factory=dict)
    directories: dict[str, Directory] = field(default_factory=dict)
    made: list[PruneRecord] = field(default_factory=list)
    increments: int = 0
    decrements: int = 0
    ids_made: int = 0
    unsafe: Unsafe | None = None
    standing_pruned: list[str] = field(default_factory=list)

    def new_id(self, address: str) -> str:
        self.ids_made += 1
        return f"{address}#{self.ids_made:08x}"

    def start(self, address: str) -> None:
        directory = self.directories.setdefault(address, Directory(self.new_id(address)))
        directory.crashed = False
        tombstones = Tombstones(directory.records)
        if self.unsafe is not Unsafe.NO_CLAIM:
            tombstones.claim(directory.bequeathed.own())
        process = Process(address, directory.own, directory.state, tombstones)
        process.learn([])
        self.running[address] = process
        if self.unsafe is not Unsafe.NO_CLAIM:
            directory.bequeathed.claim(process.own)
            tombstones.claim([process.own])
        self.save(address)

    def save(self, address: str) -> None:
        process = self.running[address]
        directory = self.directories[address]
        directory.own, directory.state = process.own, process.state
        directory.records = process.tombstones.records()
        directory.bequeathed.settle(process.tombstones.is_victim)

    def write(self, address: str, amount: int) -> None:
        process = self.running.get(address)
        if process is None:
            return
        process.write(amount)
        if amount > 0:
            self.increments += amount
        else:
            self.decrements -= amount
        self.save(address)

    def push(self, a: str, b: str) -> None:
        if a != b and a in self.running and b in self.running:
            self.running[b].merge(self.running[a].state)
            self.save(b)

    def send_records(self, a: str, b: str) -> None:
        if a != b and a in self.running and b in self.running:
            self.learn(b, self.running[a].tombstones.records())

    def learn(self, address: str, records: list[PruneRecord]) -> None:
        process = self.running[address]
        process.learn(records)
        heirloom = self.directories[address].heirloom
        heirloom.drop(
            [v for v in [b.victim for b in heirloom.held()] if process.tombstones.is_victim(v)]
        )
        self.save(address)

    def made_by(self, address: str, record: PruneRecord) -> None:
        """The pruner applies its record; others learn it by gossip (``records`` steps),
        so a partition is a schedule where it does not reach them in time."""
        self.made.append(record)
        self.learn(address, [record])

    # -- bequests ---------------------------------------------------------------------------

    def leave(self, address: str, answers: list[str]) -> None:
        """Stop the process at ``address``, bequeathing its id to the other running ones in
        order: each answer ``accept``, ``refuse``, or ``lost`` (accepted, answer lost)."""
        process = self.running.get(address)
        if process is None:
            return
        victim = process.own
        counts = (process.state.increments.get(victim, 0), process.state.decrements.get(victim, 0))
        heirs = [a for a in ADDRESSES if a != address and a in self.running]
        # Its last delta reaches one member (or none).
        if heirs:
            self.push(address, heirs[0])
        del self.running[address]
        given = self.directories[address].bequeathed
        if counts == (0, 0):
            return
        standing = given.get(victim)
        if standing is not None:
            self.make_final(address, standing, counts, answers[0])
            return
        for heir, answer in zip(heirs, answers, strict=False):
            given.record(Given(victim, heir, counts))
            holder = self.running[heir]
            bequest = Bequest(victim, counts)
            heirloom = self.directories[heir].heirloom
            refusal = heirloom.refusal(bequest, pruned=holder.tombstones.is_victim)
            if answer != "refuse" and refusal is None:
                heirloom.take(bequest)
                return  # accepted, or no answer (ambiguous): no other heir either way
            if answer == "lost":
                return  # refused, but the answer is lost: still ambiguous
            given.forget(victim)

    def make_final(
        self, address: str, standing: Given, counts: tuple[int, int], answer: str
    ) -> None:
        """A leave turns a standing bequest final, with its heir only."""
        given = self.directories[address].bequeathed
        given.record(Given(standing.victim, standing.heir, counts))
        holder = self.running.get(standing.heir)
        if holder is None:
            return  # no answer: the final one stays recorded (a start asks the revoke)
        bequest = Bequest(standing.victim, counts)
        heirloom = self.directories[standing.heir].heirloom
        refusal = heirloom.refusal(bequest, pruned=holder.tombstones.is_victim)
        if answer != "refuse" and refusal is None:
            heirloom.take(bequest)
        elif answer != "lost":
            given.record(standing)  # refused: the heir keeps the standing one

    def stand(self, address: str, answers: list[str]) -> None:
        """The process at ``address`` offers a standing bequest of its id."""
        process = self.running.get(address)
        if process is None:
            return
        victim = process.own
        given = self.directories[address].bequeathed
        candidates = {a: False for a in self.running if a != address}
        previous = given.get(victim)
        if self.unsafe is Unsafe.SECOND_HEIR and previous is not None and not previous.confirmed:
            previous = None
        order = standing_heirs(previous, candidates, set(candidates), random.Random(0))
        for heir, answer in zip(order, answers, strict=False):
            pinned = previous is not None
            given.record(Given(victim, heir, (0, 0), standing=True, confirmed=False))
            holder = self.running[heir]
            bequest = Bequest(victim, (0, 0), standing=True, owner=address)
            heirloom = self.directories[heir].heirloom
            refusal = heirloom.refusal(bequest, pruned=holder.tombstones.is_victim)
            if answer != "refuse" and refusal is None:
                heirloom.take(bequest)
                if answer == "accept":
                    given.record(Given(victim, heir, (0, 0), standing=True))
                    return
                if self.unsafe is not Unsafe.SECOND_HEIR:
                    return  # lost: pinned to this heir
            elif answer == "lost" or pinned:
                return
            given.forget(victim)

    def crash(self, address: str) -> None:
        """Kill -9: no leave, no bequest; the data directory keeps what was saved."""
        if self.running.pop(address, None) is not None:
            self.directories[address].crashed = True

    def may_collapse(self, address: str, *, reach: bool, prunes: Collection[str] = ()) -> bool:
        """Before a record naming its own id: its standing heir revokes it (or not). An
        heir that is gone and whose own id this record prunes (``prunes``) need not."""
        process = self.running[address]
        given = self.directories[address].bequeathed
        standing = given.get(process.own)
        if standing is None or self.unsafe is Unsafe.NO_REVOKE:
            return True
        held = self.directories[address].heirloom.held()
        if standing.heir not in self.running and any(
            b.standing and b.owner == standing.heir and b.victim in prunes for b in held
        ):
            return True
        holder = self.running.get(standing.heir)
        if not reach or holder is None:
            return False
        if holder.tombstones.is_victim(standing.victim):
            self.learn(address, holder.tombstones.records())  # pruned: the record first
            return False
        self.directories[standing.heir].heirloom.revoke(standing.victim, standing.counts)
        given.forget(standing.victim)
        return True

    def come_back(self, address: str, *, reach: bool, lose_answer: bool) -> None:
        if address in self.running or address not in self.directories:
            return
        directory = self.directories[address]
        tombstones = Tombstones(directory.records)
        directory.bequeathed.settle(tombstones.is_victim)
        given = directory.bequeathed.to_revoke()
        answer: Answer | None = None
        if given is not None and reach and given.heir in self.running:
            heir = self.running[given.heir]
            if heir.tombstones.is_victim(given.victim):
                answer = Answer.PRUNED
                tombstones.add_all(heir.tombstones.records())  # sent before the answer
            else:
                self.directories[given.heir].heirloom.revoke(given.victim, given.counts)
                answer = Answer.REVOKED
            if lose_answer:
                answer = None
        directory.records = tombstones.records()
        if given is not None:
            outcome = after_revoke(answer, pruned=tombstones.is_victim(given.victim))
            if outcome is Outcome.NEW_INCARNATION:
                directory.bequeathed.abandon(given.victim)
                directory.own = self.new_id(address)
            else:
                directory.bequeathed.forget(given.victim)
        if directory.crashed:
            directory.own = self.new_id(address)  # an unclean restart: a new incarnation
        directory.fresh = True
        self.start(address)

    def heir_prunes(self, address: str, *, standing: bool = False, reach: bool = True) -> None:
        """The heir prunes its final bequests (all due: the model has no clock); with
        ``standing`` its standing ones too, holding every owner gone (right, or wrong: a
        partition), at its own view of their counts."""
        process = self.running.get(address)
        if process is None:
            return
        directory = self.directories[address]
        if standing and directory.fresh:
            directory.fresh = False
            for other in self.directories.values():
                self.learn(address, other.records)
        state = process.state
        if standing:
            directory.heirloom.watch(lambda b: True, 0.0)
        due = directory.heirloom.due(
            now=0.0,
            prune_after=0.0,
            counts=(lambda v: (state.increments.get(v, 0), state.decrements.get(v, 0)))
            if standing
            else None,
        )
        if not due or not self.may_collapse(address, reach=reach, prunes=due):
            return
        record = plan(
            address,
            process.own,
            process.state,
            process.tombstones,
            0.0,
            bequests=due,
            keep=directory.bequeathed.kept(),
        )
        if record is not None and any(v in due for v in record.victims):
            if standing:
                self.standing_pruned.extend(v for v in record.victims if v in due)
            self.made_by(address, record)

    def lineage_prunes(self, address: str) -> None:
        """After --prune-after: every count and record held anywhere has reached it."""
        process = self.running.get(address)
        if process is None:
            return
        for other in self.directories.values():
            self.learn(address, other.records)
        for other in self.directories.values():
            process.merge(other.state)
        keep = self.directories[address].bequeathed.kept()
        record = plan(address, process.own, process.state, process.tombstones, 0.0, keep=keep)
        if record is not None and self.may_collapse(address, reach=True):
            self.made_by(address, record)

    # -- checks -----------------------------------------------------------------------------

    def check(self) -> None:
        victims = [v for r in self.made for v in r.victims]
        assert len(victims) == len(set(victims)), "an id pruned twice"
        for process in self.running.values():
            assert sum(process.state.increments.values()) <= self.increments
            assert sum(process.state.decrements.values()) <= self.decrements

    def settle(self) -> None:
        for _ in range(8):
            for a in list(self.running):
                for b in list(self.running):
                    self.send_records(a, b)
            for a in list(self.running):
                for b in list(self.running):
                    self.push(a, b)


address = st.sampled_from(ADDRESSES)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("write"), address, st.sampled_from([-2, 1, 3])),
        st.tuples(st.just("push"), address, address),
        st.tuples(st.just("records"), address, address),
        st.tuples(
            st.just("leave"),
            address,
            st.lists(st.sampled_from(["accept", "refuse", "lost"]), min_size=1, max_size=2),
        ),
        st.tuples(st.just("back"), address, st.tuples(st.booleans(), st.booleans())),
        st.tuples(st.just("heir"), address, st.just(None)),
        st.tuples(st.just("lineage"), address, st.just(None)),
        st.tuples(
            st.just("stand"),
            address,
            st.lists(st.sampled_from(["accept", "refuse", "lost"]), min_size=1, max_size=2),
        ),
        st.tuples(st.just("crash"), address, st.just(None)),
        st.tuples(st.just("standing"), address, st.booleans()),
    ),
    min_size=20,
    max_size=70,
)


def run(schedule: list[tuple[str, str, object]], unsafe: Unsafe | None = None) -> World:
    """Play ``schedule``, checking after each step; then everyone comes back, gossip
    settles, and every process must hold the exact total."""
    world = World(unsafe=unsafe)
    for a in ADDRESSES:
        world.start(a)
    for op, a, arg in schedule:
        if op == "write":
            assert isinstance(arg, int)
            world.write(a, arg)
        elif op in ("push", "records"):
            assert isinstance(arg, str)
            (world.push if op == "push" else world.send_records)(a, arg)
        elif op in ("leave", "stand"):
            assert isinstance(arg, list)
            (world.leave if op == "leave" else world.stand)(a, arg)
        elif op == "back":
            assert isinstance(arg, tuple)
            world.come_back(a, reach=arg[0], lose_answer=arg[1])
        elif op == "heir":
            world.heir_prunes(a)
        elif op == "standing":
            world.heir_prunes(a, standing=True, reach=bool(arg))
        elif op == "crash":
            world.crash(a)
        else:
            world.lineage_prunes(a)
        world.check()
    for a in ADDRESSES:
        world.come_back(a, reach=True, lose_answer=False)
    world.settle()
    expected = world.increments - world.decrements
    first = world.running[A0].state
    for process in world.running.values():
        assert process.state.value == expected, "the value changed"
        assert process.state == first
    return world


A0, A1, A2 = ADDRESSES
#: A crashes for good with counts its heir never heard; its next incarnation has them.
CRASHED_UNHEARD: list[tuple[str, str, object]] = [
    ("stand", A0, ["accept"]),
    ("write", A0, 3),
    ("crash", A0, None),
    ("back", A0, (True, False)),
    ("standing", A1, True),
    ("standing", A2, True),
    ("records", A1, A0),
    ("records", A2, A0),
]
#: The heir prunes A while A runs on behind a partition, and A counts more first.
PARTITIONED: list[tuple[str, str, object]] = [
    ("stand", A0, ["accept"]),
    ("write", A0, 3),
    ("push", A0, A1),
    ("push", A0, A2),
    ("write", A0, 1),
    ("standing", A1, True),
    ("standing", A2, True),
    ("write", A0, 2),
    ("records", A1, A0),
    ("records", A2, A0),
]
#: As PARTITIONED, but A crashes before it learns the record, and comes back anew.
PARTITIONED_CRASH: list[tuple[str, str, object]] = [
    *PARTITIONED[:-2],
    ("crash", A0, None),
    ("back", A0, (True, False)),
    *PARTITIONED[-2:],
]
#: The answer to a standing offer is lost: the first heir may hold it.
LOST_OFFER: list[tuple[str, str, object]] = [
    ("write", A0, 3),
    ("stand", A0, ["lost", "accept"]),
    ("stand", A0, ["accept"]),
    ("crash", A0, None),
    ("standing", A1, True),
    ("standing", A2, True),
]
#: A and B are each other's standing heir, and A dies: B prunes it without its revoke.
MUTUAL_DEAD: list[tuple[str, str, object]] = [
    ("write", A0, 3),
    ("write", A1, 2),
    ("stand", A0, ["accept"]),
    ("stand", A1, ["accept"]),
    ("crash", A0, None),
    ("standing", A1, False),
    ("standing", A2, False),
    ("back", A0, (True, False)),
    ("standing", A0, True),
]
#: A collapses its lineage (naming its own id) while an heir holds a standing bequest of it.
OWN_COLLAPSE: list[tuple[str, str, object]] = [
    ("write", A0, 3),
    ("crash", A0, None),
    ("back", A0, (True, False)),
    ("write", A0, 1),
    ("stand", A0, ["accept"]),
    ("lineage", A0, None),
    ("crash", A0, None),
    ("standing", A1, True),
    ("standing", A2, True),
]


@settings(settings.get_profile("model"))
@given(steps)
@example(
    # No answer from the first heir: the leaver must not ask a second one, or both prune.
    [
        ("write", ADDRESSES[0], 3),
        ("leave", ADDRESSES[0], ["lost", "accept"]),
        ("heir", ADDRESSES[1], None),
        ("heir", ADDRESSES[2], None),
    ]
)
@example(
    # Back without reaching its heir: a new incarnation, whose lineage leaves the old id
    # to the heir.
    [
        ("write", ADDRESSES[0], 3),
        ("leave", ADDRESSES[0], ["accept"]),
        ("back", ADDRESSES[0], (False, False)),
        ("write", ADDRESSES[0], 1),
        ("lineage", ADDRESSES[0], None),
        ("heir", ADDRESSES[1], None),
    ]
)
@example(
    # Back in time: revoked, resumed, and the heir has nothing to prune.
    [
        ("write", ADDRESSES[0], 3),
        ("leave", ADDRESSES[0], ["refuse", "accept"]),
        ("back", ADDRESSES[0], (True, False)),
        ("write", ADDRESSES[0], 1),
        ("heir", ADDRESSES[2], None),
        ("leave", ADDRESSES[0], ["accept"]),
        ("heir", ADDRESSES[1], None),
    ]
)
@example(CRASHED_UNHEARD)
@example(PARTITIONED)
@example(PARTITIONED_CRASH)
@example(LOST_OFFER)
@example(OWN_COLLAPSE)
@example(MUTUAL_DEAD)
def test_bequests_never_change_the_value_nor_prune_an_id_twice(
    schedule: list[tuple[str, str, object]],
) -> None:
    world = run(schedule)
    event(f"records: {min(len(world.made), 3)}")
    event(f"standing pruned: {any(world.standing_pruned)}")


def test_an_heir_whose_own_heir_died_prunes_it_without_a_revoke() -> None:
    world = run(MUTUAL_DEAD)
    # A1 prunes A0's first id (and its own) although A0, its own standing heir, is dead;
    # A0, back and caught up, finds A1's old id pruned and prunes nothing twice.
    assert world.made[0].survivor.startswith(A1)
    assert f"{A0}#00000001" in world.made[0].victims


@pytest.mark.parametrize(
    ("schedule", "unsafe"),
    [
        (CRASHED_UNHEARD, Unsafe.NO_CLAIM),
        (PARTITIONED_CRASH, Unsafe.NO_CLAIM),
        (LOST_OFFER, Unsafe.SECOND_HEIR),
        (OWN_COLLAPSE, Unsafe.NO_REVOKE),
    ],
    ids=["crashed-unheard", "partitioned-crash", "lost-offer", "own-collapse"],
)
def test_each_rule_is_needed(schedule: list[tuple[str, str, object]], unsafe: Unsafe) -> None:
    run(schedule)  # the rules keep it exact ...
    with pytest.raises(AssertionError, match=r"the value changed|an id pruned twice"):
        run(schedule, unsafe)  # ... and without this one, it is not

"""Convergence: any interleaving of updates, merges and deltas across replicas ends equal.

A Hypothesis state machine drives 3 to 5 replicas through updates, full-state merges and
delta deliveries (out of order, repeated or dropped); after a full exchange every replica
must hold the same state, whose value is exactly the sum of all updates.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Literal

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from dcounter_crdt import CounterState, PNCounter

if TYPE_CHECKING:
    import random

amounts = st.integers(min_value=1, max_value=1_000_000)
profile = settings.get_profile("crdt")


class ReplicasMachine(RuleBasedStateMachine):
    """Replicas that update, merge whole states and exchange deltas in any order."""

    def __init__(self) -> None:
        super().__init__()
        self.replicas: list[PNCounter] = []
        self.expected_value = 0
        self.expected_own: dict[str, tuple[int, int]] = {}
        # Deltas "on the wire": delivered in any order, any number of times, or never.
        self.in_flight: list[CounterState] = []

    @initialize(size=st.integers(min_value=3, max_value=5))
    def create_replicas(self, size: int) -> None:
        self.replicas = [PNCounter(f"r{i}") for i in range(size)]
        self.expected_own = {r.replica_id: (0, 0) for r in self.replicas}

    def _pick(self, index: int) -> PNCounter:
        return self.replicas[index % len(self.replicas)]

    @rule(index=st.integers(min_value=0, max_value=4), by=amounts)
    def increment(self, index: int, by: int) -> None:
        replica = self._pick(index)
        self.in_flight.append(replica.increment(by))
        self.expected_value += by
        inc, dec = self.expected_own[replica.replica_id]
        self.expected_own[replica.replica_id] = (inc + by, dec)

    @rule(index=st.integers(min_value=0, max_value=4), by=amounts)
    def decrement(self, index: int, by: int) -> None:
        replica = self._pick(index)
        self.in_flight.append(replica.decrement(by))
        self.expected_value -= by
        inc, dec = self.expected_own[replica.replica_id]
        self.expected_own[replica.replica_id] = (inc, dec + by)

    @rule(source=st.integers(min_value=0, max_value=4), dest=st.integers(min_value=0, max_value=4))
    def merge_full_state(self, source: int, dest: int) -> None:
        self._pick(dest).merge(self._pick(source).snapshot())

    @precondition(lambda self: bool(self.in_flight))
    @rule(
        which=st.integers(min_value=0),
        dest=st.integers(min_value=0, max_value=4),
        action=st.sampled_from(["deliver", "deliver_and_keep", "drop"]),
    )
    def handle_delta(
        self, which: int, dest: int, action: Literal["deliver", "deliver_and_keep", "drop"]
    ) -> None:
        index = which % len(self.in_flight)
        delta = self.in_flight[index] if action == "deliver_and_keep" else self.in_flight.pop(index)
        if action != "drop":
            self._pick(dest).merge(delta)

    @invariant()
    def each_replica_counts_its_own_updates_exactly(self) -> None:
        for replica in self.replicas:
            inc, dec = self.expected_own[replica.replica_id]
            assert replica.contribution() == inc - dec

    @invariant()
    def each_value_matches_its_snapshot(self) -> None:
        for replica in self.replicas:
            assert replica.value == replica.snapshot().value

    def teardown(self) -> None:
        if not self.replicas:
            return
        # Full exchange: everyone into the first replica, then it back into everyone.
        hub = self.replicas[0]
        for replica in self.replicas[1:]:
            hub.merge(replica.snapshot())
        for replica in self.replicas[1:]:
            replica.merge(hub.snapshot())
        snapshots = {replica.snapshot() for replica in self.replicas}
        assert len(snapshots) == 1
        assert [replica.value for replica in self.replicas] == [self.expected_value] * len(
            self.replicas
        )
        expected_state = CounterState.from_maps(
            {r: inc for r, (inc, _) in self.expected_own.items()},
            {r: dec for r, (_, dec) in self.expected_own.items()},
        )
        assert snapshots == {expected_state}


TestReplicasConverge = ReplicasMachine.TestCase
TestReplicasConverge.settings = settings(profile, max_examples=30, stateful_step_count=40)


Op = tuple[int, Literal["inc", "dec"], int]


@profile
@given(
    st.integers(min_value=3, max_value=5).flatmap(
        lambda n: st.tuples(
            st.just(n),
            st.lists(
                st.tuples(st.integers(0, n - 1), st.sampled_from(["inc", "dec"]), amounts),
                max_size=30,
            ),
        )
    ),
    st.randoms(use_true_random=False),
)
def test_delivering_every_delta_to_every_replica_in_any_order_converges(
    setup: tuple[int, list[Op]], rng: random.Random
) -> None:
    size, updates = setup
    replicas = [PNCounter(f"r{i}") for i in range(size)]
    deltas: list[CounterState] = []
    for index, kind, by in updates:
        replica = replicas[index]
        deltas.append(replica.increment(by) if kind == "inc" else replica.decrement(by))
    expected = sum(by if kind == "inc" else -by for _, kind, by in updates)
    for replica in replicas:
        order = list(deltas)
        rng.shuffle(order)
        for delta in order:
            replica.merge(delta)
    assert [replica.value for replica in replicas] == [expected] * size
    assert len({replica.snapshot() for replica in replicas}) == 1


@profile
@given(st.lists(st.tuples(st.sampled_from(["inc", "dec"]), amounts), max_size=30))
def test_pairwise_state_exchange_in_a_ring_converges(updates: list[tuple[str, int]]) -> None:
    replicas = [PNCounter(f"r{i}") for i in range(4)]
    for (kind, by), replica in zip(updates, itertools.cycle(replicas), strict=False):
        if kind == "inc":
            replica.increment(by)
        else:
            replica.decrement(by)
    # Two laps of a ring carry every entry to every replica.
    for step in range(2 * len(replicas)):
        source, target = replicas[step % 4], replicas[(step + 1) % 4]
        target.merge(source.snapshot())
    expected = sum(by if kind == "inc" else -by for kind, by in updates)
    assert [replica.value for replica in replicas] == [expected] * 4

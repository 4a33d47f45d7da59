"""Lifeguard's refinements of SWIM: suspicions that shrink as other members confirm them, and
a node's health score that stretches its own probe timing. Pure code, explicit times."""

from __future__ import annotations

import math
import random

import pytest
from prometheus_client import CollectorRegistry

from dcounter_node import Node, NodeConfig
from dcounter_node._membership import (
    Membership,
    MembershipConfig,
    MembershipMessage,
    MemberState,
    MessageKind,
    Update,
)
from dcounter_node._membership_awareness import Awareness
from dcounter_node._membership_service import MembershipCollector, MembershipService
from dcounter_node._membership_suspicion import (
    Suspicion,
    SuspicionBounds,
    Suspicions,
    suspicion_bounds,
)
from dcounter_protocol import MemoryNetwork

A, S, D = MemberState.ALIVE, MemberState.SUSPECT, MemberState.DEAD
CONFIG = MembershipConfig(probe_interval=1.0, probe_timeout=0.5, suspect_timeout=3.0)
#: CONFIG's bounds in a cluster of 6: 3 s once confirmed twice, 6 * 3 s unconfirmed.
LOW, HIGH = 3.0, 18.0
OTHERS = ("b:1", "c:1", "d:1", "e:1", "x:1")


# -- the suspicion timer ---------------------------------------------------------------


def test_an_unconfirmed_suspicion_lasts_the_longest() -> None:
    suspicion = Suspicion("b", SuspicionBounds(2.0, 12.0, expected=3), started=100.0)
    assert (suspicion.confirmations, suspicion.deadline) == (0, 112.0)


def test_a_suspicion_shrinks_with_each_distinct_confirmation_down_to_its_floor() -> None:
    bounds = SuspicionBounds(2.0, 12.0, expected=3)
    suspicion = Suspicion("b", bounds, started=100.0)
    deadlines = [suspicion.deadline]
    for member in ("c", "d", "e"):
        assert suspicion.confirm(member)
        deadlines.append(suspicion.deadline)
    assert deadlines[1] == pytest.approx(100.0 + 12.0 - 10.0 * math.log(2) / math.log(4))
    assert deadlines[2] == pytest.approx(100.0 + 12.0 - 10.0 * math.log(3) / math.log(4))
    assert deadlines[3] == 102.0
    assert deadlines == sorted(deadlines, reverse=True)
    assert not suspicion.confirm("f")  # expected confirmations are in: no lower than the floor
    assert (suspicion.confirmations, suspicion.deadline) == (3, 102.0)


def test_a_member_confirms_once_and_the_origin_never() -> None:
    suspicion = Suspicion("b", SuspicionBounds(2.0, 12.0, expected=3), started=0.0)
    assert not suspicion.confirm("b")
    assert suspicion.confirm("c")
    after_one = suspicion.deadline
    assert not suspicion.confirm("c")
    assert (suspicion.confirmations, suspicion.deadline) == (1, after_one)


def test_a_suspicion_expecting_no_confirmation_lasts_its_floor() -> None:
    suspicion = Suspicion("b", SuspicionBounds(2.0, 12.0, expected=0), started=5.0)
    assert suspicion.deadline == 7.0
    assert not suspicion.confirm("c")


def test_the_floor_grows_with_log10_of_the_cluster_and_the_ceiling_is_a_factor_of_it() -> None:
    assert suspicion_bounds(5.0, 10, max_factor=6.0, confirmations=2) == SuspicionBounds(
        5.0, 30.0, 2
    )
    big = suspicion_bounds(5.0, 100, max_factor=6.0, confirmations=2)
    assert (big.low, big.high) == pytest.approx((10.0, 60.0))
    assert suspicion_bounds(5.0, 1, max_factor=6.0, confirmations=2).low == 5.0


def test_suspicions_take_no_word_from_this_node_or_the_suspect_and_end_for_good() -> None:
    suspicions = Suspicions("me", suspect_timeout=1.0, max_factor=6.0, confirmations=2)
    suspicions.start("x", "b", members=6, now=0.0)
    suspicions.start("y", None, members=6, now=2.0)
    for by in ("me", "x", "b"):
        suspicions.confirm("x", by)
    suspicions.confirm("y", "me")
    assert (suspicions.deadline("x"), suspicions.deadline("y"), suspicions.confirmed) == (
        6.0,
        8.0,
        0,
    )
    suspicions.confirm("x", "c")
    suspicions.confirm("x", "d")
    assert (suspicions.deadline("x"), suspicions.next_deadline(), suspicions.confirmed) == (
        1.0,
        1.0,
        2,
    )
    assert suspicions.expired(1.0) == ["x"]
    suspicions.end("x")
    assert (suspicions.deadline("x"), suspicions.expired(8.0)) == (None, ["y"])


@pytest.mark.parametrize(("members", "expected"), [(3, 0), (4, 0), (5, 2), (50, 2)])
def test_confirmations_are_expected_only_when_enough_members_can_give_them(
    members: int, expected: int
) -> None:
    # Neither this node, the suspect nor the origin confirms: members - 3 can.
    assert suspicion_bounds(1.0, members, max_factor=6.0, confirmations=2).expected == expected


# -- the health score ------------------------------------------------------------------


def test_awareness_is_raised_and_lowered_within_its_bounds() -> None:
    awareness = Awareness(limit=3)
    awareness.better()
    assert awareness.score == 0
    for _ in range(5):
        awareness.worse()
    assert awareness.score == 3
    awareness.better()
    assert awareness.score == 2


def test_awareness_stretches_timeouts_by_one_plus_its_score() -> None:
    awareness = Awareness(limit=7)
    assert awareness.scale(0.5) == 0.5
    awareness.worse(by=2)
    assert awareness.scale(0.5) == 1.5


def test_a_negative_awareness_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="awareness limit"):
        Awareness(limit=-1)


# -- suspicion in the membership -------------------------------------------------------


def member(address: str, state: MemberState = A, incarnation: int = 0) -> Update:
    return Update(address, f"{address}#r", state, incarnation)


def told(membership: Membership, by: str, *updates: Update, now: float) -> None:
    message = MembershipMessage(MessageKind.GOSSIP, member(by), updates=updates)
    assert membership.receive(message, now) == []


def six_members(config: MembershipConfig = CONFIG) -> Membership:
    """``a:1`` knowing five others alive, ``x:1`` among them, at time 0."""
    a = Membership("a:1", "a:1#r", config=config, rng=random.Random(1), now=0.0)
    sync = MembershipMessage(
        MessageKind.SYNC, member("b:1"), updates=tuple(member(o) for o in OTHERS)
    )
    a.receive(sync, 0.0)
    return a


def state_of(membership: Membership, address: str) -> MemberState:
    return {m.address: m.state for m in membership.members()}[address]


def test_a_suspicion_heard_from_one_member_alone_lasts_the_longest() -> None:
    a = six_members()
    told(a, "b:1", member("x:1", S), now=10.0)
    assert a.suspicion_deadline("x:1") == 10.0 + HIGH
    assert a.next_due() <= 10.0 + HIGH


def test_a_suspect_confirmed_by_others_is_declared_dead_sooner() -> None:
    confirmed, alone = six_members(), six_members()
    for a in (confirmed, alone):
        told(a, "b:1", member("x:1", S), now=10.0)
    told(confirmed, "c:1", member("x:1", S), now=10.5)
    told(confirmed, "d:1", member("x:1", S), now=11.0)
    assert confirmed.suspicion_deadline("x:1") == 10.0 + LOW
    assert confirmed.confirmations == 2

    for a in (confirmed, alone):
        a.tick(10.0 + LOW)
    assert (state_of(confirmed, "x:1"), state_of(alone, "x:1")) == (D, S)
    alone.tick(10.0 + HIGH - 0.01)
    assert state_of(alone, "x:1") is S
    alone.tick(10.0 + HIGH)
    assert state_of(alone, "x:1") is D


def test_the_same_member_saying_it_again_is_not_a_confirmation() -> None:
    a = six_members()
    told(a, "b:1", member("x:1", S), now=10.0)
    told(a, "c:1", member("x:1", S), now=10.5)
    once = a.suspicion_deadline("x:1")
    assert once is not None
    assert 10.0 + LOW < once < 10.0 + HIGH
    told(a, "c:1", member("x:1", S), now=11.0)
    told(a, "b:1", member("x:1", S), now=11.0)  # the origin, again
    assert (a.suspicion_deadline("x:1"), a.confirmations) == (once, 1)


def test_neither_the_suspect_nor_this_node_confirms() -> None:
    a = six_members()
    told(a, "b:1", member("x:1", S), now=10.0)
    told(a, "x:1", member("x:1", S), now=10.5)
    told(a, "a:1", member("x:1", S), now=10.5)
    assert (a.suspicion_deadline("x:1"), a.confirmations) == (10.0 + HIGH, 0)


def test_a_stale_suspicion_is_not_a_confirmation() -> None:
    a = six_members()
    told(a, "b:1", member("x:1", incarnation=3), now=1.0)
    told(a, "b:1", member("x:1", S, 3), now=10.0)
    told(a, "c:1", member("x:1", S, 2), now=10.5)
    assert a.confirmations == 0


def test_this_nodes_own_failed_probe_starts_the_suspicion_that_others_confirm() -> None:
    config = MembershipConfig(probe_interval=1.0, probe_timeout=0.5, suspect_timeout=3.0)
    a = Membership("a:1", "a:1#r", config=config, rng=random.Random(1), now=0.0)
    told(a, "b:1", *(member(o) for o in OTHERS), now=0.0)
    (ping,) = [o for o in a.tick(0.0) if o.message.kind is MessageKind.PING]
    target = ping.address
    a.tick(1.0)  # unanswered, indirect probes included
    assert state_of(a, target) is S
    assert a.suspicion_deadline(target) == 1.0 + HIGH
    confirmers = [o for o in OTHERS if o != target][:2]
    for by in confirmers:
        told(a, by, member(target, S), now=1.5)
    assert a.suspicion_deadline(target) == 1.0 + LOW


def test_a_refutation_cancels_the_suspicion_and_a_new_one_starts_afresh() -> None:
    a = six_members()
    told(a, "b:1", member("x:1", S), now=10.0)
    told(a, "c:1", member("x:1", S), now=10.5)
    told(a, "x:1", member("x:1", A, 1), now=11.0)
    assert (state_of(a, "x:1"), a.suspicion_deadline("x:1")) == (A, None)
    a.tick(10.0 + LOW)
    assert state_of(a, "x:1") is A
    told(a, "c:1", member("x:1", S, 1), now=20.0)
    assert a.suspicion_deadline("x:1") == 20.0 + HIGH  # c's earlier word counts no more


def test_a_small_cluster_declares_a_suspect_dead_after_the_floor() -> None:
    a = Membership("a:1", "a:1#r", config=CONFIG, rng=random.Random(1), now=0.0)
    told(a, "b:1", member("c:1"), now=0.0)
    told(a, "b:1", member("c:1", S), now=1.0)
    assert a.suspicion_deadline("c:1") == 1.0 + CONFIG.suspect_timeout


def test_config_refuses_lifeguard_nonsense() -> None:
    with pytest.raises(ValueError, match="suspect_max_factor"):
        MembershipConfig(suspect_max_factor=0.5)
    with pytest.raises(ValueError, match="suspect_confirmations"):
        MembershipConfig(suspect_confirmations=-1)
    with pytest.raises(ValueError, match="awareness_limit"):
        MembershipConfig(awareness_limit=-1)


# -- awareness in the membership -------------------------------------------------------


def with_one_member() -> Membership:
    a = Membership("a:1", "a:1#r", config=CONFIG, rng=random.Random(1), now=0.0)
    told(a, "b:1", now=0.0)
    return a


def probe(a: Membership, now: float) -> MembershipMessage:
    (ping,) = [o for o in a.tick(now) if o.message.kind is MessageKind.PING]
    return ping.message


def test_an_unanswered_probe_raises_awareness_and_stretches_the_next_probe() -> None:
    a = with_one_member()
    probe(a, 0.0)
    a.tick(1.0)  # the probe ends unanswered; the next one starts
    assert a.awareness == 1
    assert a.next_due() == 1.0 + 2 * CONFIG.probe_timeout  # its timeout, stretched twice
    a.tick(a.next_due())
    assert a.next_due() == 1.0 + 2 * CONFIG.probe_interval


def answer(a: Membership, ping: MembershipMessage, now: float) -> None:
    # At a new incarnation: b refutes the suspicion its unanswered probe raised.
    ack = MembershipMessage(MessageKind.ACK, member("b:1", incarnation=1), ping.seq, "b:1")
    a.receive(ack, now)


def test_an_answered_probe_lowers_awareness() -> None:
    a = with_one_member()
    probe(a, 0.0)
    second = probe(a, 1.0)  # the first ended unanswered; the second starts, stretched
    assert a.awareness == 1
    answer(a, second, 1.5)
    assert a.awareness == 0
    assert a.next_due() == 3.0  # the next probe as the stretched one scheduled it
    answer(a, probe(a, 3.0), 3.1)
    assert a.next_due() == 4.0  # healthy again: a plain interval later


def test_hearing_itself_suspected_raises_awareness() -> None:
    a = with_one_member()
    told(a, "b:1", member("a:1", S), now=1.0)
    assert (a.awareness, a.incarnation) == (1, 1)


def test_awareness_stays_within_its_limit() -> None:
    config = MembershipConfig(
        probe_interval=1.0, probe_timeout=0.5, suspect_timeout=3.0, awareness_limit=2
    )
    a = Membership("a:1", "a:1#r", config=config, rng=random.Random(1), now=0.0)
    for incarnation in range(5):
        told(a, "b:1", member("a:1", S, incarnation), now=1.0)
    assert a.awareness == 2


# -- on /metrics -----------------------------------------------------------------------


async def test_the_health_score_and_confirmations_are_exported() -> None:
    network = MemoryNetwork(seed=1)
    node = Node(network.transport("a:1"), NodeConfig(sync_interval=30.0))
    service = MembershipService(
        node, seeds=(), static_peers=(), config=CONFIG, rng=random.Random(1)
    )
    await node.start()
    service.start()
    try:
        membership = service.membership
        assert membership is not None
        registry = CollectorRegistry()
        registry.register(MembershipCollector(service))
        assert registry.get_sample_value("dcounter_membership_awareness") == 0
        told(membership, "b:1", *(member(o) for o in OTHERS), now=0.0)
        told(membership, "b:1", member("a:1", S), member("x:1", S), now=0.0)
        told(membership, "c:1", member("x:1", S), now=0.0)
        assert registry.get_sample_value("dcounter_membership_awareness") == 1
        confirmations = "dcounter_membership_suspicion_confirmations_total"
        assert registry.get_sample_value(confirmations) == 1
    finally:
        await service.close()
        await node.close()


def test_an_unanswered_probe_of_a_member_that_left_meanwhile_is_not_held_against_us() -> None:
    a = with_one_member()
    probe(a, 0.0)
    told(a, "b:1", member("b:1", MemberState.LEFT), now=0.5)
    a.tick(1.0)
    assert a.awareness == 0

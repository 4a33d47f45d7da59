"""A member learnt in the middle of a probe round is probed in that round (as memberlist
inserts it at a random place in the round), not only after every member known before it."""

from __future__ import annotations

import random

from dcounter_node._membership import (
    Membership,
    MembershipConfig,
    MembershipMessage,
    MemberState,
    MessageKind,
    Update,
)

A = MemberState.ALIVE
CONFIG = MembershipConfig(probe_interval=1.0, probe_timeout=0.5, suspect_timeout=3.0)


def sync_from(count: int) -> MembershipMessage:
    updates = tuple(Update(f"m{i}:1", f"m{i}:1#r", A, 0) for i in range(1, count))
    return MembershipMessage(MessageKind.SYNC, Update("m0:1", "m0:1#r", A, 0), updates=updates)


def probe_target(membership: Membership, now: float) -> str:
    pings = [o for o in membership.tick(now) if o.message.kind is MessageKind.PING]
    assert len(pings) == 1
    ack = MembershipMessage(
        MessageKind.ACK, Update(pings[0].address, "r", A, 0), pings[0].message.seq, pings[0].address
    )
    membership.receive(ack, now)  # answered: no suspicion gets in the way
    return pings[0].address


def test_a_member_learnt_mid_round_is_probed_in_that_round() -> None:
    for seed in range(10):
        membership = Membership("self:1", "self:1#r", config=CONFIG, rng=random.Random(seed), now=0)
        membership.receive(sync_from(20), now=0.0)
        first = probe_target(membership, 0.0)  # the round over these 20 has begun
        newcomer = Update("new:1", "new:1#r", A, 0)
        membership.receive(MembershipMessage(MessageKind.GOSSIP, newcomer), now=0.1)

        rest = [probe_target(membership, float(t)) for t in range(1, 21)]

        assert "new:1" in rest
        assert sorted([first, *rest]) == sorted([*(f"m{i}:1" for i in range(20)), "new:1"])

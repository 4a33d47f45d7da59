"""The member table's cap (``max_members``): gossip cannot make a node hold more members."""

from __future__ import annotations

import random

import pytest

from dcounter_node._membership import (
    Membership,
    MembershipConfig,
    MembershipMessage,
    MemberState,
    MessageKind,
    Update,
)

A = MemberState.ALIVE


def capped(max_members: int) -> Membership:
    config = MembershipConfig(max_members=max_members)
    return Membership("self:1", "self:1#r", config=config, rng=random.Random(1), now=0.0)


def sync_naming(count: int) -> MembershipMessage:
    """A sync from ``m0:1`` naming ``count - 1`` other members, all alive."""
    updates = tuple(Update(f"m{i}:1", f"m{i}:1#r", A, 0) for i in range(1, count))
    return MembershipMessage(MessageKind.SYNC, Update("m0:1", "m0:1#r", A, 0), updates=updates)


def test_members_beyond_the_cap_are_ignored_and_counted() -> None:
    membership = capped(4)

    membership.receive(sync_naming(10), now=1.0)

    # This node and three others: the sender first, then the updates in order.
    assert [m.address for m in membership.members()] == ["m0:1", "m1:1", "m2:1", "self:1"]
    assert membership.refused == 7
    assert membership.alive() == ["m0:1", "m1:1", "m2:1"]


def test_updates_about_known_members_still_apply_at_the_cap() -> None:
    membership = capped(2)
    membership.receive(sync_naming(1), now=1.0)
    assert membership.refused == 0

    left = MembershipMessage(MessageKind.GOSSIP, Update("m0:1", "m0:1#r", MemberState.LEFT, 0))
    membership.receive(left, now=2.0)

    assert {m.address: m.state for m in membership.members()} == {
        "m0:1": MemberState.LEFT,
        "self:1": A,
    }
    assert membership.refused == 0


def test_under_the_cap_nothing_is_refused() -> None:
    membership = capped(1024)
    membership.receive(sync_naming(50), now=1.0)
    assert len(membership.members()) == 51
    assert membership.refused == 0


@pytest.mark.parametrize("max_members", [0, 1])
def test_the_cap_leaves_room_for_another_member(max_members: int) -> None:
    with pytest.raises(ValueError, match="max_members"):
        MembershipConfig(max_members=max_members)

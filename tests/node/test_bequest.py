"""Bequests' pure rules: what an heir holds and prunes, whom a leaver asks, how it returns."""

from __future__ import annotations

import random

from dcounter_crdt import CounterState
from dcounter_node._bequest import (
    MAX_ATTEMPTS,
    MAX_HELD,
    Answer,
    Bequeathed,
    Bequest,
    Given,
    Heirloom,
    Outcome,
    after_revoke,
    heir_order,
    standing_heirs,
)
from dcounter_node._pruning import MAX_VICTIMS, PruneRecord, Tombstones, plan, successor

A = "10.0.0.1:7946"
S = "10.0.0.1:7946#0000000a"
OLD = "10.0.0.1:7946#00000001"
LEFT = "10.0.0.2:7946#0000000b"
GONE = "10.0.0.3:7946#0000000c"


def never(replica_id: str) -> bool:
    return False


def test_an_heir_holds_a_bequest_until_it_is_due() -> None:
    heirloom = Heirloom()
    assert heirloom.refusal(Bequest(LEFT, (5, 2), received=100.0), pruned=never) is None
    heirloom.take(Bequest(LEFT, (5, 2), received=100.0))
    assert LEFT in heirloom
    assert heirloom.due(now=159.0, prune_after=60.0) == {}
    assert heirloom.due(now=160.0, prune_after=60.0) == {LEFT: (5, 2)}


def test_a_revoked_bequest_is_forgotten_and_a_late_copy_refused() -> None:
    heirloom = Heirloom([Bequest(LEFT, (5, 2), received=1.0)])
    assert heirloom.revoke(LEFT, (5, 2)) == Bequest(LEFT, (5, 2), received=1.0)
    assert LEFT not in heirloom
    assert heirloom.due(now=1e9, prune_after=0.0) == {}
    assert heirloom.refusal(Bequest(LEFT, (5, 2)), pruned=never) is not None
    # The owner resumed the id and may bequeath it again once it counted more.
    assert heirloom.refusal(Bequest(LEFT, (6, 2)), pruned=never) is None


def test_revoking_a_bequest_never_held_is_a_revoke_too() -> None:
    heirloom = Heirloom()
    assert heirloom.revoke(LEFT, (1, 0)) is None
    assert heirloom.refusal(Bequest(LEFT, (1, 0)), pruned=never) is not None


def test_an_heir_refuses_a_pruned_id_and_beyond_its_bound() -> None:
    heirloom = Heirloom([Bequest(f"x#{i}", (1, 0)) for i in range(MAX_HELD)])
    assert heirloom.refusal(Bequest(LEFT, (1, 0)), pruned=never) is not None
    assert heirloom.refusal(Bequest("x#0", (2, 0)), pruned=never) is None  # a repeat
    assert Heirloom().refusal(Bequest(LEFT, (1, 0)), pruned=lambda i: i == LEFT) is not None


def test_dropping_pruned_bequests() -> None:
    heirloom = Heirloom([Bequest(LEFT, (1, 0)), Bequest(GONE, (2, 0))])
    assert heirloom.drop([LEFT, "unknown"]) == [Bequest(LEFT, (1, 0))]
    assert [b.victim for b in heirloom.held()] == [GONE]


def test_heirs_are_alive_members_that_speak_pruning_at_most_three() -> None:
    members = {"a": False, "b": True, "c": False, "d": False, "e": False, "f": False}
    order = heir_order(members, {"a", "b", "c", "d", "e"}, random.Random(1))
    assert len(order) == MAX_ATTEMPTS
    assert set(order) <= {"a", "c", "d", "e"}  # b is suspect, f never spoke pruning
    assert heir_order({"a": False}, set(), random.Random(1)) == []


def test_the_heir_collapses_a_due_bequest_with_its_own_entry() -> None:
    # The heir may not have all of the left node's counts: the bequest's are what count.
    current = CounterState.from_maps({S: 4, LEFT: 3}, {S: 1})
    record = plan(A, S, current, Tombstones(), 7.0, bequests={LEFT: (5, 2)})
    assert record == PruneRecord(successor(S), {S: (4, 1), LEFT: (5, 2)}, 7.0)
    tombstones = Tombstones()
    tombstones.add(record)
    assert tombstones.apply(current) == CounterState.from_maps({successor(S): 9}, {successor(S): 3})


def test_the_heir_collapses_bequests_and_lineage_in_one_record_within_the_bound() -> None:
    lineage_ids = {f"{A}#{i:08x}": 1 for i in range(100, 200)}
    current = CounterState.from_maps({S: 1, **lineage_ids})
    record = plan(A, S, current, Tombstones(), 0.0, bequests={LEFT: (1, 0), GONE: (2, 0)})
    assert record is not None
    assert len(record.victims) == MAX_VICTIMS
    assert {LEFT, GONE, S} <= set(record.victims)


def test_a_pruned_bequest_is_not_named_again() -> None:
    tombstones = Tombstones([PruneRecord(successor(GONE), {GONE: (2, 0)}, 0.0)])
    current = CounterState.from_maps({S: 1})
    assert plan(A, S, current, tombstones, 0.0, bequests={GONE: (2, 0)}) is None


def test_lineage_never_collapses_an_id_this_node_bequeathed() -> None:
    current = CounterState.from_maps({S: 1, OLD: 5})
    assert plan(A, S, current, Tombstones(), 0.0, keep={OLD}) is None
    assert plan(A, S, current, Tombstones(), 0.0) is not None


def test_a_bequest_is_resumable_until_a_start_goes_on_without_the_heir() -> None:
    bequeathed = Bequeathed()
    bequeathed.record(Given(LEFT, "10.0.0.9:7946", (5, 2)))
    assert bequeathed.to_revoke() == Given(LEFT, "10.0.0.9:7946", (5, 2))
    bequeathed.abandon(LEFT)
    assert bequeathed.to_revoke() is None
    assert bequeathed.kept() == {LEFT}
    assert not bequeathed.settle(never)
    assert bequeathed.settle(lambda i: i == LEFT)
    assert len(bequeathed) == 0


def test_a_returning_node_resumes_only_on_revoked() -> None:
    assert after_revoke(Answer.REVOKED, pruned=False) is Outcome.RESUME
    assert after_revoke(None, pruned=False) is Outcome.NEW_INCARNATION
    assert after_revoke(Answer.PRUNED, pruned=False) is Outcome.NEW_INCARNATION
    assert after_revoke(Answer.ACCEPTED, pruned=False) is Outcome.NEW_INCARNATION
    assert after_revoke(Answer.PRUNED, pruned=True) is Outcome.ADOPT
    assert after_revoke(None, pruned=True) is Outcome.ADOPT


# -- standing bequests (members that crash) ------------------------------------------------

OWNER = "10.0.0.2:7946"


def standing(victim: str = LEFT, received: float = 0.0) -> Bequest:
    return Bequest(victim, (0, 0), received, standing=True, owner=OWNER)


def test_a_standing_bequest_is_due_once_its_owner_was_gone_for_prune_after() -> None:
    heirloom = Heirloom([standing()])
    counts = {LEFT: (7, 1)}.__getitem__
    heirloom.watch(lambda b: True, now=100.0)
    assert heirloom.due(now=159.0, prune_after=60.0, counts=counts) == {}
    heirloom.watch(lambda b: True, now=159.0)
    assert heirloom.due(now=160.0, prune_after=60.0, counts=counts) == {LEFT: (7, 1)}


def test_an_owner_seen_again_restarts_the_clock() -> None:
    heirloom = Heirloom([standing()])
    counts = {LEFT: (7, 1)}.__getitem__
    heirloom.watch(lambda b: True, now=100.0)
    heirloom.watch(lambda b: False, now=150.0)  # alive (or suspect) again
    heirloom.watch(lambda b: True, now=151.0)
    assert heirloom.due(now=210.0, prune_after=60.0, counts=counts) == {}
    assert heirloom.due(now=211.0, prune_after=60.0, counts=counts) == {LEFT: (7, 1)}


def test_a_standing_bequest_whose_owner_was_never_seen_gone_is_never_due() -> None:
    heirloom = Heirloom([standing(received=0.0)])
    assert heirloom.due(now=1e9, prune_after=60.0, counts=lambda v: (1, 0)) == {}
    heirloom.watch(lambda b: True, now=1e9)
    assert heirloom.due(now=1e9, prune_after=60.0) == {}  # no counts given: not due


def test_a_held_bequest_is_accepted_again_whatever_else_holds() -> None:
    # An earlier answer was lost and the owner retries: refusing now would let it name a
    # second heir while this one holds its id.
    heirloom = Heirloom([standing(f"{A}#{i:08x}") for i in range(MAX_HELD)])
    again = standing(f"{A}#{0:08x}")
    assert heirloom.refusal(again, pruned=never) is None
    assert heirloom.refusal(standing(), pruned=never) is not None  # a new one: full


def test_a_final_bequest_replaces_a_standing_one_never_the_reverse() -> None:
    heirloom = Heirloom([standing()])
    heirloom.take(Bequest(LEFT, (5, 2), 10.0))
    heirloom.take(standing(received=11.0))  # late copy of the standing one
    assert heirloom.held() == [Bequest(LEFT, (5, 2), 10.0)]


def test_a_standing_bequest_revoked_refuses_its_late_copy() -> None:
    heirloom = Heirloom([standing()])
    heirloom.revoke(LEFT, (0, 0))
    assert heirloom.refusal(standing(), pruned=never) is not None


def test_a_node_offers_its_standing_bequest_to_one_heir_at_a_time() -> None:
    rng = random.Random(1)
    members = {"b:1": False, "c:1": False, "d:1": True}
    assert sorted(standing_heirs(None, members, {"b:1", "c:1", "d:1"}, rng)) == ["b:1", "c:1"]
    held = Given(S, "b:1", (0, 0), standing=True, confirmed=True)
    assert standing_heirs(held, members, {"b:1", "c:1"}, rng) == []


def test_an_unanswered_standing_bequest_is_offered_to_that_heir_only() -> None:
    rng = random.Random(1)
    pending = Given(S, "b:1", (0, 0), standing=True, confirmed=False)
    assert standing_heirs(pending, {"b:1": False, "c:1": False}, {"b:1", "c:1"}, rng) == ["b:1"]
    # Not reachable now: no one (never c:1, b:1 may hold it).
    assert standing_heirs(pending, {"b:1": True, "c:1": False}, {"b:1", "c:1"}, rng) == []
    assert standing_heirs(pending, {"c:1": False}, {"c:1"}, rng) == []


def test_a_start_asks_no_revoke_for_a_standing_bequest() -> None:
    bequeathed = Bequeathed([Given(S, "b:1", (0, 0), standing=True)], own=[S])
    assert bequeathed.to_revoke() is None
    assert bequeathed.kept() == {S}  # its lineage leaves it to the heir
    assert bequeathed.claim(S) is False
    assert bequeathed.claim(OLD) is True
    assert bequeathed.own() == {S, OLD}


def test_a_leaving_heir_releases_its_standing_bequests_only() -> None:
    heirloom = Heirloom([standing(), Bequest(OLD, (5, 2), 1.0)])
    assert heirloom.release() == [standing()]
    assert heirloom.held() == [Bequest(OLD, (5, 2), 1.0)]


def test_a_release_frees_the_id_only_from_its_own_heir() -> None:
    bequeathed = Bequeathed([Given(S, "b:1", (0, 0), standing=True)])
    assert bequeathed.released(S, "c:1") is False  # not its heir
    assert bequeathed.given() != []
    assert bequeathed.released(S, "b:1") is True
    assert bequeathed.given() == []
    final = Bequeathed([Given(S, "b:1", (5, 0))])
    assert final.released(S, "b:1") is False  # a final bequest is never released

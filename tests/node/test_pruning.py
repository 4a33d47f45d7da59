"""Pruning's pure rules: records, what they refuse, who collapses what, and when."""

from __future__ import annotations

import pytest

from dcounter_crdt import CounterState
from dcounter_node._pruning import (
    MAX_RECORDS,
    MAX_VICTIMS,
    Added,
    PruneRecord,
    Tombstones,
    lineage,
    pause_reason,
    plan,
    successor,
)

A = "10.0.0.1:7946"
OLD1, OLD2, OWN = f"{A}#00000001", f"{A}#00000002", f"{A}#00000003"
OTHER = "10.0.0.2:7946#0000000b"


def state(inc: dict[str, int], dec: dict[str, int] | None = None) -> CounterState:
    return CounterState.from_maps(inc, dec)


def test_successor_appends_the_mark() -> None:
    assert successor(OWN) == OWN + "'"
    assert successor(successor(OWN)) == OWN + "''"


def test_lineage_is_the_other_incarnations_at_the_address() -> None:
    ids = [OLD2, OWN, OTHER, OLD1, successor(OLD1)]
    assert lineage(A, OWN, ids) == [OLD1, successor(OLD1), OLD2]


def test_a_configured_id_has_no_lineage() -> None:
    assert lineage(A, "node-a", [OLD1, OLD2]) == []


def test_plan_collapses_earlier_incarnations_and_the_own_id_into_its_successor() -> None:
    current = state({OLD1: 5, OLD2: 7, OWN: 1, OTHER: 4}, {OLD1: 2, OWN: 3})
    record = plan(A, OWN, current, Tombstones(), created=10.0)
    assert record == PruneRecord(
        successor(OWN), {OLD1: (5, 2), OLD2: (7, 0), OWN: (1, 3)}, created=10.0
    )
    assert record.total() == (13, 5)


def test_plan_has_nothing_to_do_without_earlier_incarnations() -> None:
    assert plan(A, OWN, state({OWN: 3, OTHER: 4}), Tombstones(), created=0.0) is None


def test_plan_takes_at_most_max_victims() -> None:
    many = {f"{A}#{i:08x}": 1 for i in range(100)} | {OWN: 1}
    record = plan(A, OWN, state(many), Tombstones(), created=0.0)
    assert record is not None
    assert len(record.victims) == MAX_VICTIMS
    assert OWN in record.victims


def test_applying_a_record_drops_victims_raises_the_survivor_and_keeps_the_value() -> None:
    current = state({OLD1: 5, OLD2: 7, OWN: 1, OTHER: 4}, {OLD1: 2, OWN: 3})
    record = plan(A, OWN, current, Tombstones(), created=0.0)
    assert record is not None
    tombstones = Tombstones([record])
    applied = tombstones.apply(current)
    assert applied == state({successor(OWN): 13, OTHER: 4}, {successor(OWN): 5})
    assert applied.value == current.value


def test_a_victim_entry_from_a_stale_state_is_refused() -> None:
    tombstones = Tombstones([PruneRecord(successor(OWN), {OLD1: (5, 0), OWN: (1, 0)}, 0.0)])
    stale = state({OLD1: 9, OTHER: 2})
    assert tombstones.admit(stale) == state({OTHER: 2})


def test_a_successor_is_refused_where_its_base_is_not_known_as_a_victim() -> None:
    pushed = state({successor(OWN): 6, OTHER: 2})
    assert Tombstones().admit(pushed) == state({OTHER: 2})
    known = Tombstones([PruneRecord(successor(OWN), {OLD1: (5, 0), OWN: (1, 0)}, 0.0)])
    assert known.admit(pushed) == pushed


def test_states_without_pruned_ids_pass_unchanged() -> None:
    pushed = state({OTHER: 2})
    assert Tombstones().admit(pushed) is pushed


def test_the_owner_of_a_pruned_id_moves_what_it_counted_above_the_record() -> None:
    # It resumed OLD1 (say from an old data directory) and counted 9 - 5 more under it.
    tombstones = Tombstones([PruneRecord(successor(OWN), {OLD1: (5, 1), OWN: (2, 0)}, 0.0)])
    own_id, adopted = tombstones.adopt(OLD1, state({OLD1: 9, OTHER: 3}, {OLD1: 1}))
    assert own_id == successor(OLD1)
    assert adopted == state({successor(OLD1): 4, successor(OWN): 7, OTHER: 3}, {successor(OWN): 1})


def test_the_pruner_resuming_its_pruned_id_continues_its_successor() -> None:
    record = PruneRecord(successor(OWN), {OLD1: (5, 0), OWN: (2, 0)}, 0.0)
    tombstones = Tombstones([record])
    # Its database still holds OLD1 and OWN; it wrote 3 under OWN' since the collapse.
    stored = state({OLD1: 5, OWN: 2, successor(OWN): 10})
    own_id, adopted = tombstones.adopt(OWN, stored)
    assert (own_id, adopted) == (successor(OWN), state({successor(OWN): 10}))


def test_the_excess_moves_once_however_often_the_owner_restarts() -> None:
    # The store keeps OLD1's entry (it only grows): every start adopts from it again, and
    # the successor, which holds the excess and the writes made since, must not grow.
    tombstones = Tombstones([PruneRecord(successor(OWN), {OLD1: (5, 1), OWN: (2, 0)}, 0.0)])
    stored = state({OLD1: 9, OTHER: 3}, {OLD1: 1})
    own_id, adopted = tombstones.adopt(OLD1, stored)
    after_writes = adopted.merged(state({successor(OLD1): 6}))  # 2 more under OLD1'
    restarted = after_writes.merged(stored)  # the store still has OLD1 at 9
    assert tombstones.adopt(OLD1, restarted) == (own_id, after_writes)


def test_a_previous_own_id_moves_its_excess_to_its_successor() -> None:
    # This data directory counted under OLD1, crashed (now OLD2), and the heir pruned OLD1
    # at what it had heard: 5. The 4 above it are in no record and only this node has them.
    tombstones = Tombstones([PruneRecord(successor(OTHER), {OLD1: (5, 0), OTHER: (3, 0)}, 0.0)])
    tombstones.claim([OLD1])
    stored = state({OLD1: 9, OLD2: 2})
    own_id, adopted = tombstones.adopt(OLD2, stored)
    assert own_id == OLD2
    assert adopted == state({OLD2: 2, successor(OLD1): 4, successor(OTHER): 8})
    assert adopted.value == stored.value + 3  # OTHER's 3, now in its survivor
    # Idempotent: the next start computes the same.
    assert tombstones.adopt(OLD2, adopted.merged(stored)) == (own_id, adopted)


def test_without_the_claim_a_previous_ids_excess_is_lost() -> None:
    tombstones = Tombstones([PruneRecord(successor(OTHER), {OLD1: (5, 0), OTHER: (3, 0)}, 0.0)])
    _, adopted = tombstones.adopt(OLD2, state({OLD1: 9, OLD2: 2}))
    assert adopted.value == 2 + 8  # the 4 counted above the record are gone


def test_a_previous_ids_excess_follows_a_pruned_successor() -> None:
    # OLD1' (the excess, 4) was pruned by lineage later at 4: nothing more moves.
    records = [
        PruneRecord(successor(OTHER), {OLD1: (5, 0), OTHER: (3, 0)}, 0.0),
        PruneRecord(successor(OLD2), {successor(OLD1): (4, 0), OLD2: (2, 0)}, 1.0),
    ]
    tombstones = Tombstones()
    tombstones.add_all(records)
    tombstones.claim([OLD1])
    own_id, adopted = tombstones.adopt(OLD2, state({OLD1: 9, OLD2: 2}))
    assert own_id == successor(OLD2)
    assert adopted == state({successor(OLD2): 6, successor(OTHER): 8})


def test_an_id_that_is_no_victim_is_kept() -> None:
    tombstones = Tombstones([PruneRecord(successor(OWN), {OLD1: (5, 0), OWN: (2, 0)}, 0.0)])
    own_id, adopted = tombstones.adopt(OTHER, state({OTHER: 1, OLD1: 5}))
    assert (own_id, adopted) == (OTHER, state({OTHER: 1, successor(OWN): 7}))


def test_a_known_record_is_known_and_a_different_one_for_the_same_survivor_conflicts() -> None:
    record = PruneRecord(successor(OWN), {OLD1: (5, 0), OWN: (2, 0)}, 0.0)
    tombstones = Tombstones([record])
    assert tombstones.add(record) is Added.KNOWN
    other = PruneRecord(successor(OWN), {OLD1: (6, 0), OWN: (2, 0)}, 0.0)
    assert tombstones.add(other) is Added.CONFLICT


def test_a_record_naming_a_known_victim_conflicts() -> None:
    tombstones = Tombstones([PruneRecord(successor(OWN), {OLD1: (5, 0), OWN: (2, 0)}, 0.0)])
    again = PruneRecord(successor(OLD2), {OLD1: (5, 0), OLD2: (1, 0)}, 1.0)
    assert tombstones.add(again) is Added.CONFLICT
    assert len(tombstones) == 1


def test_a_record_whose_survivor_is_not_a_victims_successor_conflicts() -> None:
    forged = PruneRecord(OTHER, {OLD1: (5, 0)}, 0.0)
    assert Tombstones().add(forged) is Added.CONFLICT


def test_a_record_pruning_an_unknown_survivor_waits_for_its_record() -> None:
    first = PruneRecord(successor(OLD2), {OLD1: (5, 0), OLD2: (1, 0)}, 1.0)
    second = PruneRecord(successor(OWN), {successor(OLD2): (6, 0), OWN: (2, 0)}, 2.0)
    tombstones = Tombstones()
    assert tombstones.add(second) is Added.WAITING
    outcomes = tombstones.add_all([second, first])
    assert [added for _, added in outcomes] == [Added.NEW, Added.NEW]
    assert tombstones.apply(state({OLD1: 5, OLD2: 1, OTHER: 1})) == state(
        {successor(OWN): 8, OTHER: 1}
    )


def test_records_beyond_the_bound_are_not_kept() -> None:
    tombstones = Tombstones(
        PruneRecord(f"x#{i}'", {f"x#{i}": (1, 0)}, float(i)) for i in range(MAX_RECORDS)
    )
    assert tombstones.add(PruneRecord("y#1'", {"y#1": (1, 0)}, 0.0)) is Added.FULL
    assert plan(A, OWN, state({OLD1: 1, OWN: 1}), tombstones, created=0.0) is None


@pytest.mark.parametrize(
    ("peers", "members", "capable", "suspects", "reason"),
    [
        (["b:1"], {"b:1": False}, ["b:1"], [], None),
        ([], {}, [], [], None),
        (["go:1"], {}, [], [], "peer go:1 is not a member"),
        (["b:1"], {"b:1": False, "c:1": False}, ["b:1"], [], "member c:1 has not shown"),
        (["b:1"], {"b:1": True}, ["b:1"], ["b:1"], "member b:1 is suspect"),
    ],
)
def test_pruning_pauses_for_non_members_unconfirmed_members_and_suspects(
    peers: list[str],
    members: dict[str, bool],
    capable: list[str],
    suspects: list[str],
    reason: str | None,
) -> None:
    got = pause_reason(peers=peers, members=members, capable=capable, suspects=suspects)
    if reason is None:
        assert got is None
    else:
        assert got is not None
        assert got.startswith(reason)

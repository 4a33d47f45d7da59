"""Pruning's pure rules for the named counters: a record's named part, per name."""

from __future__ import annotations

import dataclasses

from dcounter_crdt import CounterMapState, CounterState
from dcounter_node._pruning import PruneRecord, Tombstones, plan, successor
from dcounter_node._pruning_named import (
    NamedSpeakers,
    admit_map,
    adopt_map,
    apply_map,
    with_named_part,
)

A = "10.0.0.1:7946"
OLD, OWN = f"{A}#00000001", f"{A}#00000002"
OTHER = "10.0.0.2:7946#0000000b"
NEW = successor(OWN)


def counters(**names: dict[str, int] | tuple[dict[str, int], dict[str, int]]) -> CounterMapState:
    states = {}
    for name, counts in names.items():
        inc, dec = counts if isinstance(counts, tuple) else (counts, {})
        states[name] = CounterState.from_maps(inc, dec)
    return CounterMapState(states)


def values(state: CounterMapState) -> dict[str, int]:
    return {name: counter.value for name, counter in state.counters.items()}


# Named counters before the collapse: OLD and OWN hold entries in some names, OTHER too.
BEFORE = counters(
    a={OLD: 5, OWN: 2, OTHER: 7},
    b=({OWN: 4}, {OWN: 1, OLD: 3}),
    c={OTHER: 9},
)


def collapse(state: CounterMapState = BEFORE) -> PruneRecord:
    return with_named_part(default_record(), state)


def default_record() -> PruneRecord:
    default = CounterState.from_maps({OLD: 1, OWN: 1})
    record = plan(A, OWN, default, Tombstones(), created=1.0)
    assert record is not None
    assert record.named is None
    return record


def test_the_named_part_lists_each_names_victim_entries() -> None:
    record = collapse()
    assert record.named == {"a": {OLD: (5, 0), OWN: (2, 0)}, "b": {OLD: (0, 3), OWN: (4, 1)}}


def test_a_named_part_past_the_limit_is_left_out() -> None:
    assert with_named_part(default_record(), BEFORE, limit=4).named is not None
    assert with_named_part(default_record(), BEFORE, limit=3).named is None


def test_applying_drops_the_victims_and_raises_the_survivor_in_every_name() -> None:
    tombstones = Tombstones([collapse()])
    after = apply_map(tombstones, BEFORE)
    assert after == counters(a={NEW: 7, OTHER: 7}, b=({NEW: 4}, {NEW: 4}), c={OTHER: 9})
    assert values(after) == values(BEFORE) == {"a": 14, "b": 0, "c": 9}


def test_a_node_that_never_saw_the_victims_counts_them_through_the_record() -> None:
    # It held only OTHER's counts; the record brings the victims' sums per name.
    after = apply_map(Tombstones([collapse()]), counters(c={OTHER: 9}))
    assert values(after) == {"a": 5 + 2, "b": 4 - 4, "c": 9}
    assert after.get("a") == CounterState.from_maps({NEW: 7})


def test_merges_never_bring_a_victim_back_nor_admit_an_unknown_survivor() -> None:
    stale = counters(a={OLD: 5, OWN: 9, OTHER: 8, NEW: 7})
    assert admit_map(Tombstones(), stale) == counters(a={OLD: 5, OWN: 9, OTHER: 8})
    assert admit_map(Tombstones([collapse()]), stale) == counters(a={OTHER: 8, NEW: 7})


def test_a_record_without_named_part_leaves_the_named_entries_counted() -> None:
    record = dataclasses.replace(collapse(), named=None)
    tombstones = Tombstones([record])
    assert apply_map(tombstones, BEFORE) == BEFORE
    # Its victims' named entries stay admitted; its survivor too (its record is known).
    pushed = counters(a={OLD: 6, NEW: 1})
    assert admit_map(tombstones, pushed) == pushed


def test_an_empty_named_part_tombstones_the_victims_at_zero() -> None:
    record = dataclasses.replace(collapse(), named={})
    assert apply_map(Tombstones([record]), BEFORE) == counters(
        a={OTHER: 7}, b=({}, {}), c={OTHER: 9}
    )


def test_the_owner_moves_its_counts_above_the_record_to_the_successor() -> None:
    # OLD's data directory, resumed after the record, counted 3 more in "a" and 1 in "c":
    # they go to OLD' (nothing lost), and doing it again changes nothing.
    tombstones = Tombstones([collapse()])
    later = BEFORE.merged(counters(a={OLD: 8}, c={OLD: 1}))
    adopted = adopt_map(tombstones, OLD, later)
    assert adopted.get("a") == CounterState.from_maps({NEW: 7, OTHER: 7, successor(OLD): 3})
    assert adopted.get("c") == CounterState.from_maps({OTHER: 9, successor(OLD): 1})
    assert values(adopted) == values(later) == {"a": 17, "b": 0, "c": 10}
    assert adopt_map(tombstones, OLD, later.merged(adopted)) == adopted


def test_an_earlier_id_claimed_by_the_data_directory_moves_its_excess_too() -> None:
    tombstones = Tombstones([collapse()])
    tombstones.claim([OLD])
    later = BEFORE.merged(counters(a={OLD: 8}))
    adopted = adopt_map(tombstones, OTHER, later)
    assert adopted.get("a") == CounterState.from_maps({NEW: 7, OTHER: 7, successor(OLD): 3})
    assert values(adopted)["a"] == 17


def test_a_later_record_collapses_the_survivor_with_its_named_entries() -> None:
    first = collapse()
    counted = apply_map(Tombstones([first]), BEFORE).merged(counters(a={NEW: 10}))
    # The survivor now counts under NEW and collapses again into NEW'.
    default = CounterState.from_maps({NEW: 1})
    second = plan(A, NEW, default, Tombstones([first]), created=2.0, bequests={OWN: (0, 0)})
    assert second is None  # its only own id; nothing else to collapse
    second = with_named_part(
        PruneRecord(successor(NEW), {NEW: (1, 0), OTHER: (0, 0)}, 2.0), counted
    )
    tombstones = Tombstones([first, second])
    after = apply_map(tombstones, counted)
    assert values(after) == values(counted)
    assert after.get("a") == CounterState.from_maps({successor(NEW): 10 + 7})
    # The first record's survivor is no longer raised: its sum is inside the second's.
    assert NEW not in after.get("b").replicas()


# -- who applies named parts --------------------------------------------------------------

B, C = "10.0.0.2:7946", "10.0.0.3:7946"


def test_a_member_is_asked_once_and_counts_once_it_answers() -> None:
    speakers = NamedSpeakers(patience=1.0)
    assert speakers.heard(B, now=0.0)
    assert not speakers.heard(B, now=0.5)  # asked already
    assert speakers.all_speak([B], now=0.5) is None  # its answer may still come
    speakers.answered(B)
    assert speakers.speakers == {B}
    assert speakers.all_speak([B], now=0.6) is True


def test_a_member_that_does_not_answer_in_time_holds_named_parts_back() -> None:
    speakers = NamedSpeakers(patience=1.0)
    speakers.heard(B, now=0.0)
    speakers.heard(C, now=0.0)
    speakers.answered(C)
    assert speakers.all_speak([B, C], now=0.9) is None
    assert speakers.all_speak([B, C], now=1.0) is False
    assert speakers.all_speak([C], now=1.0) is True
    assert speakers.all_speak([], now=1.0) is True


def test_a_member_never_heard_from_does_not_speak_it() -> None:
    assert NamedSpeakers(patience=1.0).all_speak([B], now=0.0) is False


def test_a_member_gone_is_forgotten_and_asked_again_when_it_comes_back() -> None:
    # It may come back as an older version: what it said before does not hold.
    speakers = NamedSpeakers(patience=1.0)
    speakers.heard(B, now=0.0)
    speakers.answered(B)
    speakers.forget_absent([C])
    assert speakers.speakers == frozenset()
    assert speakers.heard(B, now=5.0)
    assert speakers.all_speak([B], now=5.5) is None

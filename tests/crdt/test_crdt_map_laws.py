"""Property tests of PNCounterMap and CounterMapState: the CRDT laws, per key."""

from __future__ import annotations

from contextlib import suppress
from functools import reduce
from typing import Literal

from hypothesis import given, settings
from hypothesis import strategies as st

from dcounter_crdt import (
    DEFAULT_KEY,
    CounterMapState,
    CounterState,
    CountOverflowError,
    PNCounter,
    PNCounterMap,
)

MapOp = tuple[str, Literal["inc", "dec"], int]

maps = st.from_type(CounterMapState)
names = st.sampled_from([DEFAULT_KEY, "x", "y", "z"])
map_ops = st.lists(
    st.tuples(names, st.sampled_from(["inc", "dec"]), st.integers(min_value=1, max_value=1_000)),
    max_size=20,
)
profile = settings.get_profile("crdt")
WRITER = "a"  # an id the state strategy favours, so generated maps do hold it


def _join(deltas: list[CounterMapState]) -> CounterMapState:
    return reduce(CounterMapState.merged, deltas, CounterMapState.empty())


# Generated states may hold the writer's totals near MAX_COUNT: an update that would
# overflow raises and changes nothing, on every path alike, so the helpers skip it.


def _per_op_delta(counters: PNCounterMap, op: MapOp) -> CounterMapState:
    key, kind, amount = op
    try:
        if kind == "inc":
            return counters.increment(key, amount)
        return counters.decrement(key, amount)
    except CountOverflowError:
        return CounterMapState.empty()


def _lazy(counters: PNCounterMap, op: MapOp) -> None:
    key, kind, amount = op
    with suppress(CountOverflowError):
        if kind == "inc":
            counters.add(key, amount)
        else:
            counters.subtract(key, amount)


@profile
@given(maps, maps)
def test_merge_is_commutative(a: CounterMapState, b: CounterMapState) -> None:
    assert a.merged(b) == b.merged(a)


@profile
@given(maps, maps, maps)
def test_merge_is_associative(a: CounterMapState, b: CounterMapState, c: CounterMapState) -> None:
    assert a.merged(b).merged(c) == a.merged(b.merged(c))


@profile
@given(maps)
def test_merge_is_idempotent(a: CounterMapState) -> None:
    assert a.merged(a) == a


@profile
@given(maps)
def test_empty_map_is_the_merge_identity(a: CounterMapState) -> None:
    assert a.merged(CounterMapState.empty()) == CounterMapState.empty().merged(a) == a


@profile
@given(maps, maps)
def test_merge_merges_each_key_on_its_own(a: CounterMapState, b: CounterMapState) -> None:
    merged = a.merged(b)
    assert set(merged.counters) == set(a.counters) | set(b.counters)
    assert all(merged.get(key) == a.get(key).merged(b.get(key)) for key in merged.counters)


@profile
@given(maps, maps)
def test_dominates_is_merge_absorption(a: CounterMapState, b: CounterMapState) -> None:
    assert a.dominates(b) is (a.merged(b) == a)


@profile
@given(maps, maps)
def test_map_merge_matches_state_merge(a: CounterMapState, b: CounterMapState) -> None:
    counters = PNCounterMap("me", a)
    counters.merge(b)
    assert counters.snapshot() == a.merged(b)


@profile
@given(maps, maps)
def test_map_merge_reports_change_exactly(a: CounterMapState, b: CounterMapState) -> None:
    assert PNCounterMap("me", a).merge(b) is (a.merged(b) != a)


@profile
@given(maps, maps)
def test_value_per_key_is_the_sum_of_increments_minus_decrements(
    a: CounterMapState, b: CounterMapState
) -> None:
    counters = PNCounterMap("me", a)
    counters.merge(b)
    expected = {
        key: sum(state.increments.values()) - sum(state.decrements.values())
        for key, state in a.merged(b).counters.items()
    }
    assert counters.values() == expected
    assert all(counters.value(key) == value for key, value in expected.items())


@profile
@given(maps, maps)
def test_merge_delta_stands_in_for_the_merged_map(a: CounterMapState, b: CounterMapState) -> None:
    won = PNCounterMap("me", a).merge_delta(b)
    assert a.merged(won) == a.merged(b)


@profile
@given(maps, maps)
def test_merge_delta_holds_only_entries_that_rose(a: CounterMapState, b: CounterMapState) -> None:
    won = PNCounterMap("me", a).merge_delta(b)
    assert b.dominates(won)
    assert all(not a.get(key).dominates(state) for key, state in won.counters.items())


@profile
@given(maps, maps)
def test_map_delta_since_carries_everything_the_known_map_lacks(
    mine: CounterMapState, known: CounterMapState
) -> None:
    delta = PNCounterMap("me", mine).delta_since(known)
    assert known.merged(delta) == known.merged(mine)
    assert mine.delta_since(known) == delta


@profile
@given(maps, map_ops)
def test_pending_delta_is_the_join_of_the_per_update_deltas(
    initial: CounterMapState, updates: list[MapOp]
) -> None:
    lazy, eager = PNCounterMap(WRITER, initial), PNCounterMap(WRITER, initial)
    for op in updates:
        _lazy(lazy, op)
    deltas = [_per_op_delta(eager, op) for op in updates]
    assert lazy.take_delta() == _join(deltas)
    assert lazy.snapshot() == eager.snapshot()


@profile
@given(maps, maps, map_ops)
def test_merging_the_pending_delta_equals_merging_each_per_update_delta(
    initial: CounterMapState, receiver: CounterMapState, updates: list[MapOp]
) -> None:
    lazy, eager = PNCounterMap(WRITER, initial), PNCounterMap(WRITER, initial)
    by_deltas, by_pending = PNCounterMap("r", receiver), PNCounterMap("r", receiver)
    for op in updates:
        _lazy(lazy, op)
        by_deltas.merge(_per_op_delta(eager, op))
    by_pending.merge(lazy.take_delta())
    assert (by_pending.snapshot(), by_pending.values()) == (
        by_deltas.snapshot(),
        by_deltas.values(),
    )


@profile
@given(map_ops)
def test_each_delta_holds_only_the_key_it_updated(updates: list[MapOp]) -> None:
    counters = PNCounterMap(WRITER)
    for key, kind, amount in updates:
        assert set(_per_op_delta(counters, (key, kind, amount)).counters) == {key}


@profile
@given(st.lists(map_ops, min_size=2, max_size=4), st.data())
def test_replicas_exchanging_deltas_in_any_order_converge(
    scripts: list[list[MapOp]], data: st.DataObject
) -> None:
    replicas = [PNCounterMap(f"r{i}") for i in range(len(scripts))]
    deltas: list[CounterMapState] = []
    for replica, script in zip(replicas, scripts, strict=True):
        for op in script:
            _lazy(replica, op)
        deltas.append(replica.take_delta())
    for replica in replicas:
        for delta in data.draw(st.permutations(deltas)):
            replica.merge(delta)
    expected: dict[str, int] = {}
    for script in scripts:
        for key, kind, amount in script:
            expected[key] = expected.get(key, 0) + (amount if kind == "inc" else -amount)
    assert all(replica.values() == expected for replica in replicas)


@profile
@given(st.from_type(CounterState), map_ops)
def test_the_default_key_behaves_as_a_single_counter(
    initial: CounterState, updates: list[MapOp]
) -> None:
    counters = PNCounterMap(WRITER, CounterMapState({DEFAULT_KEY: initial}))
    counter = PNCounter(WRITER, initial)
    for _, kind, amount in updates:
        with suppress(CountOverflowError):
            if kind == "inc":
                counters.add(DEFAULT_KEY, amount)
                counter.add(amount)
            else:
                counters.subtract(DEFAULT_KEY, amount)
                counter.subtract(amount)
    assert (counters.counter_state(), counters.value()) == (counter.snapshot(), counter.value)
    assert counters.take_delta() == CounterMapState({DEFAULT_KEY: counter.take_delta()})

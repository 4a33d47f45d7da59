"""Property tests of the pending delta: it stands in for every per-update delta it joins."""

from __future__ import annotations

from contextlib import suppress
from functools import reduce
from typing import Literal

from hypothesis import given, settings
from hypothesis import strategies as st

from dcounter_crdt import CounterState, CountOverflowError, PNCounter

Op = tuple[Literal["inc", "dec"], int]
Step = tuple[Literal["inc", "dec", "merge", "take"], int, CounterState]

states = st.from_type(CounterState)
amounts = st.integers(min_value=1, max_value=1_000)
ops = st.lists(st.tuples(st.sampled_from(["inc", "dec"]), amounts), max_size=20)
# Updates interleaved with merges (which may carry the writer's own id) and takes.
steps = st.lists(
    st.tuples(st.sampled_from(["inc", "dec", "merge", "take"]), amounts, states), max_size=20
)
profile = settings.get_profile("crdt")
# Interleavings are where a lost update would hide: look at more of them.
interleavings = settings(profile, max_examples=300)
WRITER = "a"  # one of the ids the state strategy favours, so states do hold it


def _join(deltas: list[CounterState]) -> CounterState:
    return reduce(CounterState.merged, deltas, CounterState.empty())


# States may hold the writer's totals near MAX_COUNT: an update that would overflow
# raises and changes nothing, on both paths alike, so the helpers skip it.


def _per_op_delta(counter: PNCounter, op: Op) -> CounterState:
    kind, amount = op
    try:
        return counter.increment(amount) if kind == "inc" else counter.decrement(amount)
    except CountOverflowError:
        return CounterState.empty()


def _lazy(counter: PNCounter, op: Op) -> None:
    kind, amount = op
    with suppress(CountOverflowError):
        if kind == "inc":
            counter.add(amount)
        else:
            counter.subtract(amount)


@profile
@given(states, ops)
def test_pending_delta_is_the_join_of_the_per_update_deltas(
    initial: CounterState, updates: list[Op]
) -> None:
    lazy, eager = PNCounter(WRITER, initial), PNCounter(WRITER, initial)
    for op in updates:
        _lazy(lazy, op)
    deltas = [_per_op_delta(eager, op) for op in updates]
    assert lazy.take_delta() == _join(deltas)


@profile
@given(states, states, ops)
def test_merging_the_pending_delta_equals_merging_each_per_update_delta(
    initial: CounterState, receiver: CounterState, updates: list[Op]
) -> None:
    lazy, eager = PNCounter(WRITER, initial), PNCounter(WRITER, initial)
    for op in updates:
        _lazy(lazy, op)
    by_deltas = PNCounter("receiver", receiver)
    for op in updates:
        by_deltas.merge(_per_op_delta(eager, op))
    by_pending = PNCounter("receiver", receiver)
    by_pending.merge(lazy.take_delta())
    assert (by_pending.snapshot(), by_pending.value) == (by_deltas.snapshot(), by_deltas.value)


@interleavings
@given(states, states, steps)
def test_taken_deltas_with_merges_interleaved_match_the_per_update_deltas(
    initial: CounterState, receiver: CounterState, script: list[Step]
) -> None:
    # A receiver that gets whatever the writer merged plus the deltas it took ends where
    # one that gets the same merges plus every per-update delta ends.
    lazy, eager = PNCounter(WRITER, initial), PNCounter(WRITER, initial)
    by_takes, by_deltas = PNCounter("r", receiver), PNCounter("r", receiver)
    for kind, amount, state in script:
        if kind == "merge":
            for counter in (lazy, eager, by_takes, by_deltas):
                counter.merge(state)
        elif kind == "take":
            by_takes.merge(lazy.take_delta())
        else:
            _lazy(lazy, (kind, amount))
            by_deltas.merge(_per_op_delta(eager, (kind, amount)))
    by_takes.merge(lazy.take_delta())
    assert lazy.snapshot() == eager.snapshot()
    assert (by_takes.snapshot(), by_takes.value) == (by_deltas.snapshot(), by_deltas.value)


@profile
@given(states, steps)
def test_pending_delta_is_always_part_of_the_state(
    initial: CounterState, script: list[Step]
) -> None:
    counter = PNCounter(WRITER, initial)
    for kind, amount, state in script:
        if kind == "merge":
            counter.merge(state)
        elif kind == "take":
            counter.take_delta()
        else:
            _lazy(counter, (kind, amount))
        assert counter.snapshot().dominates(counter.pending_delta)


@profile
@given(states, ops, ops)
def test_successive_takes_join_to_one_take_over_all_updates(
    initial: CounterState, first: list[Op], second: list[Op]
) -> None:
    twice, once = PNCounter(WRITER, initial), PNCounter(WRITER, initial)
    for op in first:
        _lazy(twice, op)
    taken = twice.take_delta()
    for op in second:
        _lazy(twice, op)
    for op in [*first, *second]:
        _lazy(once, op)
    assert taken.merged(twice.take_delta()) == once.take_delta()


@profile
@given(states, ops)
def test_fast_path_and_per_update_path_reach_the_same_state_and_value(
    initial: CounterState, updates: list[Op]
) -> None:
    lazy, eager = PNCounter(WRITER, initial), PNCounter(WRITER, initial)
    for op in updates:
        _lazy(lazy, op)
        _per_op_delta(eager, op)
    assert (lazy.snapshot(), lazy.value, lazy.contribution()) == (
        eager.snapshot(),
        eager.value,
        eager.contribution(),
    )

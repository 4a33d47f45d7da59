"""Property tests of the deltas: small states that stand in for merging the whole state."""

from __future__ import annotations

from typing import Literal

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from dcounter_crdt import CounterState, PNCounter

Op = tuple[Literal["inc", "dec"], int]

states = st.from_type(CounterState)
ops = st.lists(
    st.tuples(st.sampled_from(["inc", "dec"]), st.integers(min_value=1, max_value=1_000)),
    max_size=20,
)
profile = settings.get_profile("crdt")
WRITER = "writer"


def _apply(counter: PNCounter, op: Op) -> CounterState:
    kind, amount = op
    return counter.increment(amount) if kind == "inc" else counter.decrement(amount)


def _entries(state: CounterState) -> set[tuple[str, str, int]]:
    return {("inc", r, c) for r, c in state.increments.items()} | {
        ("dec", r, c) for r, c in state.decrements.items()
    }


@profile
@given(states, ops)
def test_each_update_delta_holds_exactly_the_writers_new_total(
    initial: CounterState, updates: list[Op]
) -> None:
    assume(WRITER not in initial.replicas())
    counter = PNCounter(WRITER, initial)
    for kind, amount in updates:
        delta = _apply(counter, (kind, amount))
        total = counter.snapshot().increments if kind == "inc" else counter.snapshot().decrements
        assert _entries(delta) == {(kind, WRITER, total[WRITER])}


@profile
@given(states, states, ops)
def test_merging_the_deltas_equals_merging_the_full_state(
    initial: CounterState, receiver_state: CounterState, updates: list[Op]
) -> None:
    assume(WRITER not in initial.replicas())
    writer = PNCounter(WRITER, initial)
    by_deltas = PNCounter("receiver", receiver_state.merged(initial))
    by_state = PNCounter("receiver", receiver_state.merged(initial))
    for op in updates:
        by_deltas.merge(_apply(writer, op))
    by_state.merge(writer.snapshot())
    assert by_deltas.snapshot() == by_state.snapshot()


@profile
@given(ops, st.data())
def test_deltas_merged_in_any_order_and_repeated_give_the_writers_state(
    updates: list[Op], data: st.DataObject
) -> None:
    writer = PNCounter(WRITER)
    deltas = [_apply(writer, op) for op in updates]
    shuffled = data.draw(st.permutations(deltas))
    repeated = data.draw(st.lists(st.sampled_from(deltas), max_size=5)) if deltas else []
    receiver = PNCounter("receiver")
    for delta in [*shuffled, *repeated]:
        receiver.merge(delta)
    assert (receiver.snapshot(), receiver.value) == (writer.snapshot(), writer.value)


@profile
@given(states, states)
def test_merge_delta_stands_in_for_the_merged_state(a: CounterState, b: CounterState) -> None:
    won = PNCounter("me", a).merge_delta(b)
    assert a.merged(won) == a.merged(b)


@profile
@given(states, states)
def test_merge_delta_holds_only_entries_of_the_merged_state(
    a: CounterState, b: CounterState
) -> None:
    won = PNCounter("me", a).merge_delta(b)
    assert _entries(won) <= _entries(b) - _entries(a)


@profile
@given(states, states)
def test_counter_delta_since_carries_everything_the_known_state_lacks(
    mine: CounterState, known: CounterState
) -> None:
    delta = PNCounter("me", mine).delta_since(known)
    assert known.merged(delta) == known.merged(mine)


@profile
@given(states, states)
def test_state_delta_since_holds_only_higher_entries(
    mine: CounterState, known: CounterState
) -> None:
    delta = mine.delta_since(known)
    assert all(
        count > (known.increments if kind == "inc" else known.decrements).get(r, 0)
        for kind, r, count in _entries(delta)
    )


@profile
@given(states, states)
def test_state_delta_since_carries_everything_the_known_state_lacks(
    mine: CounterState, known: CounterState
) -> None:
    assert known.merged(mine.delta_since(known)) == known.merged(mine)

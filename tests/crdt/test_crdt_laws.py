"""Property tests of the join-semilattice laws that make the counter a CRDT."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dcounter_crdt import CounterState, PNCounter

states = st.from_type(CounterState)
profile = settings.get_profile("crdt")


def _entries(state: CounterState) -> dict[tuple[str, str], int]:
    """Every count of a state, keyed by (map, replica id)."""
    return {("inc", r): c for r, c in state.increments.items()} | {
        ("dec", r): c for r, c in state.decrements.items()
    }


@profile
@given(states, states)
def test_merge_is_commutative(a: CounterState, b: CounterState) -> None:
    assert a.merged(b) == b.merged(a)


@profile
@given(states, states, states)
def test_merge_is_associative(a: CounterState, b: CounterState, c: CounterState) -> None:
    assert a.merged(b).merged(c) == a.merged(b.merged(c))


@profile
@given(states)
def test_merge_is_idempotent(a: CounterState) -> None:
    assert a.merged(a) == a


@profile
@given(states)
def test_empty_state_is_the_merge_identity(a: CounterState) -> None:
    assert a.merged(CounterState.empty()) == a


@profile
@given(states, states)
def test_merged_entries_are_pointwise_maxima(a: CounterState, b: CounterState) -> None:
    left, right = _entries(a), _entries(b)
    expected = {key: max(left.get(key, 0), right.get(key, 0)) for key in left.keys() | right}
    assert _entries(a.merged(b)) == expected


@profile
@given(states, states)
def test_merged_dominates_both_inputs(a: CounterState, b: CounterState) -> None:
    merged = a.merged(b)
    assert merged.dominates(a)
    assert merged.dominates(b)


@profile
@given(states, states)
def test_counter_merge_never_lowers_an_entry(a: CounterState, b: CounterState) -> None:
    counter = PNCounter("me", a)
    counter.merge(b)
    after = _entries(counter.snapshot())
    assert all(after.get(key, 0) >= count for key, count in _entries(a).items())


@profile
@given(states, states)
def test_counter_merge_matches_state_merge(a: CounterState, b: CounterState) -> None:
    counter = PNCounter("me", a)
    counter.merge(b)
    assert counter.snapshot() == a.merged(b)


@profile
@given(states, states)
def test_counter_merge_reports_change_exactly(a: CounterState, b: CounterState) -> None:
    counter = PNCounter("me", a)
    assert counter.merge(b) is (a.merged(b) != a)


@profile
@given(states, states)
def test_counter_value_after_merge_is_the_merged_states_value(
    a: CounterState, b: CounterState
) -> None:
    counter = PNCounter("me", a)
    counter.merge(b)
    assert counter.value == a.merged(b).value


@profile
@given(states, states)
def test_dominates_is_merge_absorption(a: CounterState, b: CounterState) -> None:
    assert a.dominates(b) is (a.merged(b) == a)


@profile
@given(states, st.sets(st.text(min_size=1), max_size=3))
def test_zero_padded_state_equals_and_hashes_like_the_original(
    a: CounterState, extra_ids: set[str]
) -> None:
    padding = dict.fromkeys(extra_ids, 0)
    padded = CounterState.from_maps(padding | dict(a.increments), padding | dict(a.decrements))
    assert (padded, hash(padded)) == (a, hash(a))

"""PNCounter's fast write path (add/subtract) and its pending delta (take_delta)."""

from __future__ import annotations

from typing import Any

import pytest

from dcounter_crdt import (
    MAX_COUNT,
    CounterState,
    CountOverflowError,
    InvalidAmountError,
    PNCounter,
)

BAD_AMOUNTS = [0, -1, True, 1.0, "1", None]


def test_add_and_subtract_change_the_value() -> None:
    counter = PNCounter("a", CounterState.from_maps({"b": 10}))
    counter.add()
    counter.add(by=5)
    counter.subtract(2)
    assert counter.value == 14


def test_add_and_subtract_reach_the_snapshot() -> None:
    counter = PNCounter("a", CounterState.from_maps({"a": 1, "b": 10}))
    counter.add(4)
    counter.subtract(3)
    assert counter.snapshot() == CounterState.from_maps({"a": 5, "b": 10}, {"a": 3})


def test_new_counter_has_an_empty_pending_delta() -> None:
    assert PNCounter("a").pending_delta == CounterState.empty()


def test_restored_state_is_not_pending() -> None:
    counter = PNCounter("a", CounterState.from_maps({"a": 7, "b": 1}, {"a": 2}))
    assert counter.take_delta() == CounterState.empty()


def test_pending_delta_holds_the_own_totals_after_local_updates() -> None:
    counter = PNCounter("a", CounterState.from_maps({"a": 7, "b": 1}, {"a": 2}))
    counter.add(3)
    counter.subtract(1)
    assert counter.pending_delta == CounterState.from_maps({"a": 10}, {"a": 3})


def test_pending_delta_holds_only_the_side_that_changed() -> None:
    counter = PNCounter("a", CounterState.from_maps({"a": 7}, {"a": 2}))
    counter.subtract()
    assert counter.pending_delta == CounterState.from_maps(None, {"a": 3})


def test_reading_the_pending_delta_does_not_reset_it() -> None:
    counter = PNCounter("a")
    counter.add(2)
    first = counter.pending_delta
    assert counter.pending_delta == first == CounterState.from_maps({"a": 2})


def test_take_delta_returns_the_pending_delta_and_resets_it() -> None:
    counter = PNCounter("a")
    counter.add(2)
    assert (counter.take_delta(), counter.pending_delta) == (
        CounterState.from_maps({"a": 2}),
        CounterState.empty(),
    )


def test_updates_after_a_take_start_the_next_delta() -> None:
    counter = PNCounter("a")
    counter.add(2)
    counter.take_delta()
    counter.subtract()
    assert counter.take_delta() == CounterState.from_maps(None, {"a": 1})


def test_increment_and_decrement_join_the_pending_delta_too() -> None:
    counter = PNCounter("a")
    counter.increment(2)
    counter.decrement(5)
    counter.add()
    assert counter.take_delta() == CounterState.from_maps({"a": 3}, {"a": 5})


def test_merge_that_raises_the_own_total_with_nothing_pending_adds_nothing_pending() -> None:
    counter = PNCounter("a")
    counter.merge(CounterState.from_maps({"a": 10}, {"a": 4}))
    assert counter.pending_delta == CounterState.empty()


def test_merge_that_raises_the_own_total_while_pending_carries_the_higher_total() -> None:
    counter = PNCounter("a")
    counter.add(2)
    counter.merge_delta(CounterState.from_maps({"a": 10}))
    assert counter.take_delta() == CounterState.from_maps({"a": 10})


def test_merge_of_other_replicas_does_not_touch_the_pending_delta() -> None:
    counter = PNCounter("a")
    counter.add()
    counter.merge(CounterState.from_maps({"b": 5}, {"c": 1}))
    assert counter.pending_delta == CounterState.from_maps({"a": 1})


@pytest.mark.parametrize("amount", BAD_AMOUNTS)
@pytest.mark.parametrize("method", ["add", "subtract"])
def test_bad_amount_raises_and_changes_nothing(method: str, amount: Any) -> None:
    counter = PNCounter("a")
    counter.add(3)
    with pytest.raises(InvalidAmountError):
        getattr(counter, method)(amount)
    assert (counter.value, counter.pending_delta) == (3, CounterState.from_maps({"a": 3}))


@pytest.mark.parametrize(
    ("method", "state"),
    [
        ("add", CounterState.from_maps({"a": MAX_COUNT - 1})),
        ("subtract", CounterState.from_maps(None, {"a": MAX_COUNT - 1})),
    ],
)
def test_overflow_raises_and_changes_nothing(method: str, state: CounterState) -> None:
    counter = PNCounter("a", state)
    with pytest.raises(CountOverflowError, match="exceed the maximum count"):
        getattr(counter, method)(2)
    assert (counter.snapshot(), counter.pending_delta) == (state, CounterState.empty())


def test_add_up_to_max_count_is_allowed() -> None:
    counter = PNCounter("a", CounterState.from_maps({"a": MAX_COUNT - 1}))
    counter.add()
    assert counter.take_delta() == CounterState.from_maps({"a": MAX_COUNT})


def test_contribution_counts_the_fast_path() -> None:
    counter = PNCounter("a", CounterState.from_maps({"b": 4}))
    counter.add(5)
    counter.subtract(7)
    assert (counter.contribution(), counter.contribution("a")) == (-2, -2)


def test_value_is_right_after_fast_updates_then_a_merge() -> None:
    counter = PNCounter("a", CounterState.from_maps({"a": 1}))
    counter.add(2)
    counter.merge(CounterState.from_maps({"a": 2, "b": 10}, {"c": 4}))
    counter.subtract()
    assert counter.value == 3 + 10 - 4 - 1

"""PNCounter: local updates, their deltas, bounds, bad input, merge and snapshots."""

from __future__ import annotations

import enum
from typing import Any

import pytest

from dcounter_crdt import (
    MAX_COUNT,
    CounterState,
    CountOverflowError,
    InvalidAmountError,
    InvalidReplicaIdError,
    InvalidStateError,
    PNCounter,
)

BAD_AMOUNTS = [0, -1, True, False, 1.0, "1", None, 2**70 * 1.0]


class _Amount(enum.IntEnum):
    FOUR = 4


def test_new_counter_is_empty() -> None:
    counter = PNCounter("a")
    assert (counter.value, counter.snapshot()) == (0, CounterState.empty())


def test_replica_id_is_kept() -> None:
    assert PNCounter("node-1#x").replica_id == "node-1#x"


@pytest.mark.parametrize("replica_id", ["", None, 1, b"a"])
def test_constructor_rejects_bad_replica_id(replica_id: Any) -> None:
    with pytest.raises(InvalidReplicaIdError):
        PNCounter(replica_id)


def test_increment_defaults_to_one() -> None:
    counter = PNCounter("a")
    counter.increment()
    assert counter.value == 1


def test_increment_by_n_adds_n() -> None:
    counter = PNCounter("a")
    counter.increment(by=40)
    counter.increment(2)
    assert counter.value == 42


def test_decrement_by_n_subtracts_n() -> None:
    counter = PNCounter("a")
    counter.increment(10)
    counter.decrement(by=3)
    assert counter.value == 7


def test_value_can_be_negative() -> None:
    counter = PNCounter("a")
    counter.decrement(5)
    assert counter.value == -5


def test_increment_returns_a_delta_with_only_the_new_total() -> None:
    counter = PNCounter("a", CounterState.from_maps({"a": 2, "b": 9}, {"a": 1}))
    assert counter.increment(3) == CounterState.from_maps({"a": 5})


def test_decrement_returns_a_delta_with_only_the_new_total() -> None:
    counter = PNCounter("a", CounterState.from_maps({"a": 2, "b": 9}, {"a": 1}))
    assert counter.decrement(3) == CounterState.from_maps(None, {"a": 4})


def test_delta_is_not_changed_by_later_updates() -> None:
    counter = PNCounter("a")
    delta = counter.increment()
    counter.increment()
    assert delta.increments == {"a": 1}


def test_int_subclass_amount_is_accepted_as_plain_int() -> None:
    counter = PNCounter("a")
    delta = counter.increment(_Amount.FOUR)
    assert (counter.value, type(delta.increments["a"])) == (4, int)


@pytest.mark.parametrize("amount", BAD_AMOUNTS)
def test_increment_rejects_bad_amount(amount: Any) -> None:
    with pytest.raises(InvalidAmountError):
        PNCounter("a").increment(amount)


@pytest.mark.parametrize("amount", BAD_AMOUNTS)
def test_decrement_rejects_bad_amount(amount: Any) -> None:
    with pytest.raises(InvalidAmountError):
        PNCounter("a").decrement(amount)


def test_bad_amount_leaves_state_unchanged() -> None:
    counter = PNCounter("a")
    counter.increment(3)
    with pytest.raises(InvalidAmountError):
        counter.increment(-1)
    assert (counter.value, counter.snapshot()) == (3, CounterState.from_maps({"a": 3}))


def test_increment_up_to_max_count_is_allowed() -> None:
    counter = PNCounter("a", CounterState.from_maps({"a": MAX_COUNT - 1}))
    assert counter.increment() == CounterState.from_maps({"a": MAX_COUNT})


def test_decrement_up_to_max_count_is_allowed() -> None:
    counter = PNCounter("a")
    counter.decrement(MAX_COUNT)
    assert counter.value == -MAX_COUNT


def test_increment_past_max_count_raises_overflow() -> None:
    counter = PNCounter("a", CounterState.from_maps({"a": MAX_COUNT}))
    with pytest.raises(CountOverflowError, match="exceed the maximum count"):
        counter.increment()


def test_decrement_past_max_count_raises_overflow() -> None:
    counter = PNCounter("a", CounterState.from_maps(None, {"a": MAX_COUNT - 1}))
    with pytest.raises(CountOverflowError):
        counter.decrement(2)


def test_increment_overflow_leaves_state_unchanged() -> None:
    before = CounterState.from_maps({"a": MAX_COUNT - 5, "b": 1}, {"a": 2})
    counter = PNCounter("a", before)
    with pytest.raises(CountOverflowError):
        counter.increment(6)
    assert (counter.value, counter.snapshot()) == (before.value, before)


def test_decrement_overflow_leaves_state_unchanged() -> None:
    before = CounterState.from_maps({"a": 3}, {"a": MAX_COUNT})
    counter = PNCounter("a", before)
    with pytest.raises(CountOverflowError):
        counter.decrement()
    assert (counter.value, counter.snapshot()) == (before.value, before)


def test_overflow_is_per_replica_not_on_the_value() -> None:
    counter = PNCounter("b", CounterState.from_maps({"a": MAX_COUNT}))
    counter.increment(MAX_COUNT)
    assert counter.value == 2 * MAX_COUNT


def test_contribution_defaults_to_own_replica() -> None:
    counter = PNCounter("a", CounterState.from_maps({"b": 7}))
    counter.increment(5)
    counter.decrement(2)
    assert counter.contribution() == 3


def test_contribution_of_another_replica() -> None:
    counter = PNCounter("a", CounterState.from_maps({"b": 7}, {"b": 9}))
    assert counter.contribution("b") == -2


def test_contribution_of_unknown_replica_is_zero() -> None:
    assert PNCounter("a").contribution("nobody") == 0


def test_constructor_restores_a_state() -> None:
    state = CounterState.from_maps({"a": 4, "b": 6}, {"b": 1})
    counter = PNCounter("c", state)
    assert (counter.value, counter.snapshot()) == (9, state)


def test_constructor_rejects_a_non_state() -> None:
    with pytest.raises(InvalidStateError):
        PNCounter("a", {"a": 1})  # type: ignore[arg-type]


def test_snapshot_is_not_changed_by_later_updates() -> None:
    counter = PNCounter("a")
    counter.increment()
    snapshot = counter.snapshot()
    counter.increment()
    counter.merge(CounterState.from_maps({"b": 3}))
    assert snapshot == CounterState.from_maps({"a": 1})


def test_snapshot_maps_are_read_only() -> None:
    counter = PNCounter("a")
    counter.increment()
    with pytest.raises(TypeError):
        counter.snapshot().increments["a"] = 5  # type: ignore[index]


def test_merge_returns_true_when_an_entry_rises() -> None:
    counter = PNCounter("a", CounterState.from_maps({"b": 1}))
    assert counter.merge(CounterState.from_maps({"b": 2})) is True


def test_merge_returns_false_when_nothing_rises() -> None:
    counter = PNCounter("a", CounterState.from_maps({"b": 2}, {"c": 1}))
    assert counter.merge(CounterState.from_maps({"b": 1}, {"c": 1})) is False


def test_merge_of_the_empty_state_changes_nothing() -> None:
    counter = PNCounter("a")
    counter.increment()
    assert (counter.merge(CounterState.empty()), counter.value) == (False, 1)


def test_merge_takes_pointwise_maxima() -> None:
    counter = PNCounter("a", CounterState.from_maps({"a": 5, "b": 1}, {"a": 2}))
    counter.merge(CounterState.from_maps({"a": 3, "b": 4}, {"a": 6, "c": 1}))
    assert counter.snapshot() == CounterState.from_maps({"a": 5, "b": 4}, {"a": 6, "c": 1})


def test_merge_updates_the_value() -> None:
    counter = PNCounter("a", CounterState.from_maps({"a": 5, "b": 1}, {"a": 2}))
    counter.merge(CounterState.from_maps({"a": 3, "b": 4}, {"a": 6, "c": 1}))
    assert counter.value == 2


def test_value_is_right_after_a_merge_then_an_update() -> None:
    counter = PNCounter("a", CounterState.from_maps({"a": 1}))
    counter.merge(CounterState.from_maps({"b": 10}, {"c": 4}))
    counter.decrement(2)
    assert counter.value == 5


def test_merge_rejects_a_non_state() -> None:
    with pytest.raises(InvalidStateError, match="CounterState"):
        PNCounter("a").merge({"b": 1})  # type: ignore[arg-type]


def test_merge_raises_own_entry_seen_elsewhere() -> None:
    # A restarted replica reusing its id learns its old totals back from peers.
    counter = PNCounter("a")
    counter.merge(CounterState.from_maps({"a": 10}))
    assert counter.increment() == CounterState.from_maps({"a": 11})


def test_merge_delta_returns_the_entries_that_won() -> None:
    counter = PNCounter("a", CounterState.from_maps({"a": 5, "b": 1}, {"a": 2}))
    won = counter.merge_delta(CounterState.from_maps({"a": 3, "b": 4}, {"a": 6, "c": 1}))
    assert won == CounterState.from_maps({"b": 4}, {"a": 6, "c": 1})


def test_merge_delta_is_empty_when_nothing_rises() -> None:
    counter = PNCounter("a", CounterState.from_maps({"b": 2}))
    assert counter.merge_delta(CounterState.from_maps({"b": 2})) == CounterState.empty()


def test_delta_since_holds_what_the_known_state_lacks() -> None:
    counter = PNCounter("a", CounterState.from_maps({"a": 5, "b": 1}, {"c": 2}))
    known = CounterState.from_maps({"a": 5, "b": 3}, {"c": 1})
    assert counter.delta_since(known) == CounterState.from_maps(None, {"c": 2})


def test_repr_shows_replica_value_and_replica_count() -> None:
    counter = PNCounter("a", CounterState.from_maps({"b": 2}, {"c": 5}))
    counter.increment()
    assert repr(counter) == "PNCounter(replica_id='a', value=-2, replicas=3)"

"""GCounter: the grow-only building block of the PN-counter."""

from __future__ import annotations

from typing import Any

import pytest

from dcounter_crdt import (
    MAX_COUNT,
    CountOverflowError,
    GCounter,
    InvalidAmountError,
    InvalidReplicaIdError,
    InvalidStateError,
)


def test_new_gcounter_counts_nothing() -> None:
    counter = GCounter()
    assert (counter.value, dict(counter.counts())) == (0, {})


def test_increment_returns_the_replicas_new_total() -> None:
    counter = GCounter({"a": 2})
    assert counter.increment("a", 3) == 5


def test_value_sums_every_replica() -> None:
    counter = GCounter({"a": 2, "b": 5})
    counter.increment("c")
    assert counter.value == 8


def test_count_of_unknown_replica_is_zero() -> None:
    assert GCounter({"a": 2}).count("b") == 0


def test_constructor_drops_zero_entries() -> None:
    assert dict(GCounter({"a": 0, "b": 1}).counts()) == {"b": 1}


def test_constructor_rejects_count_above_max() -> None:
    with pytest.raises(CountOverflowError):
        GCounter({"a": MAX_COUNT + 1})


@pytest.mark.parametrize("amount", [0, -3, True, 2.0])
def test_increment_rejects_bad_amount(amount: Any) -> None:
    with pytest.raises(InvalidAmountError):
        GCounter().increment("a", amount)


@pytest.mark.parametrize("replica_id", ["", 7])
def test_increment_rejects_bad_replica_id(replica_id: Any) -> None:
    with pytest.raises(InvalidReplicaIdError):
        GCounter().increment(replica_id)


def test_increment_past_max_count_raises_and_keeps_the_total() -> None:
    counter = GCounter({"a": MAX_COUNT})
    with pytest.raises(CountOverflowError):
        counter.increment("a")
    assert counter.count("a") == MAX_COUNT


def test_merge_takes_pointwise_maxima_and_reports_change() -> None:
    counter = GCounter({"a": 5, "b": 1})
    changed = counter.merge(GCounter({"a": 3, "b": 4, "c": 2}))
    assert (changed, dict(counter.counts())) == (True, {"a": 5, "b": 4, "c": 2})


def test_merge_reports_no_change_for_a_smaller_counter() -> None:
    assert GCounter({"a": 5}).merge({"a": 4}) is False


def test_merge_validates_a_plain_mapping() -> None:
    with pytest.raises(InvalidStateError):
        GCounter().merge({"a": -1})


def test_counts_is_a_read_only_copy() -> None:
    counter = GCounter({"a": 1})
    counts = counter.counts()
    counter.increment("a")
    with pytest.raises(TypeError):
        counts["a"] = 9  # type: ignore[index]
    assert counts == {"a": 1}


def test_repr_is_sorted() -> None:
    assert repr(GCounter({"b": 2, "a": 1})) == "GCounter({'a': 1, 'b': 2})"

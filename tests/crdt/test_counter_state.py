"""CounterState: validation at construction, canonical form, read-only access, helpers."""

from __future__ import annotations

import dataclasses
import enum
import pickle
from types import MappingProxyType
from typing import Any

import pytest

from dcounter_crdt import (
    MAX_COUNT,
    CounterState,
    CountOverflowError,
    CRDTError,
    InvalidReplicaIdError,
    InvalidStateError,
)


class _Small(enum.IntEnum):
    THREE = 3


def test_max_count_is_the_uint64_maximum() -> None:
    assert MAX_COUNT == 18_446_744_073_709_551_615


def test_from_maps_accepts_max_count() -> None:
    state = CounterState.from_maps({"a": MAX_COUNT}, {"b": MAX_COUNT})
    assert state.increments == {"a": MAX_COUNT}
    assert state.decrements == {"b": MAX_COUNT}


@pytest.mark.parametrize("field", ["increments", "decrements"])
def test_from_maps_rejects_count_above_max(field: str) -> None:
    with pytest.raises(CountOverflowError, match="exceeds the maximum count"):
        CounterState.from_maps(**{field: {"a": MAX_COUNT + 1}})


def test_from_maps_rejects_negative_count() -> None:
    with pytest.raises(InvalidStateError, match="negative"):
        CounterState.from_maps({"a": -1})


@pytest.mark.parametrize("count", [True, False, 1.0, "1", None, b"1"])
def test_from_maps_rejects_non_int_count(count: Any) -> None:
    with pytest.raises(InvalidStateError, match="must be an int"):
        CounterState.from_maps(decrements={"a": count})


@pytest.mark.parametrize("replica_id", ["", 1, None, b"a", ("a",)])
def test_from_maps_rejects_bad_replica_id(replica_id: Any) -> None:
    with pytest.raises(InvalidReplicaIdError):
        CounterState.from_maps({replica_id: 1})


def test_from_maps_rejects_non_mapping() -> None:
    with pytest.raises(InvalidStateError, match="must be a mapping"):
        CounterState.from_maps([("a", 1)])  # type: ignore[arg-type]


def test_constructor_validates_like_from_maps() -> None:
    with pytest.raises(InvalidReplicaIdError):
        CounterState({"": 1})


def test_dataclasses_replace_validates() -> None:
    state = CounterState.from_maps({"a": 1})
    with pytest.raises(CountOverflowError):
        dataclasses.replace(state, decrements={"a": MAX_COUNT + 1})


def test_from_maps_with_none_gives_the_empty_state() -> None:
    assert CounterState.from_maps(None, None) == CounterState.empty()


def test_from_maps_drops_zero_entries() -> None:
    state = CounterState.from_maps({"a": 0, "b": 2}, {"c": 0})
    assert dict(state.increments) == {"b": 2}
    assert dict(state.decrements) == {}


def test_states_differing_only_by_zero_entries_are_equal() -> None:
    assert CounterState.from_maps({"a": 1, "z": 0}, {"y": 0}) == CounterState.from_maps({"a": 1})


def test_states_differing_only_by_zero_entries_hash_equal() -> None:
    one = CounterState.from_maps({"a": 1, "z": 0}, {"y": 0})
    other = CounterState.from_maps({"a": 1})
    assert hash(one) == hash(other)


def test_states_with_different_counts_are_not_equal() -> None:
    assert CounterState.from_maps({"a": 1}) != CounterState.from_maps({"a": 2})


def test_increments_and_decrements_are_not_interchangeable() -> None:
    assert CounterState.from_maps({"a": 1}) != CounterState.from_maps(None, {"a": 1})


def test_state_does_not_equal_other_types() -> None:
    assert CounterState.empty() != {}


def test_from_maps_copies_its_input() -> None:
    source = {"a": 1}
    state = CounterState.from_maps(source)
    source["a"] = 5
    assert state.increments == {"a": 1}


def test_state_maps_are_read_only() -> None:
    state = CounterState.from_maps({"a": 1})
    with pytest.raises(TypeError):
        state.increments["a"] = 2  # type: ignore[index]


def test_state_maps_are_mapping_proxies() -> None:
    state = CounterState.from_maps({"a": 1}, {"b": 2})
    assert isinstance(state.increments, MappingProxyType)
    assert isinstance(state.decrements, MappingProxyType)


def test_state_attributes_cannot_be_reassigned() -> None:
    state = CounterState.from_maps({"a": 1})
    with pytest.raises(dataclasses.FrozenInstanceError):
        state.increments = {"a": 2}  # type: ignore[misc]


def test_int_subclass_counts_are_stored_as_plain_ints() -> None:
    state = CounterState.from_maps({"a": _Small.THREE})
    assert type(state.increments["a"]) is int


def test_empty_state_is_falsy() -> None:
    assert not CounterState.empty()


def test_state_with_only_decrements_is_truthy() -> None:
    assert CounterState.from_maps(None, {"a": 1})


def test_empty_state_has_value_zero_and_no_replicas() -> None:
    empty = CounterState.empty()
    assert (empty.value, empty.replicas()) == (0, frozenset())


def test_value_is_increments_minus_decrements() -> None:
    state = CounterState.from_maps({"a": 3, "b": 4}, {"a": 10})
    assert state.value == -3


def test_value_is_exact_beyond_uint64() -> None:
    state = CounterState.from_maps({"a": MAX_COUNT, "b": MAX_COUNT})
    assert state.value == 2 * MAX_COUNT


def test_replicas_lists_ids_from_both_maps() -> None:
    state = CounterState.from_maps({"a": 1, "b": 1}, {"b": 2, "c": 3})
    assert state.replicas() == frozenset({"a", "b", "c"})


def test_contribution_is_one_replicas_net_count() -> None:
    state = CounterState.from_maps({"a": 5, "b": 1}, {"a": 7})
    assert (state.contribution("a"), state.contribution("b"), state.contribution("x")) == (
        -2,
        1,
        0,
    )


def test_merged_takes_pointwise_maxima() -> None:
    left = CounterState.from_maps({"a": 5, "b": 1}, {"a": 2})
    right = CounterState.from_maps({"a": 3, "c": 4}, {"a": 6, "d": 1})
    assert left.merged(right) == CounterState.from_maps({"a": 5, "b": 1, "c": 4}, {"a": 6, "d": 1})


def test_merged_returns_self_when_other_adds_nothing() -> None:
    state = CounterState.from_maps({"a": 5}, {"b": 1})
    assert state.merged(CounterState.from_maps({"a": 4})) is state


def test_dominates_is_true_for_a_larger_state() -> None:
    big = CounterState.from_maps({"a": 5, "b": 1}, {"c": 2})
    assert big.dominates(CounterState.from_maps({"a": 5}, {"c": 1}))


def test_dominates_is_false_when_one_entry_is_higher() -> None:
    big = CounterState.from_maps({"a": 5, "b": 1}, {"c": 2})
    assert not big.dominates(CounterState.from_maps({"a": 5}, {"c": 3}))


def test_delta_since_holds_only_the_higher_entries() -> None:
    new = CounterState.from_maps({"a": 5, "b": 1}, {"c": 2})
    old = CounterState.from_maps({"a": 5, "b": 0}, {"c": 1})
    assert new.delta_since(old) == CounterState.from_maps({"b": 1}, {"c": 2})


def test_repr_is_sorted_and_exact() -> None:
    state = CounterState.from_maps({"b": 2, "a": 1}, {"c": 3})
    assert repr(state) == "CounterState(increments={'a': 1, 'b': 2}, decrements={'c': 3})"


def test_repr_of_empty_state() -> None:
    assert repr(CounterState.empty()) == "CounterState(increments={}, decrements={})"


def test_state_survives_pickling() -> None:
    state = CounterState.from_maps({"a": MAX_COUNT}, {"b": 2})
    assert pickle.loads(pickle.dumps(state)) == state


def test_errors_share_the_package_base() -> None:
    errors = (CountOverflowError, InvalidReplicaIdError, InvalidStateError)
    assert all(issubclass(error, CRDTError) for error in errors)


def test_count_overflow_is_an_overflow_error() -> None:
    assert issubclass(CountOverflowError, OverflowError)

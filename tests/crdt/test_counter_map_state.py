"""CounterMapState: validation, canonical form, equality and the immutable merge."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from dcounter_crdt import CounterMapState, CounterState, InvalidKeyError, InvalidStateError


def test_empty_states_are_dropped() -> None:
    state = CounterMapState({"x": CounterState(), "y": CounterState({"a": 1})})
    assert (dict(state.counters), len(state)) == ({"y": CounterState({"a": 1})}, 1)


def test_maps_counting_the_same_are_equal_and_hash_alike() -> None:
    padded = CounterMapState({"x": CounterState({"a": 1}), "y": CounterState()})
    plain = CounterMapState({"x": CounterState({"a": 1})})
    assert (padded, hash(padded)) == (plain, hash(plain))


def test_empty_map_is_falsy_and_the_default() -> None:
    assert not CounterMapState()
    assert CounterMapState() == CounterMapState.empty()


@pytest.mark.parametrize("key", [None, 1, b"x", "", "\udfff"])
def test_bad_names_are_refused(key: Any) -> None:
    with pytest.raises(InvalidKeyError):
        CounterMapState({key: CounterState({"a": 1})})


@pytest.mark.parametrize("counters", [[("x", CounterState())], "x", None])
def test_a_non_mapping_is_refused(counters: Any) -> None:
    with pytest.raises(InvalidStateError, match="mapping"):
        CounterMapState(counters)


def test_a_value_that_is_not_a_counter_state_is_refused() -> None:
    with pytest.raises(InvalidStateError, match="CounterState"):
        CounterMapState({"x": {"a": 1}})  # type: ignore[dict-item]


def test_the_callers_mapping_is_copied_and_the_view_is_read_only() -> None:
    source = {"x": CounterState({"a": 1})}
    state = CounterMapState(source)
    source["y"] = CounterState({"a": 2})
    assert list(state.counters) == ["x"]
    with pytest.raises(TypeError):
        state.counters["y"] = CounterState({"a": 2})  # type: ignore[index]


def test_get_and_value_of_unknown_and_known_names() -> None:
    state = CounterMapState({"default": CounterState({"a": 5}, {"b": 2})})
    assert (state.value(), state.value("x"), state.get("x")) == (3, 0, CounterState())


def test_merged_takes_each_counters_maximum() -> None:
    a = CounterMapState({"x": CounterState({"a": 5}), "y": CounterState({"b": 1})})
    b = CounterMapState({"x": CounterState({"a": 3, "c": 2}), "z": CounterState({"d": 1})})
    assert a.merged(b) == CounterMapState(
        {
            "x": CounterState({"a": 5, "c": 2}),
            "y": CounterState({"b": 1}),
            "z": CounterState({"d": 1}),
        }
    )


def test_merged_returns_self_when_nothing_changes() -> None:
    a = CounterMapState({"x": CounterState({"a": 5})})
    assert a.merged(CounterMapState({"x": CounterState({"a": 1})})) is a


def test_pickle_round_trip() -> None:
    state = CounterMapState({"x": CounterState({"a": 5}, {"b": 1})})
    assert pickle.loads(pickle.dumps(state)) == state


def test_repr_is_sorted() -> None:
    state = CounterMapState({"y": CounterState({"a": 1}), "x": CounterState({"a": 2})})
    assert repr(state) == (
        "CounterMapState({'x': CounterState(increments={'a': 2}, decrements={}), "
        "'y': CounterState(increments={'a': 1}, decrements={})})"
    )

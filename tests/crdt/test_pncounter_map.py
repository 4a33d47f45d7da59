"""PNCounterMap: counters by name, their deltas, the key limits and bad input."""

from __future__ import annotations

from typing import Any

import pytest

from dcounter_crdt import (
    DEFAULT_KEY,
    DEFAULT_MAX_KEY_LENGTH,
    DEFAULT_MAX_KEYS,
    MAX_COUNT,
    CounterMapState,
    CounterState,
    CountOverflowError,
    InvalidAmountError,
    InvalidKeyError,
    InvalidLimitError,
    InvalidReplicaIdError,
    InvalidStateError,
    KeyLimitError,
    KeyTooLongError,
    PNCounterMap,
    TooManyKeysError,
)

BAD_KEYS = [None, 1, b"page", "", "\ud800"]


def _map(**counters: CounterState) -> CounterMapState:
    return CounterMapState(counters)


def test_new_map_is_empty() -> None:
    counters = PNCounterMap("a")
    assert (len(counters), counters.keys(), counters.snapshot()) == (0, [], CounterMapState())


def test_default_key_is_default() -> None:
    assert DEFAULT_KEY == "default"


def test_value_and_contribution_default_to_the_default_key() -> None:
    counters = PNCounterMap("a")
    counters.add(DEFAULT_KEY, 5)
    counters.add("other", 100)
    assert (counters.value(), counters.contribution()) == (5, 5)


def test_unknown_key_counts_zero() -> None:
    counters = PNCounterMap("a")
    assert (counters.value("nope"), counters.counter_state("nope")) == (0, CounterState())
    assert "nope" not in counters


def test_each_key_counts_on_its_own() -> None:
    counters = PNCounterMap("a")
    counters.add("x", 3)
    counters.subtract("y", 2)
    counters.add("x")
    assert counters.values() == {"x": 4, "y": -2}


def test_add_and_subtract_return_the_new_value() -> None:
    counters = PNCounterMap("a", _map(x=CounterState({"b": 7}, {"b": 2})))
    assert counters.add("x", 3) == 8  # a held name, counted by another replica too
    assert counters.subtract("x") == 7
    assert counters.add("new", 2) == 2  # a name the map did not hold
    assert counters.subtract("other", 4) == -4
    assert counters.values() == {"x": 7, "new": 2, "other": -4}


def test_add_within_counts_either_way_and_returns_the_new_value() -> None:
    counters = PNCounterMap("a", _map(x=CounterState({"b": 7}, {"b": 2})))
    assert counters.add_within("x", 3, -10, 10) == 8
    assert counters.add_within("x", -18, -10, 10) == -10
    assert counters.add_within("new", -4, -10, 10) == -4
    assert counters.values() == {"x": -10, "new": -4}
    assert counters.pending_delta.counters.keys() == {"x", "new"}


@pytest.mark.parametrize(("key", "delta"), [("x", 3), ("x", -19), ("new", 11), ("new", -11)])
def test_add_within_leaves_the_map_unchanged_past_the_range(key: str, delta: int) -> None:
    before = _map(x=CounterState({"b": 7}, {"b": 2}))
    counters = PNCounterMap("a", before)
    assert counters.add_within(key, delta, -10, 7) is None
    assert (counters.snapshot(), counters.pending_delta) == (before, CounterMapState())


def test_add_within_by_zero_returns_the_value_and_changes_nothing() -> None:
    counters = PNCounterMap("a", _map(x=CounterState({"b": 7})))
    assert (counters.add_within("x", 0, 0, 9), counters.add_within("new", 0, 0, 9)) == (7, 0)
    assert (len(counters), counters.pending_delta) == (1, CounterMapState())


def test_add_within_refuses_what_add_refuses() -> None:
    counters = PNCounterMap("a", _map(x=CounterState({"a": MAX_COUNT})), max_keys=1)
    with pytest.raises(InvalidAmountError):
        counters.add_within("x", 1.0, -10, 10)  # type: ignore[arg-type]
    with pytest.raises(CountOverflowError):
        counters.add_within("x", 1, 0, 2 * MAX_COUNT)
    with pytest.raises(TooManyKeysError):
        counters.add_within("new", 1, -10, 10)
    with pytest.raises(InvalidKeyError):
        counters.add_within("", 1, -10, 10)
    assert counters.pending_delta == CounterMapState()


def test_keys_are_sorted_and_listed_once() -> None:
    counters = PNCounterMap("a")
    for key in ["b", "a", "c", "a"]:
        counters.add(key)
    assert (counters.keys(), len(counters), "a" in counters) == (["a", "b", "c"], 3, True)


def test_a_key_whose_value_returns_to_zero_stays() -> None:
    counters = PNCounterMap("a")
    counters.add("x")
    counters.subtract("x")
    assert (counters.keys(), counters.value("x")) == (["x"], 0)


def test_increment_returns_the_delta_of_that_key_only() -> None:
    counters = PNCounterMap("a", _map(x=CounterState({"a": 2, "b": 9})))
    counters.add("y")
    assert counters.increment("x", 3) == _map(x=CounterState({"a": 5}))


def test_decrement_returns_the_delta_of_that_key_only() -> None:
    counters = PNCounterMap("a")
    assert counters.decrement("x", 4) == _map(x=CounterState.from_maps(None, {"a": 4}))


def test_contribution_of_another_replica_in_one_key() -> None:
    counters = PNCounterMap("a", _map(x=CounterState({"b": 7}, {"b": 9})))
    assert counters.contribution("x", "b") == -2


def test_take_delta_holds_every_updated_key_and_resets() -> None:
    counters = PNCounterMap("a", _map(z=CounterState({"b": 1})))
    counters.add("x", 2)
    counters.subtract("y")
    counters.increment("x")
    expected = _map(x=CounterState({"a": 3}), y=CounterState.from_maps(None, {"a": 1}))
    assert counters.pending_delta == expected
    assert (counters.take_delta(), counters.pending_delta) == (expected, CounterMapState())


def test_restored_and_merged_keys_are_not_pending() -> None:
    counters = PNCounterMap("a", _map(x=CounterState({"a": 4})))
    counters.merge(_map(y=CounterState({"a": 2, "b": 1})))
    assert counters.take_delta() == CounterMapState()


def test_merge_delta_returns_per_key_winners() -> None:
    counters = PNCounterMap("a", _map(x=CounterState({"a": 5, "b": 1})))
    won = counters.merge_delta(_map(x=CounterState({"a": 3, "b": 4}), y=CounterState({"c": 1})))
    assert won == _map(x=CounterState({"b": 4}), y=CounterState({"c": 1}))


def test_merge_delta_is_empty_when_nothing_rises() -> None:
    state = _map(x=CounterState({"b": 2}))
    assert PNCounterMap("a", state).merge_delta(state) == CounterMapState()


def test_delta_since_holds_what_the_known_map_lacks() -> None:
    counters = PNCounterMap("a", _map(x=CounterState({"a": 5}), y=CounterState({"b": 1})))
    known = _map(x=CounterState({"a": 5}), z=CounterState({"c": 1}))
    assert counters.delta_since(known) == _map(y=CounterState({"b": 1}))


def test_snapshot_is_not_changed_by_later_updates() -> None:
    counters = PNCounterMap("a")
    counters.add("x")
    snapshot = counters.snapshot()
    counters.add("x")
    counters.add("y")
    assert snapshot == _map(x=CounterState({"a": 1}))


@pytest.mark.parametrize("key", BAD_KEYS)
def test_write_rejects_a_bad_key(key: Any) -> None:
    counters = PNCounterMap("a")
    with pytest.raises(InvalidKeyError):
        counters.add(key)
    assert len(counters) == 0


@pytest.mark.parametrize("key", BAD_KEYS)
def test_read_rejects_a_bad_key(key: Any) -> None:
    # An empty or non-UTF-8 str is merely unknown to a read; other types are misuse.
    if isinstance(key, str):
        assert PNCounterMap("a").value(key) == 0
    else:
        with pytest.raises(InvalidKeyError):
            PNCounterMap("a").value(key)


def test_str_subclass_key_is_the_same_key() -> None:
    class Name(str):
        pass

    counters = PNCounterMap("a")
    counters.add("x")
    counters.add(Name("x"))
    assert (counters.values(), type(counters.keys()[0])) == ({"x": 2}, str)


@pytest.mark.parametrize("amount", [0, -1, True, 1.5])
def test_bad_amount_on_a_new_key_leaves_no_key(amount: Any) -> None:
    counters = PNCounterMap("a")
    with pytest.raises(InvalidAmountError):
        counters.add("x", amount)
    assert (len(counters), counters.pending_delta) == (0, CounterMapState())


def test_overflow_leaves_the_key_unchanged() -> None:
    before = _map(x=CounterState({"a": MAX_COUNT}))
    counters = PNCounterMap("a", before)
    with pytest.raises(CountOverflowError):
        counters.increment("x")
    assert (counters.snapshot(), counters.pending_delta) == (before, CounterMapState())


def test_default_limits() -> None:
    counters = PNCounterMap("a")
    assert (counters.max_keys, counters.max_key_length) == (DEFAULT_MAX_KEYS, 256)
    assert DEFAULT_MAX_KEY_LENGTH == 256


@pytest.mark.parametrize("limit", [0, -1, True, 1.5, "3", None])
@pytest.mark.parametrize("option", ["max_keys", "max_key_length"])
def test_bad_limit_is_refused(option: str, limit: Any) -> None:
    with pytest.raises(InvalidLimitError, match=option):
        PNCounterMap("a", **{option: limit})


def test_bad_replica_id_is_refused() -> None:
    with pytest.raises(InvalidReplicaIdError):
        PNCounterMap("")


def test_key_of_exactly_max_key_length_bytes_is_accepted() -> None:
    counters = PNCounterMap("a", max_key_length=8)
    counters.add("é" * 4)  # 4 characters, 8 UTF-8 bytes
    assert counters.keys() == ["é" * 4]


@pytest.mark.parametrize("key", ["k" * 9, "é" * 5])
def test_key_over_max_key_length_bytes_is_refused(key: str) -> None:
    counters = PNCounterMap("a", max_key_length=8)
    with pytest.raises(KeyTooLongError, match="max_key_length=8"):
        counters.add(key)
    assert len(counters) == 0


def test_new_key_past_max_keys_is_refused_and_old_keys_stay_writable() -> None:
    counters = PNCounterMap("a", max_keys=2)
    counters.add("x")
    counters.add("y")
    with pytest.raises(TooManyKeysError, match="max_keys=2"):
        counters.add("z")
    counters.add("x")
    assert counters.values() == {"x": 2, "y": 1}


def test_merge_past_max_keys_is_refused_and_changes_nothing() -> None:
    before = _map(x=CounterState({"b": 1}))
    counters = PNCounterMap("a", before, max_keys=2)
    incoming = _map(x=CounterState({"b": 5}), y=CounterState({"b": 1}), z=CounterState({"b": 1}))
    with pytest.raises(TooManyKeysError):
        counters.merge(incoming)
    with pytest.raises(TooManyKeysError):
        counters.merge_delta(incoming)
    assert counters.snapshot() == before


def test_merge_of_known_keys_at_the_limit_is_accepted() -> None:
    counters = PNCounterMap("a", _map(x=CounterState({"b": 1})), max_keys=1)
    assert counters.merge(_map(x=CounterState({"b": 5}))) is True


def test_merge_with_a_too_long_key_is_refused_and_changes_nothing() -> None:
    counters = PNCounterMap("a", max_key_length=4)
    incoming = CounterMapState({"ok": CounterState({"b": 1}), "too-long": CounterState({"b": 1})})
    with pytest.raises(KeyTooLongError):
        counters.merge(incoming)
    assert len(counters) == 0


def test_state_past_the_limits_is_refused_by_the_constructor() -> None:
    with pytest.raises(TooManyKeysError):
        PNCounterMap("a", _map(x=CounterState({"b": 1}), y=CounterState({"b": 1})), max_keys=1)


@pytest.mark.parametrize("error", [KeyTooLongError, TooManyKeysError])
def test_limit_errors_share_a_base(error: type[Exception]) -> None:
    assert issubclass(error, KeyLimitError)


def test_merge_rejects_a_non_state() -> None:
    with pytest.raises(InvalidStateError, match="CounterMapState"):
        PNCounterMap("a").merge({"x": CounterState({"b": 1})})  # type: ignore[arg-type]


def test_repr_shows_replica_and_key_count() -> None:
    counters = PNCounterMap("a")
    counters.add("x")
    assert repr(counters) == "PNCounterMap(replica_id='a', keys=1)"

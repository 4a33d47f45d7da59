"""Where a node starts: its stored incarnation after a clean shutdown, else a new one."""

from __future__ import annotations

import pytest

from dcounter_crdt import CounterState
from dcounter_node import ConfigError, ForeignStorageError, StoredState
from dcounter_node._incarnation import is_incarnation_of, new_replica_id, starting_point

HERE = "127.0.0.1:7001"
COUNTS = CounterState.from_maps({"old": 3})
SEED = CounterState.from_maps({"seed": 1})


def test_a_new_store_starts_a_new_random_incarnation_at_this_address() -> None:
    start = starting_point(HERE, None, SEED, None)
    assert start.replica_id.startswith(HERE + "#")
    assert (start.state, start.new_incarnation, start.unclean_previous) == (SEED, True, None)


def test_a_clean_shutdown_resumes_the_stored_id_with_its_counts() -> None:
    start = starting_point(HERE, None, SEED, StoredState("r1", COUNTS))
    assert (start.replica_id, start.new_incarnation) == ("r1", False)
    assert start.state == SEED.merged(COUNTS)


def test_an_unclean_shutdown_keeps_the_counts_under_a_new_id() -> None:
    start = starting_point(HERE, None, SEED, StoredState("r1", COUNTS, clean_shutdown=False))
    assert start.replica_id != "r1"
    assert (start.new_incarnation, start.unclean_previous) == (True, "r1")
    assert start.state == SEED.merged(COUNTS)


def test_a_fixed_id_numbers_its_incarnations() -> None:
    fresh = starting_point(HERE, "orders", SEED, None)
    again = starting_point(HERE, "orders", SEED, StoredState("orders#2", COUNTS, False))
    assert (fresh.replica_id, again.replica_id) == ("orders", "orders#3")


def test_a_store_of_another_fixed_id_is_refused() -> None:
    with pytest.raises(ForeignStorageError, match="'billing'"):
        starting_point(HERE, "orders", SEED, StoredState("billing", COUNTS))


def test_only_the_series_of_a_fixed_id_counts_as_its_incarnations() -> None:
    assert [is_incarnation_of(x, "a") for x in ["a", "a#2", "a#10"]] == [True] * 3
    assert [is_incarnation_of(x, "a") for x in ["a#1", "a#02", "a#x", "ab#2", "b"]] == [False] * 5


def test_a_fixed_id_without_room_for_its_number_is_a_config_error() -> None:
    long_id = "x" * 254
    with pytest.raises(ConfigError, match="no room"):
        new_replica_id(HERE, long_id, long_id)

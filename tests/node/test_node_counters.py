"""A node's counters by name (``Node.counters``): local counting, listing, watching, limits."""

from __future__ import annotations

import asyncio
import gc

import pytest

from dcounter_crdt import (
    DEFAULT_KEY,
    CounterMapState,
    CounterState,
    InvalidAmountError,
    InvalidKeyError,
    KeyTooLongError,
    TooManyKeysError,
)
from dcounter_node import Node, NodeClosedError, NodeNotStartedError
from dcounter_protocol._memory import MemoryNetwork

from .conftest import address, fast_config


async def started(**config: int) -> Node:
    node = Node(MemoryNetwork().transport(address(0)), fast_config(**config))
    await node.start()
    return node


async def test_a_named_counter_counts_apart_from_the_default() -> None:
    node = await started()
    try:
        assert node.counters.increment("pages/home", 5) == 5
        assert node.counters.decrement("pages/home", 2) == 3
        assert node.counters.value("pages/home") == 3
        assert node.value == 0
        assert node.counters.value(DEFAULT_KEY) == 0
    finally:
        await node.close()


async def test_the_default_name_is_the_nodes_own_counter() -> None:
    node = await started()
    try:
        assert node.counters.increment(DEFAULT_KEY, 4) == 4
        node.increment(3)
        assert node.counters.value() == 7
        assert node.counters.state() == node.state()
        assert node.counters.snapshot() == CounterMapState.empty()
    finally:
        await node.close()


async def test_a_name_never_counted_reads_zero_and_is_absent() -> None:
    node = await started()
    try:
        assert node.counters.value("nothing") == 0
        assert node.counters.state("nothing") == CounterState.empty()
        assert "nothing" not in node.counters
        assert DEFAULT_KEY not in node.counters
        assert len(node.counters) == 0
    finally:
        await node.close()


async def test_names_are_listed_sorted_by_prefix_and_in_pages() -> None:
    node = await started()
    try:
        for name in ["b/2", "a/1", "b/1", "c", "b/3"]:
            node.counters.increment(name)
        node.increment()
        assert node.counters.names() == ["a/1", "b/1", "b/2", "b/3", "c", DEFAULT_KEY]
        assert node.counters.names("b/", limit=2) == ["b/1", "b/2"]
        assert node.counters.names("b/", after="b/2", limit=2) == ["b/3"]
        assert node.counters.items("a") == [("a/1", 1)]
        assert len(node.counters) == 6
    finally:
        await node.close()


async def test_a_name_counted_after_a_listing_appears_in_the_next() -> None:
    node = await started()
    try:
        node.counters.increment("m")
        assert node.counters.names() == ["m"]
        node.counters.increment("a")
        node.increment()
        assert node.counters.names() == ["a", DEFAULT_KEY, "m"]
        assert node.counters.decrement("b") == -1
        assert node.counters.increment("m") == 2  # a held name: the listing stays valid
        assert node.counters.names() == ["a", "b", DEFAULT_KEY, "m"]
    finally:
        await node.close()


async def test_names_past_the_nodes_limits_are_refused() -> None:
    node = await started(max_keys=2, max_key_length=8)
    try:
        node.counters.increment("one")
        node.counters.increment("two")
        with pytest.raises(TooManyKeysError):
            node.counters.increment("three")
        with pytest.raises(KeyTooLongError):
            node.counters.increment("x" * 9)
        with pytest.raises(InvalidKeyError):
            node.counters.increment("")
        assert node.counters.names() == ["one", "two"]
    finally:
        await node.close()


async def test_a_bad_amount_is_refused_and_creates_no_name() -> None:
    node = await started()
    try:
        with pytest.raises(InvalidAmountError):
            node.counters.increment("n", 0)
        assert "n" not in node.counters
    finally:
        await node.close()


@pytest.mark.parametrize("name", ["n", DEFAULT_KEY])
async def test_adding_within_a_range_counts_or_refuses_whole(name: str) -> None:
    node = await started()
    try:
        counters = node.counters
        assert counters.add_within(name, 5, -10, 10) == 5
        assert counters.add_within(name, -7, -10, 10) == -2
        state = counters.state(name)
        assert counters.add_within(name, 13, -10, 10) is None  # 11: past the top
        assert counters.add_within(name, -9, -10, 10) is None  # -11: past the bottom
        assert counters.add_within(name, 0, -10, 10) == -2  # counts nothing
        assert counters.state(name) == state
        assert counters.value(name) == -2
    finally:
        await node.close()


async def test_adding_within_a_range_to_a_new_name_lists_it_unless_refused() -> None:
    node = await started()
    try:
        counters = node.counters
        assert counters.names() == []
        assert counters.add_within("big", 11, -10, 10) is None
        assert counters.add_within("zero", 0, -10, 10) == 0
        assert counters.add_within("m", -1, -10, 10) == -1
        assert counters.names() == ["m"]
        assert (counters.has_local, "big" in counters, "zero" in counters) == (True, False, False)
    finally:
        await node.close()


async def test_writes_outside_the_nodes_lifetime_are_refused() -> None:
    node = Node(MemoryNetwork().transport(address(0)), fast_config())
    with pytest.raises(NodeNotStartedError):
        node.counters.increment("n")
    with pytest.raises(NodeNotStartedError):
        node.counters.add_within("n", 1, -10, 10)
    await node.start()
    await node.close()
    with pytest.raises(NodeClosedError):
        node.counters.increment("n")
    with pytest.raises(NodeClosedError):
        node.counters.add_within("n", 1, -10, 10)


async def test_local_writes_are_staged_once_to_both_sinks() -> None:
    node = await started()
    persisted: list[CounterMapState] = []
    pushed: list[CounterMapState] = []
    node.counters.persist = persisted.append
    node.counters.push = pushed.append
    try:
        node.counters.increment("a", 2)
        node.counters.increment("a", 3)
        waiting_before = node.counters.has_local
        staged = node.counters.stage_local()
        assert staged.value("a") == 5
        assert persisted == pushed == [staged]
        assert (waiting_before, node.counters.has_local) == (True, False)
        assert node.counters.stage_local() == CounterMapState.empty()
        assert len(persisted) == 1
    finally:
        await node.close()


async def test_merging_remote_counts_returns_what_changed() -> None:
    node = await started()
    try:
        node.counters.increment("a")
        remote = CounterMapState({"a": CounterState({"peer": 4}), "b": CounterState({"peer": 1})})
        persisted: list[CounterMapState] = []
        node.counters.persist = persisted.append
        won = node.counters.merge_remote(remote)
        assert won == remote
        assert persisted == [remote]
        assert node.counters.value("a") == 5
        assert node.counters.names() == ["a", "b"]
        assert node.counters.merge_remote(remote) == CounterMapState.empty()
    finally:
        await node.close()


async def test_a_merge_past_the_key_limit_changes_nothing() -> None:
    node = await started(max_keys=1)
    try:
        node.counters.increment("a")
        with pytest.raises(TooManyKeysError):
            node.counters.merge_remote(CounterMapState({"b": CounterState({"peer": 1})}))
        assert node.counters.names() == ["a"]
    finally:
        await node.close()


async def test_a_watch_sees_local_and_remote_changes_of_its_name_only() -> None:
    node = await started()
    try:
        watch = node.counters.watch("a")
        node.counters.increment("b")
        node.counters.increment("a", 2)
        node.counters.merge_remote(CounterMapState({"a": CounterState({"peer": 3})}))
        seen = [await asyncio.wait_for(anext(watch), 5) for _ in range(3)]
        assert seen == [0, 2, 5]
    finally:
        await node.close()


async def test_named_watches_end_when_the_node_closes() -> None:
    node = await started()
    watch = node.counters.watch("a", initial=False)
    await node.close()
    assert [value async for value in watch] == []
    assert watch.closed


async def test_a_dropped_named_watch_is_forgotten_at_the_next_change() -> None:
    node = await started()
    try:
        watch = node.counters.watch("a")
        del watch
        gc.collect()
        node.counters.increment("a")
        assert "a" not in node.counters._watches
        assert await asyncio.wait_for(anext(node.counters.watch("a")), 5) == 1
    finally:
        await node.close()

"""Pruned named counters across a restart: the journal and the database bring them back."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from dcounter_crdt import CounterMapState, CounterState
from dcounter_node import Node, NodeConfig
from dcounter_node._pruning import Tombstones, plan, successor
from dcounter_node._pruning_named import with_named_part
from dcounter_node._pruning_service import _write_journal, load_journal
from dcounter_node._storage_sqlite import SQLiteStore
from dcounter_protocol import MemoryNetwork

from .test_durable_node import stored_state

if TYPE_CHECKING:
    from pathlib import Path

HERE = "n1:1"
GONE = "n2:1#0000000b"  # a member that left, whose bequest this node holds


def memory_node(network: MemoryNetwork, db_path: Path, tombstones: Tombstones) -> Node:
    store = SQLiteStore(db_path, durability="always")
    return Node(network.transport(HERE), NodeConfig(), store=store, tombstones=tombstones)


def entries(node: Node, name: str) -> tuple[dict[str, int], dict[str, int]]:
    state = node.counters.state(name)
    return dict(state.increments), dict(state.decrements)


async def test_pruned_named_counters_stay_pruned_and_exact_after_a_restart(
    db_path: Path, tmp_path: Path
) -> None:
    network = MemoryNetwork()
    journal = tmp_path / "pruning.json"
    tombstones = Tombstones()
    async with memory_node(network, db_path, tombstones) as node:
        own = node.replica_id
        node.counters.increment("hits", 5)
        node.counters.decrement("stock", 2)
        gone = {
            "hits": CounterState.from_maps({GONE: 3}),
            "stock": CounterState.from_maps({GONE: 4}),
        }
        node.counters.merge_remote(CounterMapState(gone))
        record = plan(HERE, own, node.state(), tombstones, time.time(), bequests={GONE: (0, 0)})
        assert record is not None
        record = with_named_part(record, node.counters.snapshot())
        _write_journal(journal, [record])
        tombstones.add(record)
        node.apply_tombstones()

        after = successor(own)
        assert node.replica_id == after
        assert entries(node, "hits") == ({after: 8}, {})
        assert entries(node, "stock") == ({after: 4}, {after: 2})
        node.counters.increment("hits", 1)  # counted under the successor
        await node.commit()

    # The database keeps the victims' rows (entries only ever grow there) ...
    stored = await stored_state(db_path)
    assert stored.named.get("hits").increments == {own: 5, GONE: 3, after: 9}
    # ... and the journal's named part drops them again at the start: nothing counted twice.
    async with memory_node(network, db_path, load_journal(journal)) as node:
        assert node.replica_id == after
        assert entries(node, "hits") == ({after: 9}, {})
        assert entries(node, "stock") == ({after: 4}, {after: 2})
        assert (node.counters.value("hits"), node.counters.value("stock")) == (9, 2)
        node.counters.increment("hits", 1)
        assert node.counters.value("hits") == 10

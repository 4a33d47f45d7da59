"""Bequests between nodes on the in-memory network: who takes one, and never a second heir.

Three nodes with membership, pruning and bequests; the one that leaves asks its heirs in
turn. Nodes without a data directory refuse (they could not keep it), so the leaver goes on
to the next; an heir that does not answer (cut off) ends the asking: the id may be its.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dcounter_node import Node, PeerManager
from dcounter_node._bequest_service import GIVEN_FILENAME, BequestService, load_bequests
from dcounter_node._membership_service import MembershipService, membership_config
from dcounter_node._pruning import Tombstones
from dcounter_node._pruning_service import PruningService
from dcounter_protocol._memory import MemoryNetwork

from .conftest import address, fast_config, wait_until

if TYPE_CHECKING:
    from pathlib import Path

    import pytest

    from dcounter_crdt import CounterState

PROBE = 0.1


@dataclass
class Member:
    node: Node
    members: MembershipService
    pruning: PruningService
    bequests: BequestService

    async def close(self) -> None:
        await self.pruning.close()
        await self.members.close()
        await self.node.close()


async def start_member(
    network: MemoryNetwork,
    index: int,
    directory: Path | None,
    *,
    prune_after: float = 600.0,
    replica_id: str | None = None,
    state: CounterState | None = None,
    standing: bool = False,
) -> Member:
    """A node with membership, pruning and bequests (what the command runs); ``directory``
    stands for its data directory (it has no database: ``replica_id`` and ``state`` stand
    for what a clean shutdown left in it)."""
    here = address(index)
    tombstones = Tombstones()
    node = Node(
        network.transport(here),
        fast_config(replica_id=replica_id),
        peers=PeerManager(here),
        state=state,
        rng=random.Random(index),
        tombstones=tombstones,
    )
    members = MembershipService(
        node,
        seeds=[address(0)] if index else [],
        static_peers=(),
        config=membership_config(PROBE, 5.0),
        rng=random.Random(index),
    )
    pruning = PruningService(
        node, members, tombstones, prune_after=prune_after, interval=PROBE, rng=random.Random(index)
    )
    bequests = BequestService(
        pruning, *load_bequests(directory), directory=directory, standing=standing
    )
    await node.start()
    bequests.started()
    members.start()
    pruning.start()
    return Member(node, members, pruning, bequests)


def make_directories(directories: list[Path | None]) -> None:
    for directory in directories:
        if directory is not None:
            directory.mkdir()  # the store makes it in a real node


async def three(
    network: MemoryNetwork, directories: list[Path | None], *, standing: bool = False
) -> list[Member]:
    make_directories(directories)
    cluster = [
        await start_member(network, i, d, standing=standing) for i, d in enumerate(directories)
    ]
    await wait_until(
        lambda: all(len(m.pruning.capable) == 2 for m in cluster),
        within=20.0,
        what="every member known to speak pruning",
    )
    return cluster


def given_file(directory: Path) -> list[list[object]]:
    rows: list[list[object]] = json.loads((directory / GIVEN_FILENAME).read_text())["given"]
    return rows


async def test_an_heir_without_a_data_directory_refuses_and_the_next_takes_it(
    tmp_path: Path,
) -> None:
    network = MemoryNetwork(seed=1)
    cluster = await three(network, [None, tmp_path / "keeper", tmp_path / "leaver"])
    try:
        leaver = cluster[2]
        leaver.node.increment(5)
        leaver.node.decrement(2)
        await leaver.bequests.bequeath(wait=2.0)
        keeper = cluster[1]
        assert leaver.bequests.given == 1
        assert keeper.bequests.held == 1
        assert keeper.bequests.due(0.0) == {leaver.node.replica_id: (5, 2)}
        assert cluster[0].bequests.held == 0
        row = [leaver.node.replica_id, address(1), 5, 2, True, False, True]
        assert given_file(tmp_path / "leaver") == [row]
    finally:
        for member in cluster:
            await member.close()


async def test_no_answer_ends_the_asking(tmp_path: Path) -> None:
    network = MemoryNetwork(seed=2)
    directories = [tmp_path / "a", tmp_path / "b", tmp_path / "leaver"]
    cluster = await three(network, list(directories))
    try:
        leaver = cluster[2]
        leaver.node.increment(3)
        # The heirs' answers are lost (before anyone suspects anyone): the first one asked
        # holds the bequest without the leaver knowing, so the leaver must ask no other.
        network.partition([address(0), address(1)], [address(2)], one_way=True)
        await leaver.bequests.bequeath(wait=0.5)
        assert leaver.bequests.given == 0
        rows = given_file(tmp_path / "leaver")
        assert len(rows) == 1
        assert rows[0][0] == leaver.node.replica_id
        holders = [m for m in cluster[:2] if m.bequests.held]
        assert len(holders) == 1
        assert rows[0][1] == holders[0].node.address
    finally:
        network.heal()
        for member in cluster:
            await member.close()


async def test_a_node_shutting_down_refuses_bequests(tmp_path: Path) -> None:
    network = MemoryNetwork(seed=3)
    cluster = await three(network, [tmp_path / "a", tmp_path / "b", tmp_path / "c"])
    try:
        # Both others are on their way out (nothing of their own to give): they refuse.
        for member in cluster[:2]:
            await member.bequests.bequeath(wait=1.0)
        leaver = cluster[2]
        leaver.node.increment(1)
        await leaver.bequests.bequeath(wait=2.0)
        assert leaver.bequests.given == 0
        assert not (tmp_path / "c" / GIVEN_FILENAME).exists() or given_file(tmp_path / "c") == []
    finally:
        for member in cluster:
            await member.close()


async def test_a_node_back_after_its_heir_pruned_it_continues_under_the_successor(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="dcounter_node.pruning")
    network = MemoryNetwork(seed=4)
    directories: list[Path | None] = [tmp_path / "heir", tmp_path / "leaver"]
    make_directories(directories)
    heir = await start_member(network, 0, directories[0], prune_after=0.2)
    leaver = await start_member(network, 1, directories[1])
    cluster = [heir, leaver]
    try:
        await wait_until(lambda: all(len(m.pruning.capable) == 1 for m in cluster))
        heir.node.increment(4)
        leaver.node.increment(7)
        leaver.node.decrement(1)
        await wait_until(lambda: heir.node.value == leaver.node.value == 10)
        await leaver.bequests.bequeath(wait=2.0)
        victim, state = leaver.node.replica_id, leaver.node.state()
        assert leaver.bequests.given == 1
        await leaver.close()
        cluster.remove(leaver)
        await wait_until(lambda: heir.pruning.records_made == 1, what="the heir's prune")
        assert heir.bequests.pruned == 1
        assert victim not in heir.node.state().replicas()
        assert heir.node.value == 10
        # Back from its data directory: the heir answers "pruned" with the record, and the
        # node continues under its id's successor.
        back = await start_member(network, 1, directories[1], replica_id=victim, state=state)
        cluster.append(back)
        assert back.node.replica_id == victim + "'"
        assert f"had pruned the bequest of {victim}" in caplog.text
        assert back.node.value == 10
        assert given_file(tmp_path / "leaver") == []
        back.node.increment(2)
        await wait_until(
            lambda: heir.node.state() == back.node.state() and heir.node.value == 12,
            what=lambda: f"both at 12: {heir.node.state()} {back.node.state()}",
        )
    finally:
        for member in cluster:
            await member.close()

"""A 2/3 partition between nodes with membership heals without anyone re-joining: each side
declares the other dead, both keep counting, and once the network heals the rarely probed
dead members refute their death, become alive and gossip peers again, and every node
converges on the exact total."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import pytest

from dcounter_node import Node, NodeConfig
from dcounter_node._membership import MembershipConfig, MemberState
from dcounter_node._membership_service import MembershipService
from dcounter_node.testing import wait_until
from dcounter_protocol import MemoryNetwork

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

ADDRESSES = [f"10.2.0.{i}:7946" for i in range(1, 6)]
MINORITY, MAJORITY = ADDRESSES[:2], ADDRESSES[2:]
CONFIG = MembershipConfig(
    probe_interval=0.1, probe_timeout=0.05, suspect_timeout=0.5, dead_probe_rounds=3
)
DEADLINE = 60.0


class Cluster:
    def __init__(self) -> None:
        self.network = MemoryNetwork(seed=5)
        self.nodes: dict[str, Node] = {}
        self.services: dict[str, MembershipService] = {}

    def view(self, address: str) -> dict[str, MemberState]:
        membership = self.services[address].membership
        assert membership is not None
        return {m.address: m.state for m in membership.members()}

    def sees(self, observers: list[str], expected: dict[str, MemberState]) -> bool:
        return all(self.view(a) == expected for a in observers)


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    made = Cluster()
    try:
        for index, address in enumerate(ADDRESSES):
            node = Node(made.network.transport(address), NodeConfig(sync_interval=0.1))
            service = MembershipService(
                node,
                seeds=ADDRESSES[:1] if index else (),
                static_peers=(),
                config=CONFIG,
                rng=random.Random(index),
            )
            made.nodes[address] = node
            made.services[address] = service
            await node.start()
            service.start()
        yield made
    finally:
        for service in made.services.values():
            await service.close()
        for node in made.nodes.values():
            await node.close()


async def test_a_two_three_partition_heals_without_manual_steps(cluster: Cluster) -> None:
    alive = dict.fromkeys(ADDRESSES, MemberState.ALIVE)
    await wait_until(lambda: cluster.sees(ADDRESSES, alive), within=DEADLINE, what="all alive")

    cluster.network.partition(MINORITY, MAJORITY)
    minority_view = {**alive, **dict.fromkeys(MAJORITY, MemberState.DEAD)}
    majority_view = {**alive, **dict.fromkeys(MINORITY, MemberState.DEAD)}
    await wait_until(
        lambda: cluster.sees(MINORITY, minority_view) and cluster.sees(MAJORITY, majority_view),
        within=DEADLINE,
        what="each side declares the other dead",
    )
    # Dead members are no gossip peers: each side counts on its own.
    assert set(cluster.nodes[MINORITY[0]].peers.peers()) == {MINORITY[1]}
    cluster.nodes[MINORITY[0]].increment(2)
    cluster.nodes[MAJORITY[0]].increment(3)
    await wait_until(
        lambda: (
            all(cluster.nodes[a].value == 2 for a in MINORITY)
            and all(cluster.nodes[a].value == 3 for a in MAJORITY)
        ),
        within=DEADLINE,
        what="each side converged on its own writes",
    )

    cluster.network.heal()
    await wait_until(
        lambda: cluster.sees(ADDRESSES, alive), within=DEADLINE, what="all alive after the heal"
    )
    await wait_until(
        lambda: all(node.value == 5 for node in cluster.nodes.values()),
        within=DEADLINE,
        what=lambda: f"5 everywhere; values {[n.value for n in cluster.nodes.values()]}",
    )
    states = {node.state() for node in cluster.nodes.values()}
    assert len(states) == 1

"""Pruning between real nodes on the in-memory network: loss, partitions and restarts.

Three nodes with membership and pruning; one of them restarts without state (a new
incarnation each time); another is cut off by a partition, writing on both sides, while the
restarted one prunes; after the partition heals every node holds the exact total, with one
entry per address.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dcounter_crdt import CounterState
from dcounter_node import Node, PeerManager
from dcounter_node._membership import MemberState
from dcounter_node._membership_service import MembershipService, membership_config
from dcounter_node._pruning import Tombstones
from dcounter_node._pruning_service import PruningService
from dcounter_protocol._memory import MemoryNetwork

from .conftest import DEAD_ADDRESS, address, fast_config, wait_until

PRUNE_AFTER = 1.0
PROBE = 0.1
SUSPECT = 0.6


@dataclass
class Member:
    node: Node
    members: MembershipService
    pruning: PruningService

    async def close(self) -> None:
        await self.pruning.close()
        await self.members.close()
        await self.node.close()


@dataclass
class Cluster:
    network: MemoryNetwork
    rng: random.Random
    members: list[Member] = field(default_factory=list)
    increments: int = 0
    decrements: int = 0

    @property
    def nodes(self) -> list[Node]:
        return [m.node for m in self.members]

    async def start_member(
        self, index: int, *, static: tuple[str, ...] = (), state: CounterState | None = None
    ) -> Member:
        node_address = address(index)
        node = Node(
            self.network.transport(node_address),
            fast_config(),
            peers=PeerManager(node_address, static),
            state=state,
            rng=random.Random(self.rng.random()),
            tombstones=(tombstones := Tombstones()),
        )
        members = MembershipService(
            node,
            seeds=[address(0)] if index else [address(1)],
            static_peers=static,
            config=membership_config(PROBE, SUSPECT),
            rng=random.Random(self.rng.random()),
        )
        pruning = PruningService(
            node,
            members,
            tombstones,
            prune_after=PRUNE_AFTER,
            interval=PROBE,
            rng=random.Random(self.rng.random()),
        )
        await node.start()
        members.start()
        pruning.start()
        return Member(node, members, pruning)

    def write(self, index: int, amount: int) -> None:
        node = self.members[index].node
        if amount > 0:
            node.increment(amount)
            self.increments += amount
        else:
            node.decrement(-amount)
            self.decrements -= amount

    def counted_twice(self) -> list[str]:
        """Nodes whose increments or decrements exceed every one ever made (none, ever)."""
        return [
            n.address
            for n in self.nodes
            if n.running
            and (
                sum(n.state().increments.values()) > self.increments
                or sum(n.state().decrements.values()) > self.decrements
            )
        ]

    async def watch(self, seen: list[str]) -> None:
        """Sample every node's state until cancelled; record any that counts twice."""
        while True:
            seen.extend(self.counted_twice())
            await asyncio.sleep(0.002)

    @property
    def expected(self) -> int:
        return self.increments - self.decrements

    def alive_seen_by(self, index: int) -> set[str]:
        membership = self.members[index].members.membership
        assert membership is not None
        return {m.address for m in membership.members() if m.state is MemberState.ALIVE}

    async def converged(self, nodes: list[Node] | None = None) -> None:
        nodes = self.nodes if nodes is None else nodes
        first = nodes[0]
        await wait_until(
            lambda: all(n.value == self.expected and n.state() == first.state() for n in nodes),
            within=30.0,
            what=lambda: f"every node at {self.expected}: {[n.value for n in nodes]}",
        )

    async def close(self) -> None:
        for member in self.members:
            await member.close()


@settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=4,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    seed=st.integers(0, 2**16),
    drop_rate=st.sampled_from([0.0, 0.05]),
    restarts=st.integers(1, 2),
    partition=st.booleans(),
)
async def test_pruning_keeps_the_exact_value_through_loss_partitions_and_restarts(
    seed: int, drop_rate: float, restarts: int, partition: bool
) -> None:
    rng = random.Random(seed)
    network = MemoryNetwork(seed=seed)
    cluster = Cluster(network, rng)
    everyone = {address(i) for i in range(3)}

    async def all_alive() -> None:
        # A join is one message: it goes out without loss, the rest of the run with it.
        network.drop_rate = 0.0
        await wait_until(lambda: all(cluster.alive_seen_by(i) == everyone for i in range(3)))
        network.drop_rate = drop_rate

    double: list[str] = []
    watcher = asyncio.ensure_future(cluster.watch(double))
    try:
        for index in range(3):
            cluster.members.append(await cluster.start_member(index))
        await all_alive()
        for _ in range(12):
            cluster.write(rng.randrange(3), rng.choice([-2, -1, 1, 3]))
        restarted, cut = 0, 1 + rng.randrange(2)
        for _ in range(restarts):
            # The old incarnation's counts reached everyone (assumption A), then it stops.
            await cluster.converged()
            await cluster.members[restarted].close()
            cluster.members[restarted] = await cluster.start_member(restarted)
            await all_alive()
            cluster.write(restarted, 4)
        await cluster.converged()
        assert len(cluster.nodes[restarted].state().replicas()) == 3 + restarts
        if partition:
            others = [address(i) for i in range(3) if i != cut]
            cluster.network.partition([address(cut)], others)
            cluster.write(cut, 5)  # concurrent writes on both sides
            cluster.write(restarted, -1)
        pruner = cluster.members[restarted].pruning
        await wait_until(lambda: pruner.records_made >= 1, within=30.0, what="a prune")
        cluster.write(restarted, 2)  # under the successor
        cluster.network.heal()
        await cluster.converged()
        for node in cluster.nodes:
            assert len(node.state().replicas()) == 3
            assert node.replica_id.endswith("'") == (node is cluster.members[restarted].node)
        assert double == []
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await cluster.close()


async def test_a_static_peer_that_is_no_member_pauses_pruning() -> None:
    # DEAD_ADDRESS stands for a Go reference node: a --peers entry that never joins.
    cluster = Cluster(MemoryNetwork(seed=7), random.Random(7))
    earlier = CounterState.from_maps({f"{address(0)}#00000001": 3})
    try:
        member = await cluster.start_member(0, static=(DEAD_ADDRESS,), state=earlier)
        cluster.members.append(member)
        reason = f"peer {DEAD_ADDRESS} is not a member"
        await wait_until(
            lambda: (member.pruning.paused or "").startswith(reason),
            what=lambda: f"paused for {reason}, got {member.pruning.paused}",
        )
        assert member.pruning.records_made == 0
        assert f"{address(0)}#00000001" in member.node.state().replicas()
        # Without it, the same node prunes its earlier incarnation.
        member.node.peers.remove(DEAD_ADDRESS)
        await wait_until(lambda: member.pruning.records_made == 1, what="a prune")
        assert member.pruning.paused is None
        assert member.node.state() == CounterState.from_maps({member.node.replica_id: 3})
    finally:
        await cluster.close()

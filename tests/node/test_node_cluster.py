"""In-memory clusters converge to the exact value under loss, partitions and failures."""

from __future__ import annotations

import asyncio
import itertools
import random
from typing import TYPE_CHECKING

import pytest

from dcounter_crdt import CounterState
from dcounter_node import Node, PeerManager
from dcounter_protocol import Message, MessageType, Push, decode_message
from dcounter_protocol._memory import MemoryNetwork

from .conftest import (
    DEAD_ADDRESS,
    PROBE_ADDRESS,
    Cluster,
    apply_random_writes,
    fast_config,
    wait_for_convergence,
    wait_until,
)

if TYPE_CHECKING:
    from dcounter_protocol._transport import Handler

    from .conftest import ClusterFactory

QUIET = 60.0


async def gossip_progress(cluster: Cluster, messages: int) -> None:
    """Wait until ``messages`` more messages were delivered (time passes, gossip runs)."""
    target = cluster.network.delivered + messages
    await wait_until(lambda: cluster.network.delivered >= target)


async def write_while_gossiping(
    cluster: Cluster,
    rng: random.Random,
    *,
    rounds: int,
    writes: int,
    nodes: list[Node] | None = None,
) -> int:
    """Random writes in rounds, letting gossip run between them; returns their net sum."""
    members = nodes if nodes is not None else cluster.nodes
    total = 0
    for _ in range(rounds):
        total += apply_random_writes(members, rng, writes)
        await gossip_progress(cluster, len(members))
    return total


@pytest.mark.parametrize("delta_gossip", [True, False], ids=["deltas", "seed-exact"])
async def test_seed_demo_ten_nodes_reach_the_exact_value(
    make_cluster: ClusterFactory, delta_gossip: bool
) -> None:
    # The seed's demo: 10 nodes in a full mesh, 5 sync peers, and on every node a random
    # increment or decrement per tick while gossip runs; then every node must be exact.
    config = fast_config(max_sync_peers=5, delta_gossip=delta_gossip)
    cluster = await make_cluster(10, config=config, seed=10)
    rng = random.Random(10)
    expected = 0
    for _ in range(20):
        for node in cluster.nodes:
            if rng.random() < 0.5:
                node.increment()
                expected += 1
            else:
                node.decrement()
                expected -= 1
        await gossip_progress(cluster, len(cluster.nodes))
    await cluster.wait_converged(expected)
    assert sum(node.contribution for node in cluster.nodes) == expected


@pytest.mark.parametrize("delta_gossip", [True, False], ids=["deltas", "seed-exact"])
async def test_thirty_percent_message_loss_still_converges(
    make_cluster: ClusterFactory, delta_gossip: bool
) -> None:
    config = fast_config(delta_gossip=delta_gossip)
    cluster = await make_cluster(8, config=config, seed=30, drop_rate=0.3)
    expected = await write_while_gossiping(cluster, random.Random(30), rounds=4, writes=40)
    await cluster.wait_converged(expected)
    assert cluster.network.dropped > 0


async def test_partitioned_halves_converge_apart_then_together_after_heal(
    make_cluster: ClusterFactory,
) -> None:
    cluster = await make_cluster(8, seed=40)
    left, right = cluster.nodes[:4], cluster.nodes[4:]
    cluster.network.partition([n.address for n in left], [n.address for n in right])
    rng = random.Random(40)
    left_sum = await write_while_gossiping(cluster, rng, rounds=3, writes=30, nodes=left)
    right_sum = await write_while_gossiping(cluster, rng, rounds=3, writes=30, nodes=right)
    await wait_for_convergence(left, left_sum)
    await wait_for_convergence(right, right_sum)
    cluster.network.heal()
    await cluster.wait_converged(left_sum + right_sum)


async def test_peer_that_is_down_the_whole_time_does_not_prevent_convergence(
    make_cluster: ClusterFactory,
) -> None:
    cluster = await make_cluster(6, seed=50, extra_peers=[DEAD_ADDRESS])
    expected = await write_while_gossiping(cluster, random.Random(50), rounds=3, writes=30)
    await cluster.wait_converged(expected)
    await wait_until(lambda: all(n.stats.snapshot().send_failures > 0 for n in cluster.nodes))
    assert all(DEAD_ADDRESS not in n.stats.snapshot().last_contact for n in cluster.nodes)


async def test_node_fed_garbage_keeps_converging(make_cluster: ClusterFactory) -> None:
    cluster = await make_cluster(5, seed=60)
    rogue = await cluster.probe()
    target = cluster.nodes[0]
    noise = random.Random(60)
    expected = 0
    for _ in range(5):
        for _ in range(20):
            junk = noise.randbytes(noise.randint(0, 64))
            await rogue.send(target.address, junk)
        expected += apply_random_writes(cluster.nodes, noise, 20)
        await gossip_progress(cluster, 25)
    await cluster.wait_converged(expected)
    assert target.stats.snapshot().decode_errors == 100


async def test_restarted_node_without_state_gets_a_new_id_and_the_sum_stays_exact(
    make_cluster: ClusterFactory,
) -> None:
    cluster = await make_cluster(5, seed=70)
    rng = random.Random(70)
    expected = await write_while_gossiping(cluster, rng, rounds=2, writes=30)
    cluster.nodes[2].increment(50)
    expected += 50
    await cluster.wait_converged(expected)
    old_id = cluster.nodes[2].replica_id

    node = await cluster.restart(2)
    assert node.replica_id != old_id
    # Counting at once, before the node has learnt anything: nothing may be swallowed.
    node.increment(3)
    expected += 3
    expected += await write_while_gossiping(cluster, rng, rounds=3, writes=30)
    await cluster.wait_converged(expected)
    assert node.state().increments[old_id] >= 50


async def test_delta_pushes_alone_reach_every_direct_peer(make_cluster: ClusterFactory) -> None:
    config = fast_config(sync_interval=QUIET, full_sync_interval=QUIET, delta_fanout=9)
    cluster = await make_cluster(10, config=config, seed=80)
    cluster.nodes[0].increment(7)
    cluster.nodes[9].decrement(2)
    await cluster.wait_converged(5)
    snapshots = [n.stats.snapshot() for n in cluster.nodes]
    assert sum(s.messages_sent[MessageType.DIGEST_PULL] for s in snapshots) == 0


async def test_delta_pushes_are_forwarded_hop_by_hop(make_cluster: ClusterFactory) -> None:
    config = fast_config(sync_interval=QUIET, full_sync_interval=QUIET, delta_fanout=2)
    cluster = await make_cluster(config=config, seed=81)
    line = await cluster.spawn(10, mesh=False)
    for left, right in itertools.pairwise(line):
        left.peers.add(right.address)
        right.peers.add(left.address)
    line[0].increment(3)
    await cluster.wait_converged(3)
    line[9].decrement(1)
    await cluster.wait_converged(2)
    assert all(n.stats.snapshot().merges_changed == 2 for n in line[1:-1])


async def test_converged_idle_cluster_with_deltas_exchanges_digests_only(
    make_cluster: ClusterFactory,
) -> None:
    config = fast_config(full_sync_interval=0.04)
    cluster = await make_cluster(5, config=config, seed=90)
    expected = apply_random_writes(cluster.nodes, random.Random(90), 30)
    await cluster.wait_converged(expected)

    def pushes() -> int:
        return sum(n.stats.snapshot().messages_sent[MessageType.PUSH] for n in cluster.nodes)

    def pulls() -> int:
        return sum(n.stats.snapshot().messages_sent[MessageType.DIGEST_PULL] for n in cluster.nodes)

    # Let the replies in flight at convergence and one full-sync period pass, then measure.
    start = pulls()
    await wait_until(lambda: pulls() >= start + 5 * 3 * 3)
    before_pushes, before_pulls = pushes(), pulls()
    await wait_until(lambda: pulls() >= before_pulls + 5 * 3 * 4)
    assert pushes() == before_pushes


async def test_full_inbound_queue_drops_and_counts(make_cluster: ClusterFactory) -> None:
    cluster = await make_cluster(config=fast_config(inbound_queue_size=1))
    probe = await cluster.probe()
    (node,) = await cluster.spawn(1)
    for i in range(1, 51):
        await probe.send(node.address, Push(probe.address, {"p#1": i}, None))
    await wait_until(
        lambda: node.stats.snapshot().inbound_drops + node.stats.snapshot().merges == 50
    )
    assert node.stats.snapshot().inbound_drops > 0
    await probe.send(node.address, Push(probe.address, {"p#1": 100}, None))
    await wait_until(lambda: node.value == 100)


class HangingTransport:
    """Wraps a memory transport; sends to one address hang until cancelled (a stuck peer)."""

    def __init__(self, network: MemoryNetwork, address: str, hung: str) -> None:
        self._inner = network.transport(address)
        self._hung = hung
        self.hanging = 0

    @property
    def address(self) -> str:
        return self._inner.address

    async def listen(self, handler: Handler) -> None:
        await self._inner.listen(handler)

    async def send(self, address: str, data: bytes) -> None:
        if address == self._hung:
            self.hanging += 1
            await asyncio.Event().wait()
        await self._inner.send(address, data)

    async def close(self) -> None:
        await self._inner.close()


async def test_hung_peer_never_delays_gossip_with_the_others() -> None:
    network = MemoryNetwork(seed=100)
    probe_inbox: asyncio.Queue[Message] = asyncio.Queue()
    probe = network.transport(PROBE_ADDRESS)

    async def on_message(sender: str, payload: bytes) -> None:
        probe_inbox.put_nowait(decode_message(payload))

    await probe.listen(on_message)
    hung = "10.6.6.6:7946"
    transport = HangingTransport(network, "10.0.0.1:7946", hung)
    config = fast_config(sync_interval=0.01, max_sync_peers=2)
    node = Node(transport, config, peers=PeerManager(None, [hung, PROBE_ADDRESS]))
    before = asyncio.all_tasks()
    await node.start()
    try:
        # Every round pulls both peers; the hung sends pile up to the per-peer cap, then drop.
        await wait_until(lambda: node.stats.snapshot().outbound_drops > 0)
        pulls = 0
        while pulls < 20:
            message = await asyncio.wait_for(probe_inbox.get(), 5)
            pulls += message.type is MessageType.DIGEST_PULL
        node.increment(4)
        message = await asyncio.wait_for(probe_inbox.get(), 5)
        while message.type is not MessageType.PUSH:
            message = await asyncio.wait_for(probe_inbox.get(), 5)
        assert message.state() == CounterState.from_maps({node.replica_id: 4})
        assert transport.hanging == 8
    finally:
        await node.close()
        await probe.close()
    assert asyncio.all_tasks() - {asyncio.current_task()} <= before


def sent_of(nodes: list[Node], kind: MessageType) -> int:
    return sum(node.stats.snapshot().messages_sent[kind] for node in nodes)


async def test_an_idle_cluster_in_agreement_pulls_without_acks(
    make_cluster: ClusterFactory,
) -> None:
    cluster = await make_cluster(3, config=fast_config(full_sync_interval=QUIET), seed=19)
    cluster.nodes[0].increment()
    await cluster.wait_converged(1)

    async def a_window_of_pulls_without_acks() -> bool:
        acks = sent_of(cluster.nodes, MessageType.DIGEST_ACK)
        pulls = sent_of(cluster.nodes, MessageType.DIGEST_PULL)
        await gossip_progress(cluster, 12)
        quiet = sent_of(cluster.nodes, MessageType.DIGEST_ACK) == acks
        return quiet and sent_of(cluster.nodes, MessageType.DIGEST_PULL) > pulls

    await wait_until(a_window_of_pulls_without_acks, what="pulls answered by no ack")


async def test_two_camps_each_in_agreement_still_find_and_repair_their_difference(
    make_cluster: ClusterFactory,
) -> None:
    # Each camp holds one state and has confirmed it within itself, so every round is quiet
    # (no acks); once healed, only those quiet pulls can find the difference (no full syncs,
    # and the deltas were lost to the partition).
    cluster = await make_cluster(4, config=fast_config(full_sync_interval=QUIET), seed=20)
    left, right = cluster.addresses[:2], cluster.addresses[2:]
    cluster.network.partition(left, right)
    cluster.nodes[0].increment(5)
    cluster.nodes[3].decrement(2)
    for camp, value in ((cluster.nodes[:2], 5), (cluster.nodes[2:], -2)):
        await wait_for_convergence(camp, value)

    async def both_camps_quiet() -> bool:
        acks = sent_of(cluster.nodes, MessageType.DIGEST_ACK)
        await gossip_progress(cluster, 12)
        return sent_of(cluster.nodes, MessageType.DIGEST_ACK) == acks

    await wait_until(both_camps_quiet, what="both camps to settle into quiet rounds")
    cluster.network.heal()
    await cluster.wait_converged(3)

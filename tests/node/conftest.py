"""Helpers for the node tests: deadline waits, in-memory clusters and raw-message probes.

Nothing here sleeps in place of synchronization: :func:`wait_until` (the shared one from
``dcounter_node.testing``) polls a condition against a deadline, and every node or probe made
through a fixture is closed at teardown.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, settings

from dcounter_node import Node, NodeConfig, PeerManager
from dcounter_node.testing import wait_until as wait_until
from dcounter_protocol import DigestPull, Message, MessageType, decode_message, encode_message
from dcounter_protocol._memory import MemoryNetwork

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterable, Sequence

    from dcounter_crdt import CounterState

#: Generous upper bound for conditions that normally hold within milliseconds.
DEFAULT_TIMEOUT = 10.0

#: The model tests (pruning, bequests): many schedules, the same ones every run.
settings.register_profile(
    "model",
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=300,
    suppress_health_check=[HealthCheck.too_slow],
)


def converged(nodes: Sequence[Node], expected: int) -> bool:
    """Whether every node reports ``expected`` and all hold the same state."""
    if any(node.value != expected for node in nodes):
        return False
    first = nodes[0].state()
    return all(node.state() == first for node in nodes[1:])


async def wait_for_convergence(
    nodes: Sequence[Node], expected: int, *, within: float = DEFAULT_TIMEOUT
) -> None:
    """Wait until every node reports exactly ``expected`` with identical states."""
    await wait_until(
        lambda: converged(nodes, expected),
        within=within,
        what=lambda: f"every node at {expected}, values are {[n.value for n in nodes]}",
    )


def address(index: int) -> str:
    """The in-memory address of cluster member ``index`` (looks like a real one)."""
    return f"10.0.{index // 250}.{index % 250 + 1}:7946"


#: An address nobody listens on (a peer that is down the whole time).
DEAD_ADDRESS = "10.9.9.9:7946"
#: Where probes live.
PROBE_ADDRESS = "10.8.8.8:7946"


def fast_config(**overrides: Any) -> NodeConfig:
    """Short intervals so clusters converge in tens of milliseconds."""
    return dataclasses.replace(NodeConfig(sync_interval=0.02, max_sync_peers=3), **overrides)


class Probe:
    """A bare endpoint that sends raw messages to nodes and records what it receives."""

    def __init__(self, network: MemoryNetwork, probe_address: str = PROBE_ADDRESS) -> None:
        self.address = probe_address
        self.transport = network.transport(probe_address)
        self.inbox: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self.sent: dict[str, int] = {}

    async def start(self) -> None:
        """Start listening."""
        await self.transport.listen(self._on_message)

    async def _on_message(self, sender: str, payload: bytes) -> None:
        self.inbox.put_nowait((sender, payload))

    async def send(self, target: str, message: Message | bytes) -> None:
        """Send a message (encoded here) or raw payload bytes to ``target``."""
        data = encode_message(message) if isinstance(message, Message) else message
        await self.transport.send(target, data)
        self.sent[target] = self.sent.get(target, 0) + 1

    async def receive(self, within: float = DEFAULT_TIMEOUT) -> tuple[str, Message]:
        """The next message received: (sender address in the frame, decoded message)."""
        sender, payload = await self.receive_raw(within)
        return sender, decode_message(payload)

    async def receive_raw(self, within: float = DEFAULT_TIMEOUT) -> tuple[str, bytes]:
        """The next payload received, undecoded."""
        async with asyncio.timeout(within):
            return await self.inbox.get()

    async def replies_until_ack(self, node: Node) -> list[Message]:
        """Everything ``node`` sent us in reply to our messages so far.

        Waits until the node has handled every message we sent it (the probe must be its
        only correspondent), then sends a pull matching its digest: replies are sent in the
        order the node handled their messages and the memory network keeps that order, so
        everything received before the ack is a reply, and "no reply" is told apart from
        "reply still on its way" without sleeping.
        """

        def handled() -> int:
            snapshot = node.stats.snapshot()
            return (
                snapshot.total_messages_received + snapshot.decode_errors + snapshot.inbound_drops
            )

        await wait_until(
            lambda: handled() >= self.sent.get(node.address, 0),
            what=f"{node.address} to handle the probe's messages",
        )
        digest = node.digest
        await self.send(node.address, DigestPull(self.address, digest))
        before: list[Message] = []
        while True:
            _, message = await self.receive()
            if message.type is MessageType.DIGEST_ACK and message.digest == digest:
                return before
            before.append(message)

    async def close(self) -> None:
        """Stop listening."""
        await self.transport.close()


class Cluster:
    """In-memory nodes sharing one :class:`MemoryNetwork`, each peered with all the others."""

    def __init__(self, network: MemoryNetwork, config: NodeConfig, seed: int) -> None:
        self.network = network
        self.config = config
        self.seed = seed
        self.nodes: list[Node] = []
        self.probes: list[Probe] = []
        self._made: list[Node] = []
        self._next_index = 0

    @property
    def addresses(self) -> list[str]:
        """Addresses of the current members."""
        return [node.address for node in self.nodes]

    def _new_node(
        self,
        node_address: str,
        peers: Iterable[str],
        config: NodeConfig | None,
        state: CounterState | None,
    ) -> Node:
        transport = self.network.transport(node_address)
        node = Node(
            transport,
            config if config is not None else self.config,
            peers=PeerManager(node_address, peers),
            state=state,
            rng=random.Random(f"{self.seed}/{node_address}/{len(self._made)}"),
        )
        self._made.append(node)
        return node

    async def spawn(
        self,
        count: int,
        *,
        config: NodeConfig | None = None,
        extra_peers: Iterable[str] = (),
        state: CounterState | None = None,
        mesh: bool = True,
    ) -> list[Node]:
        """Start ``count`` new members, in a full mesh with every member unless not ``mesh``."""
        new_addresses = [address(self._next_index + i) for i in range(count)]
        self._next_index += count
        extra = list(extra_peers)
        everyone = self.addresses + new_addresses if mesh else []
        if mesh:
            for node in self.nodes:
                for peer in new_addresses:
                    node.peers.add(peer)
        created = [self._new_node(a, [*everyone, *extra], config, state) for a in new_addresses]
        for node in created:
            await node.start()
        self.nodes.extend(created)
        return created

    async def restart(self, index: int, *, config: NodeConfig | None = None) -> Node:
        """Close member ``index`` and start a new one, without state, at the same address."""
        old = self.nodes[index]
        await old.close()
        node = self._new_node(old.address, old.peers.peers(), config, None)
        await node.start()
        self.nodes[index] = node
        return node

    async def probe(self, probe_address: str = PROBE_ADDRESS) -> Probe:
        """A listening probe on the cluster's network."""
        probe = Probe(self.network, probe_address)
        await probe.start()
        self.probes.append(probe)
        return probe

    def values(self) -> list[int]:
        """Every member's value."""
        return [node.value for node in self.nodes]

    def converged(self, expected: int) -> bool:
        """Whether every member reports ``expected`` and holds the same state.

        Equal values alone are not enough: {x: 5} - {x: 3} and {x: 4} - {x: 2} agree on 2.
        """
        return converged(self.nodes, expected)

    async def wait_converged(self, expected: int, *, within: float = DEFAULT_TIMEOUT) -> None:
        """Wait until every member reports exactly ``expected``."""
        await wait_for_convergence(self.nodes, expected, within=within)

    async def close(self) -> None:
        """Close every node and probe ever made here."""
        for node in self._made:
            await node.close()
        for probe in self.probes:
            await probe.close()


class ClusterFactory:
    """Makes clusters and remembers them, so the fixture can close them all."""

    def __init__(self) -> None:
        self.clusters: list[Cluster] = []

    async def __call__(
        self,
        size: int = 0,
        *,
        config: NodeConfig | None = None,
        seed: int = 0,
        drop_rate: float = 0.0,
        extra_peers: Iterable[str] = (),
    ) -> Cluster:
        network = MemoryNetwork(seed=seed, drop_rate=drop_rate)
        cluster = Cluster(network, config if config is not None else fast_config(), seed)
        self.clusters.append(cluster)
        if size:
            await cluster.spawn(size, extra_peers=extra_peers)
        return cluster


@pytest.fixture
async def make_cluster() -> AsyncIterator[ClusterFactory]:
    """A factory of in-memory clusters; every node and probe is closed at teardown."""
    factory = ClusterFactory()
    try:
        yield factory
    finally:
        for cluster in factory.clusters:
            await cluster.close()


def apply_random_writes(nodes: list[Node], rng: random.Random, count: int) -> int:
    """Make ``count`` random increments/decrements on random nodes; return their net sum."""
    total = 0
    for _ in range(count):
        node = rng.choice(nodes)
        amount = rng.randint(1, 5)
        if rng.random() < 0.5:
            node.increment(amount)
            total += amount
        else:
            node.decrement(amount)
            total -= amount
    return total

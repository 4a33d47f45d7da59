"""``--in-process``: every node a :class:`dcounter_node.Node` in this event loop.

With the ``memory`` transport the nodes talk through a
:class:`dcounter_protocol.MemoryNetwork` (addresses are names such as ``node-0:7946``, no
socket is opened); with ``tcp`` each has a real :class:`dcounter_protocol.TCPTransport` on
a free loopback port. Writes are direct calls, so they are always acknowledged. A "kill"
closes the node and its transport and starts a new node (a new replica id) at the same
address: it is abrupt for the counter, whose in-memory state is dropped, though the node
gets to flush pending gossip on close, unlike a SIGKILLed process.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Literal

from dcounter_node import Node, NodeConfig, PeerManager
from dcounter_protocol import MemoryNetwork, TCPOptions, TCPTransport, Transport
from dcounter_tools.cluster.backend import EventSink, NodeInfo, wire_mesh
from dcounter_tools.cluster.client import CounterView, OpResult, Outcome
from dcounter_tools.cluster.spec import node_wire

if TYPE_CHECKING:
    from collections.abc import Sequence

    from dcounter_protocol._tcp import WireMode

__all__ = ["InProcessBackend", "TransportKind"]

TransportKind = Literal["memory", "tcp"]


class InProcessBackend:
    """A cluster of :class:`Node` objects sharing this event loop."""

    def __init__(
        self,
        count: int,
        *,
        transport: TransportKind = "memory",
        host: str = "127.0.0.1",
        sync_interval: float = 0.5,
        max_sync_peers: int | None = None,
        seed: int = 0,
        wire: str = "auto",
    ) -> None:
        self._count = count
        self._transport = transport
        #: The cluster's --wire (auto, seed or mixed); used by the tcp transport only.
        self._wire = wire
        self._host = host
        config = NodeConfig(sync_interval=sync_interval)
        if max_sync_peers is not None:
            config = NodeConfig(sync_interval=sync_interval, max_sync_peers=max_sync_peers)
        self._config = config
        self._network = MemoryNetwork(seed=seed) if transport == "memory" else None
        self._nodes: list[Node] = []
        self._incarnations: list[int] = []
        self._infos: list[NodeInfo] = []

    @property
    def mode(self) -> str:
        if self._transport == "tcp" and self._wire != "auto":
            return f"in-process, tcp transport, {self._wire} wire"
        return f"in-process, {self._transport} transport"

    def nodes(self) -> Sequence[NodeInfo]:
        return tuple(self._infos)

    def _new_transport(self, index: int, address: str | None) -> Transport:
        if self._network is not None:
            return self._network.transport(address or f"node-{index}:7946")
        wire: WireMode = "seed" if node_wire(self._wire, index) == "seed" else "auto"
        return TCPTransport(address or f"{self._host}:0", options=TCPOptions(wire=wire))

    async def _start_node(self, index: int, address: str | None, peers: Sequence[str]) -> Node:
        node = Node(self._new_transport(index, address), self._config, peers=PeerManager())
        await node.start()
        for peer in peers:
            node.peers.add(peer)
        return node

    def _info(self, index: int) -> NodeInfo:
        node = self._nodes[index]
        return NodeInfo(
            f"node-{index}", node.address, None, node.replica_id, None, self._incarnations[index]
        )

    async def start(self, on_event: EventSink) -> None:
        started = time.monotonic()
        for index in range(self._count):
            self._nodes.append(await self._start_node(index, None, ()))
            self._incarnations.append(0)
            self._infos.append(self._info(index))
        await wire_mesh(self, range(self._count))
        on_event(
            f"{self._count} in-process nodes up ({self._transport} transport) "
            f"in {time.monotonic() - started:.2f} s"
        )

    async def change(self, index: int, delta: int, key: str, name: str) -> OpResult:
        counters = self._nodes[index].counters
        write = counters.increment if delta > 0 else counters.decrement
        return OpResult(Outcome.ACKED, write(name, abs(delta)))

    async def values(self, index: int) -> dict[str, int]:
        counters = self._nodes[index].counters
        return dict(counters.items(limit=len(counters) + 1))

    async def counter(self, index: int) -> CounterView:
        node = self._nodes[index]
        state = node.state()
        return CounterView(
            state.value,
            node.replica_id,
            dict(state.increments),
            dict(state.decrements),
            node.address,  # in-process nodes have no HTTP API
        )

    async def peers(self, index: int) -> list[str]:
        return self._nodes[index].peers.peers()

    async def add_peer(self, index: int, address: str) -> None:
        self._nodes[index].peers.add(address)

    async def remove_peer(self, index: int, address: str) -> bool:
        return self._nodes[index].peers.remove(address)

    async def kill(self, index: int) -> None:
        await self._nodes[index].close()

    async def restart(self, index: int, peers: Sequence[str]) -> None:
        address = self._infos[index].gossip
        self._nodes[index] = await self._start_node(index, address, peers)
        self._incarnations[index] += 1
        self._infos[index] = self._info(index)

    async def close(self) -> None:
        await asyncio.gather(*(node.close() for node in self._nodes), return_exceptions=True)

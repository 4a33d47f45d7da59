"""The membership service on real TCP transports: which connections may carry membership
messages, and membership over mutual TLS."""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import TYPE_CHECKING

from dcounter_node import Node, NodeConfig
from dcounter_node._membership import (
    MembershipConfig,
    MembershipMessage,
    MemberState,
    MessageKind,
    Update,
)
from dcounter_node._membership_service import MembershipService
from dcounter_node._membership_wire import encode_membership
from dcounter_protocol import (
    CAP_MEMBERSHIP,
    TCPOptions,
    TCPTransport,
    TLSOptions,
    WireMode,
    encode_frame,
    parse_address,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from tests.conftest import IssueTLS

from dcounter_node.testing import wait_until

DEADLINE = 30.0
FAST = MembershipConfig(probe_interval=0.2, probe_timeout=0.1, suspect_timeout=2.0)


def join_from(address: str) -> bytes:
    """A membership ``join`` claiming to come from ``address``."""
    sender = Update(address, f"{address}#x", MemberState.ALIVE, 0)
    return encode_membership(MembershipMessage(MessageKind.JOIN, sender))


def known(service: MembershipService) -> set[str]:
    membership = service.membership
    assert membership is not None
    return {m.address for m in membership.members()}


class Cluster:
    """Nodes with membership on loopback TCP; everything is closed at the end."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.services: list[MembershipService] = []
        self.transports: list[TCPTransport] = []

    async def start(
        self, *, seeds: tuple[str, ...] = (), tls: TLSOptions | None = None
    ) -> MembershipService:
        options = TCPOptions(capabilities=CAP_MEMBERSHIP, tls=tls)
        node = Node(TCPTransport("127.0.0.1:0", options=options), NodeConfig(sync_interval=0.2))
        service = MembershipService(
            node, seeds=seeds, static_peers=(), config=FAST, rng=random.Random(7)
        )
        self.nodes.append(node)
        self.services.append(service)
        await node.start()
        service.start()
        return service

    async def transport(self, wire: WireMode, *, capabilities: int | None) -> TCPTransport:
        """A bare transport that sends as a peer would (and ignores what it receives)."""

        async def ignore(sender: str, payload: bytes) -> None:
            return None

        options = TCPOptions(wire=wire, capabilities=capabilities)
        transport = TCPTransport("127.0.0.1:0", options=options)
        self.transports.append(transport)
        await transport.listen(ignore)
        return transport

    async def close(self) -> None:
        for service in self.services:
            await service.close()
        for node in self.nodes:
            await node.close()
        for transport in self.transports:
            await transport.close()


@contextlib.asynccontextmanager
async def cluster() -> AsyncIterator[Cluster]:
    made = Cluster()
    try:
        yield made
    finally:
        await made.close()


async def send_seed_frame(to: str, sender: str, payload: bytes) -> None:
    host, port = parse_address(to)
    _, writer = await asyncio.open_connection(host, port)
    writer.write(encode_frame(sender, payload))
    await writer.drain()
    writer.close()
    await writer.wait_closed()


async def counted(read: Callable[[], int], expected: int) -> None:
    await wait_until(lambda: read() == expected, within=DEADLINE, what=f"count {expected}")


async def test_a_membership_message_in_a_seed_frame_is_dropped() -> None:
    async with cluster() as made:
        service = await made.start()
        node = made.nodes[0]

        await send_seed_frame(node.address, "127.0.0.1:9", join_from("127.0.0.1:9"))

        await counted(lambda: service.not_negotiated, 1)
        assert known(service) == {node.address}


async def test_a_membership_message_on_a_stream_without_the_capability_is_dropped() -> None:
    async with cluster() as made:
        service = await made.start()
        node = made.nodes[0]
        old = await made.transport("auto", capabilities=None)  # version 1 hellos

        await old.send(node.address, join_from(old.address))

        await counted(lambda: service.not_negotiated, 1)
        assert old.streaming(node.address)
        assert known(service) == {node.address}


async def test_a_membership_message_on_a_stream_that_negotiated_it_is_taken() -> None:
    async with cluster() as made:
        service = await made.start()
        node = made.nodes[0]
        peer = await made.transport("auto", capabilities=CAP_MEMBERSHIP)

        await peer.send(node.address, join_from(peer.address))

        await wait_until(lambda: peer.address in known(service), within=DEADLINE)
        assert service.not_negotiated == 0


async def test_membership_works_over_mutual_tls(issue_tls: IssueTLS) -> None:
    async with cluster() as made:
        await made.start(tls=issue_tls("seed").options())
        seed_address = made.nodes[0].address
        for name in ("b", "c"):
            await made.start(seeds=(seed_address,), tls=issue_tls(name).options())
        addresses = {node.address for node in made.nodes}

        def everyone_alive() -> bool:
            for service in made.services:
                membership = service.membership
                assert membership is not None
                states = {m.address: m.state for m in membership.members()}
                if states != dict.fromkeys(addresses, MemberState.ALIVE):
                    return False
            return True

        await wait_until(everyone_alive, within=DEADLINE, what="3 alive members on each node")
        # Without a certificate a node cannot join them: the seed refuses its connections.
        plain = await made.start(seeds=(seed_address,))
        seed_transport = made.nodes[0].transport
        assert isinstance(seed_transport, TCPTransport)
        await wait_until(lambda: seed_transport.stats().tls_refused >= 1, within=DEADLINE)
        assert known(plain) == {made.nodes[-1].address}
        assert made.nodes[-1].address not in known(made.services[0])
        # The counter gossips along the members found (peers came from membership only).
        made.nodes[1].increment(5)
        await wait_until(lambda: all(n.value == 5 for n in made.nodes[:3]), within=DEADLINE)

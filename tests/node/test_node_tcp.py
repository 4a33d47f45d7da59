"""Nodes gossiping over real TCP on loopback (ephemeral ports only)."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import socket
from typing import TYPE_CHECKING

import pytest

from dcounter_crdt import CounterState
from dcounter_node import Node, PeerManager
from dcounter_node._parts import SEED_READ_SIZE
from dcounter_protocol import (
    ProtocolError,
    Push,
    decode_frame,
    decode_message,
    encode_frame,
    encode_message,
)
from dcounter_protocol._tcp import TCPOptions, TCPTransport

from .conftest import apply_random_writes, fast_config, wait_for_convergence, wait_until

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Coroutine

    from dcounter_node import NodeConfig

OPTIONS = TCPOptions(dial_timeout=1.0, read_timeout=1.0, write_timeout=1.0)


def unused_address() -> str:
    """A loopback address nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"127.0.0.1:{port}"


@pytest.fixture
async def tcp_cluster() -> AsyncIterator[Callable[..., Coroutine[None, None, list[Node]]]]:
    """Start n TCP nodes in a full mesh (plus extra peers); all are closed at teardown."""
    made: list[Node] = []

    async def start(
        count: int, config: NodeConfig, extra_peers: tuple[str, ...] = ()
    ) -> list[Node]:
        nodes = [
            Node(TCPTransport("127.0.0.1:0", options=OPTIONS), config, rng=random.Random(i))
            for i in range(count)
        ]
        made.extend(nodes)
        for node in nodes:
            await node.start()
        for node in nodes:
            for peer in [*(other.address for other in nodes), *extra_peers]:
                node.peers.add(peer)
        return nodes

    try:
        yield start
    finally:
        await quiesce(made)
        for node in made:
            await node.close()


async def quiesce(nodes: list[Node]) -> None:
    """Stop gossip and wait until every message sent has been received.

    Closing a TCP node while a connection to it is being accepted can leak that socket in
    asyncio (a cancelled sock_accept racing its reader callback), so tests close quiet nodes.
    """
    for node in nodes:
        for peer in node.peers.peers():
            node.peers.remove(peer)

    def settled() -> bool:
        if any(node.sends_in_flight for node in nodes):
            return False
        snapshots = [node.stats.snapshot() for node in nodes]
        sent = sum(s.total_messages_sent for s in snapshots)
        handled = sum(s.total_messages_received + s.decode_errors for s in snapshots)
        return handled >= sent

    await wait_until(settled, what="the cluster to fall quiet")


def total_received(nodes: list[Node]) -> int:
    return sum(node.stats.snapshot().total_messages_received for node in nodes)


async def gossip_progress(nodes: list[Node], messages: int) -> None:
    target = total_received(nodes) + messages
    await wait_until(lambda: total_received(nodes) >= target)


async def write_rounds(nodes: list[Node], rng: random.Random, rounds: int) -> int:
    expected = 0
    for _ in range(rounds):
        expected += apply_random_writes(nodes, rng, 25)
        await gossip_progress(nodes, len(nodes))
    return expected


@pytest.mark.parametrize("delta_gossip", [True, False], ids=["deltas", "seed-exact"])
async def test_tcp_cluster_with_a_dead_peer_reaches_the_exact_value(
    tcp_cluster: Callable[..., Coroutine[None, None, list[Node]]], delta_gossip: bool
) -> None:
    dead = unused_address()
    config = fast_config(sync_interval=0.05, max_sync_peers=3, delta_gossip=delta_gossip)
    nodes = await tcp_cluster(6, config, (dead,))
    expected = await write_rounds(nodes, random.Random(7), rounds=4)
    await wait_for_convergence(nodes, expected)
    assert all(node.peers.self_address == node.address for node in nodes)
    await wait_until(lambda: sum(n.stats.snapshot().send_failures for n in nodes) > 0)


async def _send_raw(address: str, data: bytes) -> None:
    host, port = address.rsplit(":", 1)
    _, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(data)
        await writer.drain()
    finally:
        writer.close()
        await writer.wait_closed()


async def test_tcp_node_fed_garbage_frames_keeps_converging(
    tcp_cluster: Callable[..., Coroutine[None, None, list[Node]]],
) -> None:
    nodes = await tcp_cluster(4, fast_config(sync_interval=0.05))
    target = nodes[0]
    rng = random.Random(8)
    sender = unused_address()
    bad_payloads = [b"\x00\xc1", b"\x80garbage", rng.randbytes(40), b"\x00" + b"\x90"]
    expected = 0
    for payload in bad_payloads:
        await _send_raw(target.address, encode_frame(sender, payload))
        await _send_raw(target.address, b"\x00garbage with a zero address length")
        await _send_raw(target.address, b"\x20short")
        expected += apply_random_writes(nodes, rng, 10)
    # A valid frame still gets through after all that.
    valid = encode_message(Push(sender, {"raw#1": 11}, None))
    await _send_raw(target.address, encode_frame(sender, valid))
    expected += 11
    await wait_for_convergence(nodes, expected)
    assert target.stats.snapshot().decode_errors == len(bad_payloads)


async def test_tcp_node_address_is_the_bound_port() -> None:
    peers = PeerManager()
    async with Node(TCPTransport("127.0.0.1:0", options=OPTIONS), peers=peers) as node:
        host, port = node.address.rsplit(":", 1)
        assert host == "127.0.0.1"
        assert int(port) > 0
        assert node.replica_id.startswith(node.address + "#")
        assert peers.self_address == node.address


async def test_a_state_over_16_kib_reaches_a_reader_of_one_16_kib_chunk() -> None:
    # The Go reference reads one 16 KiB chunk per connection and drops the rest, so one
    # push of a large (legal) state never reached it: it must go out in parts that fit.
    received: list[CounterState] = []

    async def reference_like(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = (await reader.read())[:SEED_READ_SIZE]
        writer.close()
        try:
            received.append(decode_message(decode_frame(data).payload).state())
        except ProtocolError:
            received.append(CounterState.empty())  # a cut frame: nothing usable

    server = await asyncio.start_server(reference_like, "127.0.0.1", 0)
    listener = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    rng = random.Random(3)
    state = CounterState.from_maps(
        {f"10.{i // 200}.{i % 200}.9:7946#{rng.getrandbits(32):08x}": i + 1 for i in range(3000)}
    )
    config = fast_config(sync_interval=60.0, full_sync_interval=0.2, delta_gossip=False)
    transport = TCPTransport("127.0.0.1:0", options=dataclasses.replace(OPTIONS, wire="seed"))
    node = Node(transport, config, peers=PeerManager(peers=[listener]), state=state)
    try:
        await node.start()

        def whole_state_arrived() -> bool:
            merged = CounterState.empty()
            for part in received:
                merged = merged.merged(part)
            return merged == state

        await wait_until(whole_state_arrived)
    finally:
        await node.close()
        server.close()
        await server.wait_closed()

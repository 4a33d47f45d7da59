"""A dcounter-node process relays named counters between two nodes over real TCP."""

from __future__ import annotations

import random

from dcounter_node import Node, NodeConfig
from dcounter_node.testing import NodeProcess, wait_until
from dcounter_protocol import CAP_MEMBERSHIP, CAP_NAMED, NamedKind
from dcounter_protocol._tcp import TCPOptions, TCPTransport


def _node(seed: int) -> Node:
    options = TCPOptions(
        dial_timeout=2.0, write_timeout=2.0, capabilities=CAP_MEMBERSHIP | CAP_NAMED
    )
    return Node(
        TCPTransport("127.0.0.1:0", options=options),
        NodeConfig(sync_interval=0.1),
        rng=random.Random(seed),
    )


async def test_a_named_counter_travels_through_a_node_process() -> None:
    # a and b are not peers of each other: whatever one writes reaches the other only
    # through the dcounter-node process, which must negotiate CAP_NAMED and relay it.
    a, b = _node(1), _node(2)
    await a.start()
    await b.start()
    process = await NodeProcess.start(
        "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--in-memory",
        "--sync-interval", "0.1", "--peers", f"{a.address},{b.address}",
    )  # fmt: skip
    try:
        a.peers.add(process.gossip)
        b.peers.add(process.gossip)
        a.counters.increment("orders/eu", 5)
        await wait_until(lambda: b.counters.value("orders/eu") == 5, what="a's write on b")
        b.counters.decrement("orders/eu", 2)
        b.counters.increment("orders/us")
        await wait_until(
            lambda: (a.counters.value("orders/eu"), a.counters.value("orders/us")) == (3, 1),
            what="b's writes on a",
        )
        assert a.transport.capabilities(process.gossip) == CAP_MEMBERSHIP | CAP_NAMED  # type: ignore[attr-defined]
        received = b.stats.snapshot().messages_received
        assert received[NamedKind.NAMED_PUSH] > 0
        assert b.stats.snapshot().decode_errors == 0
    finally:
        for node in (a, b):
            node.peers.remove(process.gossip)
        await process.stop()
        await a.close()
        await b.close()

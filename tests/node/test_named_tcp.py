"""Named counters over real TCP: only on streams that confirmed CAP_NAMED (ephemeral ports)."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import pytest

from dcounter_node import Node
from dcounter_protocol import CAP_MEMBERSHIP, CAP_NAMED, NamedKind
from dcounter_protocol._tcp import TCPOptions, TCPTransport

from .conftest import fast_config, wait_until
from .test_node_tcp import quiesce

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Coroutine

NEW = CAP_MEMBERSHIP | CAP_NAMED


@pytest.fixture
async def nodes_with() -> AsyncIterator[Callable[..., Coroutine[None, None, list[Node]]]]:
    """Start TCP nodes offering the given capabilities, in a full mesh; closed at teardown."""
    made: list[Node] = []

    async def start(*capabilities: int | None) -> list[Node]:
        nodes = [
            Node(
                TCPTransport(
                    "127.0.0.1:0",
                    options=TCPOptions(dial_timeout=1.0, write_timeout=1.0, capabilities=caps),
                ),
                fast_config(sync_interval=0.05),
                rng=random.Random(index),
            )
            for index, caps in enumerate(capabilities)
        ]
        made.extend(nodes)
        for node in nodes:
            await node.start()
        for node in nodes:
            for other in nodes:
                node.peers.add(other.address)
        return nodes

    try:
        yield start
    finally:
        await quiesce(made)
        for node in made:
            await node.close()


def _named_received(node: Node) -> int:
    snapshot = node.stats.snapshot()
    return sum(snapshot.messages_received[kind] for kind in NamedKind)


async def test_a_named_counter_written_on_one_node_is_read_on_another(
    nodes_with: Callable[..., Coroutine[None, None, list[Node]]],
) -> None:
    a, b, c = await nodes_with(NEW, NEW, NEW)
    a.counters.increment("orders/eu", 5)
    b.counters.decrement("orders/eu", 2)
    c.counters.increment("orders/us")
    await wait_until(
        lambda: all(
            (n.counters.value("orders/eu"), n.counters.value("orders/us")) == (3, 1)
            for n in (a, b, c)
        ),
        what="the named counters on every node",
    )
    assert all(_named_received(n) > 0 for n in (a, b, c))
    assert all(n.stats.snapshot().decode_errors == 0 for n in (a, b, c))


async def test_an_older_node_keeps_the_default_counter_and_gets_no_named_message(
    nodes_with: Callable[..., Coroutine[None, None, list[Node]]],
) -> None:
    # An older dcounter node offers a version 1 hello (no capabilities at all).
    a, b, old = await nodes_with(NEW, NEW, None)
    a.counters.increment("pages/home", 4)
    a.increment(2)
    old.increment(3)
    await wait_until(
        lambda: all(n.value == 5 for n in (a, b, old)) and b.counters.value("pages/home") == 4,
        what="the default counter everywhere and the named one on the new nodes",
    )
    # More named traffic with the old node in the mesh (not a count of sync rounds: an idle
    # node spares them): a named write reaches b, a default one the old node after it.
    a.counters.increment("pages/home", 3)
    await wait_until(lambda: b.counters.value("pages/home") == 7, what="the second named write")
    a.increment(1)
    await wait_until(lambda: old.value == 6, what="the default counter's next write")
    assert a.stats.snapshot().messages_sent[NamedKind.NAMED_PUSH] > 0
    assert "pages/home" not in old.counters
    assert _named_received(old) == 0
    assert old.stats.snapshot().decode_errors == 0
    assert a.transport.capabilities(old.address) == 0  # type: ignore[attr-defined]


async def test_a_node_without_the_capability_sends_no_named_message(
    nodes_with: Callable[..., Coroutine[None, None, list[Node]]],
) -> None:
    new, plain = await nodes_with(NEW, CAP_MEMBERSHIP)
    plain.counters.increment("local-only", 2)
    new.increment()
    await wait_until(lambda: plain.value == 1, what="the default counter")

    def gossiped() -> int:
        return sum(n.stats.snapshot().total_messages_received for n in (new, plain))

    before = gossiped()
    await wait_until(lambda: gossiped() >= before + 10, what="ten more gossip messages")
    assert plain.stats.snapshot().messages_sent[NamedKind.NAMED_PULL] == 0
    assert _named_received(new) == 0
    assert "local-only" not in new.counters

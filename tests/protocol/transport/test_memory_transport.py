"""MemoryNetwork specifics: seeded drops, partitions, delay, cancellation, counters."""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING, Protocol

import pytest

from dcounter_protocol._errors import ConnectError, InvalidOptionError, TransportError
from dcounter_protocol._memory import MemoryNetwork, MemoryTransport

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from tests.protocol.transport.conftest import Inbox, WaitUntil


class Cluster:
    """Endpoints on one network, each with its own inbox."""

    def __init__(self, network: MemoryNetwork, make_inbox: type[Inbox]) -> None:
        self.network = network
        self._make_inbox = make_inbox
        self.endpoints: list[MemoryTransport] = []

    async def join(self, address: str) -> tuple[MemoryTransport, Inbox]:
        inbox = self._make_inbox()
        endpoint = self.network.transport(address)
        self.endpoints.append(endpoint)
        await endpoint.listen(inbox)
        return endpoint, inbox

    async def aclose(self) -> None:
        for endpoint in self.endpoints:
            await endpoint.close()


class MakeCluster(Protocol):
    def __call__(
        self, *, seed: int = 0, drop_rate: float = 0.0, delay: float = 0.0, jitter: float = 0.0
    ) -> Cluster: ...


@pytest.fixture
async def make_cluster(make_inbox: type[Inbox]) -> AsyncIterator[MakeCluster]:
    """Builds clusters on new networks (keyword arguments go to MemoryNetwork); closes them."""
    made: list[Cluster] = []

    def make(
        *, seed: int = 0, drop_rate: float = 0.0, delay: float = 0.0, jitter: float = 0.0
    ) -> Cluster:
        network = MemoryNetwork(seed=seed, drop_rate=drop_rate, delay=delay, jitter=jitter)
        cluster = Cluster(network, make_inbox)
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        await cluster.aclose()


async def _surviving_messages(
    make_cluster: MakeCluster, wait_until: WaitUntil, *, seed: int, count: int = 200
) -> list[bytes]:
    cluster = make_cluster(seed=seed, drop_rate=0.3)
    a, _ = await cluster.join("a")
    b, inbox_b = await cluster.join("b")
    for i in range(count):
        await a.send(b.address, b"%d" % i)
    await wait_until(lambda: cluster.network.in_flight == 0)
    received = await inbox_b.get_many(cluster.network.delivered)
    assert cluster.network.delivered + cluster.network.dropped == count
    assert inbox_b.queue.empty()
    return [payload for _, payload in received]


async def test_same_seed_drops_the_same_messages(
    make_cluster: MakeCluster, wait_until: WaitUntil
) -> None:
    first = await _surviving_messages(make_cluster, wait_until, seed=42)
    second = await _surviving_messages(make_cluster, wait_until, seed=42)

    assert first == second
    assert 0 < len(first) < 200


async def test_different_seed_drops_other_messages(
    make_cluster: MakeCluster, wait_until: WaitUntil
) -> None:
    first = await _surviving_messages(make_cluster, wait_until, seed=42)
    other = await _surviving_messages(make_cluster, wait_until, seed=43)

    assert first != other


async def test_drop_rate_one_loses_everything_and_is_settable(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster(drop_rate=1.0)
    a, _ = await cluster.join("a")
    b, inbox_b = await cluster.join("b")

    await a.send(b.address, b"lost")
    assert (cluster.network.dropped, cluster.network.in_flight) == (1, 0)

    cluster.network.drop_rate = 0.0
    await a.send(b.address, b"kept")
    assert await inbox_b.get() == ("a", b"kept")
    assert (cluster.network.delivered, cluster.network.dropped) == (1, 1)


async def test_two_way_partition_loses_both_directions_until_heal(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster()
    a, inbox_a = await cluster.join("a")
    b, inbox_b = await cluster.join("b")
    _, inbox_c = await cluster.join("c")
    cluster.network.partition(["a"], ["b"])

    await a.send("b", b"a->b")
    await b.send("a", b"b->a")
    await a.send("c", b"a->c")

    assert await inbox_c.get() == ("a", b"a->c")
    assert cluster.network.dropped == 2
    assert inbox_a.queue.empty()
    assert inbox_b.queue.empty()

    cluster.network.heal()
    await a.send("b", b"healed")
    assert await inbox_b.get() == ("a", b"healed")


async def test_one_way_partition_loses_only_that_direction(make_cluster: MakeCluster) -> None:
    cluster = make_cluster()
    a, inbox_a = await cluster.join("a")
    b, inbox_b = await cluster.join("b")
    cluster.network.partition(["a"], ["b"], one_way=True)

    await a.send("b", b"a->b")
    await b.send("a", b"b->a")

    assert await inbox_a.get() == ("b", b"b->a")
    assert cluster.network.dropped == 1
    assert inbox_b.queue.empty()
    assert cluster.network.is_partitioned("a", "b")
    assert not cluster.network.is_partitioned("b", "a")


async def test_partition_between_address_sets(make_cluster: MakeCluster) -> None:
    cluster = make_cluster()
    for name in ("a1", "a2", "b1", "b2"):
        await cluster.join(name)
    cluster.network.partition({"a1", "a2"}, {"b1", "b2"})

    cut = {(s, t) for s in ("a1", "a2", "b1", "b2") for t in ("a1", "a2", "b1", "b2")}
    assert {pair for pair in cut if cluster.network.is_partitioned(*pair)} == {
        ("a1", "b1"), ("a1", "b2"), ("a2", "b1"), ("a2", "b2"),
        ("b1", "a1"), ("b1", "a2"), ("b2", "a1"), ("b2", "a2"),
    }  # fmt: skip


async def test_delay_holds_each_message_for_that_long(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(delay=0.05)
    a, _ = await cluster.join("a")
    b, inbox_b = await cluster.join("b")
    loop = asyncio.get_running_loop()

    sent_at = loop.time()
    await a.send(b.address, b"slow")
    assert cluster.network.in_flight == 1

    assert await inbox_b.get() == ("a", b"slow")
    assert loop.time() - sent_at >= 0.05


async def test_jitter_keeps_delays_within_bounds(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(seed=3, delay=0.01, jitter=0.03)
    a, _ = await cluster.join("a")
    b, inbox_b = await cluster.join("b")
    loop = asyncio.get_running_loop()

    sent_at = loop.time()
    for i in range(10):
        await a.send(b.address, bytes([i]))
    received = await inbox_b.get_many(10)

    assert sorted(payload for _, payload in received) == [bytes([i]) for i in range(10)]
    assert loop.time() - sent_at >= 0.01


async def test_closing_receiver_cancels_deliveries_to_it(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(delay=60.0)
    a, _ = await cluster.join("a")
    b, _ = await cluster.join("b")
    await a.send(b.address, b"never")
    assert cluster.network.in_flight == 1

    await b.close()

    assert (cluster.network.in_flight, cluster.network.dropped) == (0, 1)


async def test_closing_sender_cancels_deliveries_from_it(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(delay=60.0)
    a, _ = await cluster.join("a")
    b, inbox_b = await cluster.join("b")
    await a.send(b.address, b"never")

    await a.close()

    assert (cluster.network.in_flight, cluster.network.dropped) == (0, 1)
    assert inbox_b.queue.empty()


async def test_send_to_endpoint_not_listening_raises_connect_error(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster()
    a, _ = await cluster.join("a")
    idle = cluster.network.transport("idle")
    cluster.endpoints.append(idle)

    with pytest.raises(ConnectError):
        await a.send("idle", b"x")


async def test_address_in_use_until_closed(make_cluster: MakeCluster) -> None:
    cluster = make_cluster()
    first, _ = await cluster.join("a")

    with pytest.raises(TransportError, match="already in use"):
        cluster.network.transport("a")

    await first.close()
    again, _ = await cluster.join("a")
    assert again.address == "a"


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("drop_rate", -0.1),
        ("drop_rate", 1.5),
        ("drop_rate", math.nan),
        ("delay", -1.0),
        ("delay", math.inf),
        ("jitter", -0.5),
    ],
)
def test_invalid_fault_settings_are_rejected(option: str, value: float) -> None:
    with pytest.raises(InvalidOptionError, match=option):
        MemoryNetwork(**{option: value})  # type: ignore[arg-type]
    network = MemoryNetwork()
    with pytest.raises(InvalidOptionError, match=option):
        setattr(network, option, value)

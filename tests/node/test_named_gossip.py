"""Named counters travel between nodes: deltas per key, bucketed anti-entropy, limits."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from dcounter_crdt import CounterMapState, CounterState
from dcounter_node._named_gossip import FORWARD_LIMIT
from dcounter_protocol import (
    NAMED_MAGIC,
    NamedBuckets,
    NamedKind,
    NamedPull,
    NamedPush,
    NamedWant,
    decode_named,
    encode_named,
)

from .conftest import PROBE_ADDRESS, fast_config, wait_until

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pytest

    from dcounter_node import Node

    from .conftest import ClusterFactory, Probe


def _named_sent(node: Node, kind: NamedKind) -> int:
    return node.stats.snapshot().messages_sent[kind]


def _agree(nodes: Sequence[Node], expected: dict[str, int]) -> bool:
    """Every node holds exactly ``expected`` (name -> value) and the same named states."""
    for node in nodes:
        counters = node.counters
        if len(counters) - (1 if "default" in counters else 0) != len(expected):
            return False
        if any(counters.value(name) != value for name, value in expected.items()):
            return False
    first = nodes[0].counters.snapshot()
    return all(node.counters.snapshot() == first for node in nodes[1:])


async def _settle(nodes: Sequence[Node], rounds: int = 2) -> None:
    """Wait for about ``rounds`` more sync rounds: messages in flight have landed.

    Counted over the whole cluster, not per node: a node in agreement that its peers just
    pulled spares its own round, so one node's pulls may pause for a while.
    """

    def pulls() -> int:
        return sum(_named_sent(node, NamedKind.NAMED_PULL) for node in nodes)

    before = pulls()
    await wait_until(
        lambda: pulls() >= before + rounds * len(nodes), what=f"{rounds} more sync rounds"
    )


def _repairs(nodes: Sequence[Node]) -> list[int]:
    kinds = (NamedKind.NAMED_BUCKETS, NamedKind.NAMED_KEYS, NamedKind.NAMED_PUSH)
    return [_named_sent(node, kind) for node in nodes for kind in kinds]


async def _quiet(nodes: Sequence[Node]) -> None:
    """Wait for 4 sync rounds in a row without repair traffic (stale exchanges are over)."""

    async def quiet_window() -> bool:
        now = _repairs(nodes)
        await _settle(nodes, 4)
        return _repairs(nodes) == now

    for _ in range(20):
        if await quiet_window():
            return
    raise AssertionError(f"repair traffic did not stop: {_repairs(nodes)}")


def _write(nodes: Sequence[Node], rng: random.Random, names: int, writes: int) -> dict[str, int]:
    expected: dict[str, int] = {}
    for _ in range(writes):
        node = rng.choice(nodes)
        name = f"key-{rng.randrange(names):05d}"
        amount = rng.randint(1, 5)
        if rng.random() < 0.3:
            node.counters.decrement(name, amount)
            amount = -amount
        else:
            node.counters.increment(name, amount)
        expected[name] = expected.get(name, 0) + amount
    return expected


def _merge(total: dict[str, int], more: dict[str, int]) -> dict[str, int]:
    merged = dict(total)
    for name, amount in more.items():
        merged[name] = merged.get(name, 0) + amount
    return merged


async def test_ten_thousand_keys_converge_exactly_through_loss_and_partitions(
    make_cluster: ClusterFactory,
) -> None:
    cluster = await make_cluster(3, config=fast_config(sync_interval=0.1), drop_rate=0.2, seed=7)
    nodes = cluster.nodes
    rng = random.Random(20)
    expected = _write(nodes, rng, 10_000, 20_000)
    # Every one of the 10,000 names is written at least once.
    for index in range(10_000):
        name = f"key-{index:05d}"
        if name not in expected:
            nodes[index % 3].counters.increment(name)
            expected[name] = 1
    # A partition: writes on both sides, the two connected nodes agree without the third.
    cluster.network.partition([nodes[2].address], [nodes[0].address, nodes[1].address])
    expected = _merge(expected, _write(nodes, rng, 10_000, 3_000))
    await wait_until(
        lambda: nodes[0].counters.snapshot() == nodes[1].counters.snapshot(),
        within=60,
        what="the connected side to agree",
    )
    assert nodes[2].counters.snapshot() != nodes[0].counters.snapshot()
    cluster.network.heal()
    await wait_until(
        lambda: _agree(nodes, expected),
        within=60,
        what=lambda: f"10,000 named counters to agree, sizes {[len(n.counters) for n in nodes]}",
    )
    assert [n.counters.value("key-00042") for n in nodes] == [expected["key-00042"]] * 3


async def test_one_write_reaches_every_node_as_a_delta(make_cluster: ClusterFactory) -> None:
    # Sync rounds far apart: only deltas carry the write. The writer pushes to 3 of its 4
    # peers; the fifth node gets it forwarded by those (each pushes to its 3 other peers).
    cluster = await make_cluster(5, config=fast_config(sync_interval=3600.0, delta_fanout=3))
    nodes = cluster.nodes
    assert nodes[0].counters.increment("pages/home", 3) == 3
    await wait_until(lambda: _agree(nodes, {"pages/home": 3}), what="the write everywhere")
    assert sum(_named_sent(node, NamedKind.NAMED_PUSH) for node in nodes) >= 4
    assert nodes[4].value == 0  # the default counter is untouched


async def test_a_node_that_missed_updates_catches_up_with_about_those_keys(
    make_cluster: ClusterFactory,
) -> None:
    cluster = await make_cluster(3, config=fast_config(sync_interval=0.05))
    nodes = cluster.nodes
    expected = {f"key-{i:05d}": 1 for i in range(5_000)}
    for name in expected:
        nodes[0].counters.increment(name)
    await wait_until(lambda: _agree(nodes, expected), within=30, what="the first 5,000 keys")
    lagging = nodes[2]
    cluster.network.partition([lagging.address], [nodes[0].address, nodes[1].address])
    for index in range(0, 5_000, 50):  # 100 updates the lagging node misses
        nodes[1].counters.increment(f"key-{index:05d}", 2)
        expected[f"key-{index:05d}"] += 2
    await wait_until(lambda: _agree(nodes[:2], expected), what="the connected side to agree")
    await _settle(nodes)
    before = lagging.stats.snapshot().bytes_received[NamedKind.NAMED_PUSH]
    cluster.network.heal()
    await wait_until(lambda: _agree(nodes, expected), within=30, what="the lagging node")
    repaired = lagging.stats.snapshot().bytes_received[NamedKind.NAMED_PUSH] - before
    whole = len(encode_named(NamedPush(nodes[0].counters.snapshot())))
    # About the 100 changed keys (each may come from both peers), not the 5,000.
    assert 0 < repaired < whole / 4


async def test_an_idle_cluster_sends_root_digests_only(make_cluster: ClusterFactory) -> None:
    cluster = await make_cluster(3, config=fast_config(sync_interval=0.02))
    nodes = cluster.nodes
    expected = {f"key-{i}": i + 1 for i in range(300)}
    for name, value in expected.items():
        nodes[value % 3].counters.increment(name, value)
    await wait_until(lambda: _agree(nodes, expected), what="the keys everywhere")
    await _quiet(nodes)
    before = [n.stats.snapshot() for n in nodes]
    await _settle(nodes, 10)
    for node, old in zip(nodes, before, strict=True):
        now = node.stats.snapshot()
        for kind in (NamedKind.NAMED_BUCKETS, NamedKind.NAMED_KEYS, NamedKind.NAMED_PUSH):
            assert now.messages_sent[kind] == old.messages_sent[kind], kind
        pulls_sent = (
            now.messages_sent[NamedKind.NAMED_PULL] - old.messages_sent[NamedKind.NAMED_PULL]
        )
        pull_bytes = now.bytes_sent[NamedKind.NAMED_PULL] - old.bytes_sent[NamedKind.NAMED_PULL]
        assert pull_bytes <= 18 * pulls_sent  # "DCN" 01 02 + [4096, root]


# -- hostile and limited input ------------------------------------------------------------


async def _probe_cluster(make_cluster: ClusterFactory, **overrides: Any) -> tuple[Node, Probe]:
    cluster = await make_cluster(config=fast_config(sync_interval=60.0, **overrides))
    (node,) = await cluster.spawn(1, extra_peers=[PROBE_ADDRESS])
    probe = await cluster.probe()
    return node, probe


def _push(counters: dict[str, dict[str, int]], *, full: bool = False) -> bytes:
    state = CounterMapState({k: CounterState.from_maps(v) for k, v in counters.items()})
    return encode_named(NamedPush(state, full))


GARBAGE = [
    NAMED_MAGIC + b"\x01\xc1",
    NAMED_MAGIC + b"\x07\x90",
    NAMED_MAGIC[:3] + b"\x09junk",
    NAMED_MAGIC + b"\x01\x92\xc2\x81\xa7default\x81\xa1r\x92\x01\x00",
]


async def test_garbage_named_payloads_are_counted_and_dropped(
    make_cluster: ClusterFactory, caplog: pytest.LogCaptureFixture
) -> None:
    node, probe = await _probe_cluster(make_cluster)
    for payload in GARBAGE:
        await probe.send(node.address, payload)
    await probe.send(node.address, _push({"fine": {"r": 4}}))
    await wait_until(lambda: node.counters.value("fine") == 4, what="the valid push after garbage")
    assert node.stats.snapshot().decode_errors == len(GARBAGE)
    assert len(node.counters) == 1
    assert "dropping a named-counter message" in caplog.text


async def test_a_push_past_max_keys_is_refused_whole(make_cluster: ClusterFactory) -> None:
    node, probe = await _probe_cluster(make_cluster, max_keys=3)
    node.counters.increment("mine")
    await probe.send(node.address, _push({"a": {"r": 1}, "b": {"r": 1}, "c": {"r": 1}}))
    await probe.send(node.address, _push({"d": {"r": 1}}))
    await wait_until(lambda: "d" in node.counters, what="the push within the limit")
    assert node.stats.snapshot().pushes_rejected == 1
    assert sorted(node.counters.names()) == ["d", "mine"]


async def test_a_push_with_a_too_long_name_is_refused_whole(make_cluster: ClusterFactory) -> None:
    node, probe = await _probe_cluster(make_cluster, max_key_length=8)
    await probe.send(node.address, _push({"short": {"r": 1}, "much-too-long": {"r": 1}}))
    await probe.send(node.address, _push({"ok": {"r": 1}}))
    await wait_until(lambda: "ok" in node.counters, what="the push within the limit")
    assert "short" not in node.counters
    assert node.stats.snapshot().pushes_rejected == 1


async def test_a_push_past_max_replicas_for_one_name_is_refused_whole(
    make_cluster: ClusterFactory,
) -> None:
    node, probe = await _probe_cluster(make_cluster, max_replicas=2)
    await probe.send(node.address, _push({"a": {"r1": 1, "r2": 1, "r3": 1}, "b": {"r": 1}}))
    await probe.send(node.address, _push({"ok": {"r1": 1, "r2": 1}}))
    await wait_until(lambda: "ok" in node.counters, what="the push within the limit")
    assert "b" not in node.counters
    assert node.stats.snapshot().pushes_rejected == 1


async def test_counts_claimed_for_our_own_replica_are_refused(make_cluster: ClusterFactory) -> None:
    node, probe = await _probe_cluster(make_cluster)
    node.counters.increment("x", 2)
    own = node.replica_id
    await probe.send(node.address, _push({"x": {own: 1000, "other": 5}}))
    await wait_until(lambda: node.counters.value("x") == 7, what="the honest part merged")
    assert node.counters.state("x").increments[own] == 2
    assert node.stats.snapshot().forged_refused == 1


async def test_a_pull_from_a_peer_with_another_root_gets_bucket_digests(
    make_cluster: ClusterFactory,
) -> None:
    node, probe = await _probe_cluster(make_cluster)
    node.counters.increment("x")
    sender, payload = await probe.receive_raw()  # the write's delta (the probe is a peer)
    assert decode_named(payload).kind is NamedKind.NAMED_PUSH
    await probe.send(node.address, encode_named(NamedPull(4096, 0)))
    sender, payload = await probe.receive_raw()
    answer = decode_named(payload)
    assert sender == node.address
    assert isinstance(answer, NamedBuckets)
    assert sum(1 for d in answer.digests if d) == 1


async def test_a_want_without_an_exchange_is_ignored(make_cluster: ClusterFactory) -> None:
    node, probe = await _probe_cluster(make_cluster)
    node.counters.increment("x")
    await probe.receive_raw()  # the write's delta
    await probe.send(node.address, encode_named(NamedWant((1, 2, 3))))
    await probe.send(node.address, _push({"y": {"r": 1}}))
    await wait_until(lambda: "y" in node.counters, what="the push after the want")
    assert _named_sent(node, NamedKind.NAMED_PUSH) == 1


async def test_a_small_delta_is_forwarded_and_a_bulk_one_left_to_anti_entropy(
    make_cluster: ClusterFactory,
) -> None:
    cluster = await make_cluster(config=fast_config(sync_interval=3600.0))
    first, second = await cluster.spawn(2, extra_peers=[PROBE_ADDRESS])
    probe = await cluster.probe()
    bulk = {f"bulk-{i}": {"r": 1} for i in range(FORWARD_LIMIT + 1)}
    await probe.send(first.address, _push(bulk))
    await wait_until(lambda: len(first.counters) == len(bulk), what="the bulk push merged")
    await probe.send(first.address, _push({"small": {"r": 1}}))
    await wait_until(lambda: "small" in second.counters, what="the small push forwarded")
    assert len(second.counters) == 1

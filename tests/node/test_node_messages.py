"""How a node answers each message, and what its own gossip rounds send (one probe peer)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dcounter_crdt import MAX_COUNT, CounterState
from dcounter_node import Node, SQLiteStore
from dcounter_protocol import (
    DigestAck,
    DigestPull,
    MemoryNetwork,
    Message,
    MessageType,
    Push,
    state_digest,
)

from .conftest import PROBE_ADDRESS, Probe, fast_config, wait_until

if TYPE_CHECKING:
    from pathlib import Path

    import pytest

    from dcounter_node import NodeConfig

    from .conftest import ClusterFactory

#: Long enough that a node never gossips on its own during a test.
QUIET = 60.0


async def lone_node(
    make_cluster: ClusterFactory,
    *,
    config: NodeConfig | None = None,
    state: CounterState | None = None,
    probe_is_peer: bool = True,
) -> tuple[Node, Probe]:
    quiet = fast_config(sync_interval=QUIET, full_sync_interval=QUIET, delta_gossip=False)
    cluster = await make_cluster(config=config or quiet)
    extra = [PROBE_ADDRESS] if probe_is_peer else []
    probe = await cluster.probe()
    (node,) = await cluster.spawn(1, extra_peers=extra, state=state)
    return node, probe


OTHER = CounterState.from_maps({"10.3.3.3:7946#00000001": 9}, {"10.3.3.3:7946#00000001": 2})


async def test_pull_with_matching_digest_is_answered_with_an_ack_echoing_it(
    make_cluster: ClusterFactory,
) -> None:
    node, probe = await lone_node(make_cluster, state=OTHER)
    await probe.send(node.address, DigestPull(probe.address, node.digest))
    sender, reply = await probe.receive()
    assert sender == node.address
    assert reply == DigestAck(node.address, node.digest)


async def test_pull_with_other_digest_is_answered_with_the_full_state(
    make_cluster: ClusterFactory,
) -> None:
    node, probe = await lone_node(make_cluster, state=OTHER)
    node.increment(4)
    await probe.send(node.address, DigestPull(probe.address, 12345))
    sender, reply = await probe.receive()
    assert sender == node.address
    assert reply.type is MessageType.PUSH
    assert reply.node_id == node.address
    assert reply.state() == node.state()
    assert reply.state() == OTHER.merged(CounterState.from_maps({node.replica_id: 4}))


async def test_node_with_empty_state_does_not_answer_a_mismatched_pull(
    make_cluster: ClusterFactory,
) -> None:
    node, probe = await lone_node(make_cluster)
    await probe.send(node.address, DigestPull(probe.address, 12345))
    assert await probe.replies_until_ack(node) == []


async def test_reply_goes_to_the_frame_sender_not_the_message_node_id(
    make_cluster: ClusterFactory,
) -> None:
    node, probe = await lone_node(make_cluster, state=OTHER)
    await probe.send(node.address, DigestPull("10.7.7.7:7946", node.digest))
    _, reply = await probe.receive()
    assert reply.type is MessageType.DIGEST_ACK


async def test_pull_from_an_address_that_is_not_a_peer_is_not_answered(
    make_cluster: ClusterFactory,
) -> None:
    # Reflection: a frame can name any host:port; the node must not dial it for the asker.
    node, probe = await lone_node(make_cluster, state=OTHER, probe_is_peer=False)
    await probe.send(node.address, DigestPull(probe.address, 12345))
    await probe.send(node.address, DigestPull(probe.address, node.digest))
    await wait_until(lambda: node.stats.snapshot().total_messages_received == 2)
    stats = node.stats.snapshot()
    assert (stats.total_messages_sent, stats.send_failures, stats.unknown_senders) == (0, 0, 2)
    assert probe.inbox.empty()


async def test_push_is_merged_by_pointwise_max_without_reply(make_cluster: ClusterFactory) -> None:
    node, probe = await lone_node(make_cluster, state=OTHER)
    other = "10.3.3.3:7946#00000001"
    await probe.send(node.address, Push(probe.address, {other: 5, "p#1": 3}, {other: 7, "p#1": 1}))
    assert await probe.replies_until_ack(node) == []
    assert node.state() == CounterState.from_maps({other: 9, "p#1": 3}, {other: 7, "p#1": 1})
    assert node.value == 4
    snapshot = node.stats.snapshot()
    assert (snapshot.merges, snapshot.merges_changed) == (1, 1)


async def test_stale_push_changes_nothing(make_cluster: ClusterFactory) -> None:
    node, probe = await lone_node(make_cluster, state=OTHER)
    watch = node.watch(initial=False)
    digest = node.digest
    await probe.send(node.address, Push(probe.address, {"10.3.3.3:7946#00000001": 1}, None))
    assert await probe.replies_until_ack(node) == []
    assert node.state() == OTHER
    assert node.digest == digest
    assert node.stats.snapshot().merges_changed == 0
    await watch.aclose()
    assert [value async for value in watch] == []


async def test_merged_push_is_seen_by_watchers(make_cluster: ClusterFactory) -> None:
    node, probe = await lone_node(make_cluster)
    watch = node.watch(initial=False)
    await probe.send(node.address, Push(probe.address, {"p#1": 6}, None))
    assert await anext(watch) == 6


async def test_ack_gets_no_reply(make_cluster: ClusterFactory) -> None:
    node, probe = await lone_node(make_cluster, state=OTHER)
    await probe.send(node.address, DigestAck(probe.address, 777))
    assert await probe.replies_until_ack(node) == []
    assert node.stats.snapshot().messages_received[MessageType.DIGEST_ACK] == 1


async def test_undecodable_payload_is_counted_and_dropped(make_cluster: ClusterFactory) -> None:
    node, probe = await lone_node(make_cluster, state=OTHER)
    for garbage in (b"\x00", b"\x00\xff\xfe", b"\x80not zstd", b"\x00\x93\x01\x02\x03"):
        await probe.send(node.address, garbage)
    assert await probe.replies_until_ack(node) == []
    assert node.stats.snapshot().decode_errors == 4
    assert node.state() == OTHER


async def test_push_with_an_empty_replica_id_is_counted_and_dropped(
    make_cluster: ClusterFactory,
) -> None:
    node, probe = await lone_node(make_cluster, state=OTHER)
    # {"t": 1, "id": "p", "inc": {"": 5}, "dec": nil}, as the reference would encode it.
    body = bytes.fromhex("84a174cc01a26964a170a3696e6381a0cf0000000000000005a3646563c0")
    await probe.send(node.address, b"\x00" + body)
    assert await probe.replies_until_ack(node) == []
    assert node.stats.snapshot().decode_errors == 1
    assert node.state() == OTHER


async def test_received_messages_are_counted_per_type_with_bytes(
    make_cluster: ClusterFactory,
) -> None:
    node, probe = await lone_node(make_cluster, state=OTHER)
    await probe.replies_until_ack(node)
    snapshot = node.stats.snapshot()
    assert snapshot.messages_received[MessageType.DIGEST_PULL] == 1
    assert snapshot.bytes_received[MessageType.DIGEST_PULL] > 0
    assert probe.address in snapshot.last_contact


async def test_digest_is_the_state_digest_and_follows_changes(
    make_cluster: ClusterFactory,
) -> None:
    node, _ = await lone_node(make_cluster, state=OTHER)
    assert node.digest == state_digest(OTHER.increments, OTHER.decrements)
    node.increment()
    state = node.state()
    assert node.digest == state_digest(state.increments, state.decrements)


# -- what the node sends on its own ---------------------------------------------------------


async def test_sync_round_pulls_with_the_current_digest(make_cluster: ClusterFactory) -> None:
    config = fast_config(full_sync_interval=QUIET, delta_gossip=False)
    node, probe = await lone_node(make_cluster, config=config, state=OTHER, probe_is_peer=True)
    sender, message = await probe.receive()
    assert sender == node.address
    assert message == DigestPull(node.address, node.digest)


async def test_full_sync_round_pushes_the_full_state(make_cluster: ClusterFactory) -> None:
    config = fast_config(sync_interval=QUIET, full_sync_interval=0.02, delta_gossip=False)
    _, probe = await lone_node(make_cluster, config=config, state=OTHER, probe_is_peer=True)
    _, message = await probe.receive()
    assert message.type is MessageType.PUSH
    assert message.state() == OTHER


async def test_delta_push_carries_only_the_changed_entries(make_cluster: ClusterFactory) -> None:
    config = fast_config(sync_interval=QUIET, full_sync_interval=QUIET)
    node, probe = await lone_node(make_cluster, config=config, state=OTHER, probe_is_peer=True)
    node.increment(2)
    node.increment(3)
    node.decrement(1)
    _, message = await probe.receive()
    assert message.type is MessageType.PUSH
    assert message.state() == CounterState.from_maps({node.replica_id: 5}, {node.replica_id: 1})


async def test_seed_exact_mode_sends_no_delta_push(make_cluster: ClusterFactory) -> None:
    config = fast_config(full_sync_interval=QUIET, delta_gossip=False)
    node, probe = await lone_node(make_cluster, config=config, state=OTHER, probe_is_peer=True)
    node.increment(2)
    digest = node.digest
    seen: list[Message] = []
    while not seen or seen[-1].digest != digest:
        _, message = await probe.receive()
        seen.append(message)
    assert {message.type for message in seen} == {MessageType.DIGEST_PULL}


async def test_merged_change_is_forwarded_but_not_echoed_to_its_source(
    make_cluster: ClusterFactory,
) -> None:
    config = fast_config(sync_interval=QUIET, full_sync_interval=QUIET)
    cluster = await make_cluster(config=config)
    source, other = await cluster.probe(), await cluster.probe("10.8.8.9:7946")
    (node,) = await cluster.spawn(1, extra_peers=[source.address, other.address])
    await source.send(node.address, Push(source.address, {"p#1": 6}, None))
    _, forwarded = await other.receive()
    assert forwarded.state() == CounterState.from_maps({"p#1": 6})
    node.increment()
    _, message = await source.receive()
    assert message.state() == CounterState.from_maps({node.replica_id: 1})


def _digest_of(state: CounterState) -> int:
    return state_digest(state.increments, state.decrements)


DELTAS_QUIET = fast_config(sync_interval=QUIET, full_sync_interval=QUIET)


async def test_full_push_lacking_our_entries_is_answered_with_just_those(
    make_cluster: ClusterFactory,
) -> None:
    node, probe = await lone_node(make_cluster, config=DELTAS_QUIET, state=OTHER)
    theirs = CounterState.from_maps({"p#1": 3})
    full = Push(probe.address, {"p#1": 3}, None, _digest_of(theirs))
    await probe.send(node.address, full)
    _, message = await probe.receive()
    assert message.type is MessageType.PUSH
    assert message.state() == OTHER
    assert message.digest == 0
    assert node.state() == OTHER.merged(theirs)


async def test_full_push_equal_to_our_state_after_merge_gets_no_answer(
    make_cluster: ClusterFactory,
) -> None:
    node, probe = await lone_node(make_cluster, config=DELTAS_QUIET, state=OTHER)
    theirs = OTHER.merged(CounterState.from_maps({"p#1": 3}))
    full = Push(probe.address, theirs.increments, theirs.decrements, _digest_of(theirs))
    await probe.send(node.address, full)
    assert await probe.replies_until_ack(node) == []
    assert node.state() == theirs


async def test_delta_push_gets_no_answer_even_when_it_lacks_our_entries(
    make_cluster: ClusterFactory,
) -> None:
    node, probe = await lone_node(make_cluster, config=DELTAS_QUIET, state=OTHER)
    await probe.send(node.address, Push(probe.address, {"p#1": 3}, None))
    assert await probe.replies_until_ack(node) == []


async def test_full_state_reply_carries_our_digest_with_delta_gossip(
    make_cluster: ClusterFactory,
) -> None:
    node, probe = await lone_node(make_cluster, config=DELTAS_QUIET, state=OTHER)
    await probe.send(node.address, DigestPull(probe.address, 12345))
    _, reply = await probe.receive()
    assert reply == Push(node.address, OTHER.increments, OTHER.decrements, node.digest)


async def test_seed_exact_full_state_reply_has_no_digest_like_the_reference(
    make_cluster: ClusterFactory,
) -> None:
    node, probe = await lone_node(make_cluster, state=OTHER)
    await probe.send(node.address, DigestPull(probe.address, 12345))
    _, reply = await probe.receive()
    assert reply == Push(node.address, OTHER.increments, OTHER.decrements)


async def test_forged_push_cannot_raise_the_nodes_own_count(make_cluster: ClusterFactory) -> None:
    # One push claiming inc[<the node's own replica>] = 2**64-1 used to be merged, and every
    # later increment then failed (CountOverflowError, 409 over HTTP), forever.
    node, probe = await lone_node(make_cluster)
    node.increment(2)
    other = "10.3.3.3:7946#00000001"
    forged = Push(probe.address, {node.replica_id: MAX_COUNT, other: 5}, {node.replica_id: 1})
    await probe.send(node.address, forged)
    await wait_until(lambda: node.stats.snapshot().merges == 1)
    assert node.increment(1) == 3 + 5
    assert node.state() == CounterState.from_maps({node.replica_id: 3, other: 5})
    assert node.stats.snapshot().forged_refused == 1


async def test_push_past_max_replicas_is_rejected_whole(make_cluster: ClusterFactory) -> None:
    # Made-up replica ids used to grow the state (and the database) without bound.
    config = fast_config(
        sync_interval=QUIET, full_sync_interval=QUIET, delta_gossip=False, max_replicas=4
    )
    node, probe = await lone_node(make_cluster, config=config, state=OTHER)
    node.increment(1)  # the node's own replica and OTHER's: 2 of 4
    flood = {f"10.8.8.8:7946#{i:08x}": 1 for i in range(3)}
    await probe.send(node.address, Push(probe.address, flood, None))
    await probe.send(node.address, Push(probe.address, dict(list(flood.items())[:2]), None))
    await wait_until(lambda: node.stats.snapshot().total_messages_received == 2)
    assert len(node.state().replicas()) == 4
    assert node.stats.snapshot().pushes_rejected == 1


async def test_push_naming_a_replica_id_over_255_bytes_is_rejected_whole(
    make_cluster: ClusterFactory,
) -> None:
    node, probe = await lone_node(make_cluster, state=OTHER)
    longest, too_long = "é" * 127 + "x", "é" * 128  # 255 and 256 UTF-8 bytes
    await probe.send(node.address, Push(probe.address, {too_long: 1, "p#1": 1}, None))
    await probe.send(node.address, Push(probe.address, {longest: 1}, None))
    await wait_until(lambda: node.stats.snapshot().total_messages_received == 2)
    assert node.state() == OTHER.merged(CounterState.from_maps({longest: 1}))
    assert node.stats.snapshot().pushes_rejected == 1


async def test_forged_pushes_are_logged_once_per_peer(
    make_cluster: ClusterFactory, caplog: pytest.LogCaptureFixture
) -> None:
    node, probe = await lone_node(make_cluster)
    node.increment(1)
    for _ in range(3):
        await probe.send(node.address, Push(probe.address, {node.replica_id: 99}, None))
    await wait_until(lambda: node.stats.snapshot().forged_refused == 3)
    lines = [r for r in caplog.records if "refused counts for our own replica" in r.getMessage()]
    assert len(lines) == 1
    assert probe.address in lines[0].getMessage()


async def test_a_rejected_push_leaves_nothing_in_the_store(tmp_path: Path) -> None:
    network = MemoryNetwork()
    probe = Probe(network)
    await probe.start()
    config = fast_config(
        sync_interval=QUIET, full_sync_interval=QUIET, delta_gossip=False, max_replicas=3
    )
    path = tmp_path / "state.sqlite3"
    node = Node(network.transport("10.0.0.1:7946"), config, store=SQLiteStore(path))
    try:
        await node.start()
        node.increment(2)
        flood = {f"10.8.8.8:7946#{i:08x}": 1 for i in range(3)}
        await probe.send(node.address, Push(probe.address, flood, None))
        await wait_until(lambda: node.stats.snapshot().pushes_rejected == 1)
        await node.commit()
        replica = node.replica_id
    finally:
        await node.close()
        await probe.close()
    store = SQLiteStore(path)
    stored = await store.open()
    await store.close()
    assert stored is not None
    assert stored.state == CounterState.from_maps({replica: 2})

"""Our node answering the frames a Go peer sent a real reference node (golden node_exchange).

The reference node starts with ``{self: 0}`` in both maps; ours keeps no zero entries, so its
state is the reference's minus those zeros, and its digest differs wherever the reference's
covers them. Each step checks what the reference did where that carries over, and the
documented difference where it does not.
"""

from __future__ import annotations

from typing import Any

import pytest

from dcounter_crdt import CounterState
from dcounter_node import Node, PeerManager
from dcounter_protocol import DigestPull, Message, MessageType, decode_frame
from dcounter_protocol._memory import MemoryNetwork

from .conftest import Probe, fast_config

pytestmark = pytest.mark.golden

QUIET = 60.0


def _state(inc: dict[str, int] | None, dec: dict[str, int] | None) -> CounterState:
    return CounterState.from_maps(inc, dec)


async def test_node_answers_the_reference_exchange(golden: dict[str, Any]) -> None:
    exchange = golden["node_exchange"]
    node_address, peer_address = exchange["node_addr"], exchange["peer_addr"]
    network = MemoryNetwork()
    config = fast_config(sync_interval=QUIET, full_sync_interval=QUIET, delta_gossip=False)
    # The reference's peer is one of the node's peers: a node answers only those.
    node = Node(network.transport(node_address), config, peers=PeerManager(peers=[peer_address]))
    probe = Probe(network, peer_address)
    await probe.start()
    await node.start()
    try:
        for step in exchange["steps"]:
            name = step["step"]
            frame = decode_frame(bytes.fromhex(step["sent_frame_hex"]))
            assert frame.sender == peer_address, name
            await probe.send(node_address, frame.payload)
            replies = await probe.replies_until_ack(node)

            assert node.state() == _state(step["node_inc_after"], step["node_dec_after"]), name
            assert node.value == step["node_value_after"], name

            reply = step["reply"]
            if reply is None:
                assert replies == [], name
                continue
            sent_digest = int(step["sent"]["digest"], 16)
            if reply["type"] == MessageType.DIGEST_ACK:
                # The reference's digest covers its {self: 0}: ours cannot match it, so we
                # answer as to any mismatch; with our own digest the ack is byte-exact.
                assert sent_digest != node.digest, name
                _assert_full_push_or_nothing(node, replies, name)
                await probe.send(node_address, DigestPull(peer_address, node.digest))
                sender, payload = await probe.receive_raw()
                golden_ack = bytes.fromhex(step["reply_payload_hex"])
                assert sender == node_address, name
                assert payload == golden_ack[:-8] + node.digest.to_bytes(8, "big"), name
            else:
                assert reply["type"] == MessageType.PUSH, name
                assert _state(reply["inc"], reply["dec"]) == node.state(), name
                _assert_full_push_or_nothing(node, replies, name)
    finally:
        await node.close()
        await probe.close()


def _assert_full_push_or_nothing(node: Node, replies: list[Message], step: str) -> None:
    state = node.state()
    if not state:
        # The reference would push {self: 0}; an empty push is invalid on the wire.
        assert replies == [], step
        return
    assert len(replies) == 1, step
    (push,) = replies
    assert push.type is MessageType.PUSH, step
    assert push.node_id == node.address, step
    assert push.state() == state, step


async def test_reference_push_frames_merge_like_the_reference(golden: dict[str, Any]) -> None:
    """Every golden push, applied alone, gives the reference's entries for that sender."""
    exchange = golden["node_exchange"]
    pushes = [s for s in exchange["steps"] if s["sent"]["type"] == MessageType.PUSH]
    network = MemoryNetwork()
    config = fast_config(sync_interval=QUIET, full_sync_interval=QUIET, delta_gossip=False)
    peers = PeerManager(peers=[exchange["peer_addr"]])
    async with Node(network.transport(exchange["node_addr"]), config, peers=peers) as node:
        probe = Probe(network, exchange["peer_addr"])
        await probe.start()
        try:
            for step in pushes:
                payload = decode_frame(bytes.fromhex(step["sent_frame_hex"])).payload
                await probe.send(node.address, payload)
            await probe.replies_until_ack(node)
        finally:
            await probe.close()
        final = pushes[-1]
        assert node.state() == _state(final["node_inc_after"], final["node_dec_after"])
        assert node.stats.snapshot().merges == len(pushes)
        assert node.stats.snapshot().merges_changed == 1

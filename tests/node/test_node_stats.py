"""NodeStats: counters per message type and immutable snapshots."""

from __future__ import annotations

import dataclasses
import threading

import pytest

from dcounter_node import NodeStats
from dcounter_protocol import MessageType, NamedKind

PEER = "127.0.0.1:7001"


def test_new_stats_count_zero_for_every_message_type() -> None:
    snapshot = NodeStats().snapshot()
    every = (*MessageType, *NamedKind)
    assert dict(snapshot.messages_sent) == dict.fromkeys(every, 0)
    assert dict(snapshot.bytes_received) == dict.fromkeys(every, 0)
    assert snapshot.last_contact == {}


def test_sent_and_received_are_counted_per_type_with_bytes() -> None:
    stats = NodeStats()
    stats.record_sent(MessageType.DIGEST_PULL, 40, PEER)
    stats.record_sent(MessageType.DIGEST_PULL, 40, PEER)
    stats.record_sent(MessageType.PUSH, 100, PEER)
    stats.record_received(MessageType.DIGEST_ACK, 41, PEER)
    snapshot = stats.snapshot()
    assert snapshot.messages_sent[MessageType.DIGEST_PULL] == 2
    assert snapshot.bytes_sent[MessageType.DIGEST_PULL] == 80
    assert snapshot.total_messages_sent == 3
    assert snapshot.total_bytes_sent == 180
    assert snapshot.messages_received[MessageType.DIGEST_ACK] == 1
    assert snapshot.total_bytes_received == 41


def test_contact_with_a_peer_records_its_time() -> None:
    stats = NodeStats()
    stats.record_received(MessageType.PUSH, 10, PEER)
    assert list(stats.snapshot().last_contact) == [PEER]
    assert stats.snapshot().last_contact[PEER] > 0


def test_merges_drops_and_failures_are_counted() -> None:
    stats = NodeStats()
    stats.record_merge(changed=True)
    stats.record_merge(changed=False)
    stats.record_inbound_drop()
    stats.record_outbound_drop()
    stats.record_outbound_drop()
    stats.record_decode_error()
    stats.record_send_failure()
    snapshot = stats.snapshot()
    assert (snapshot.merges, snapshot.merges_changed) == (2, 1)
    assert (snapshot.inbound_drops, snapshot.outbound_drops) == (1, 2)
    assert (snapshot.decode_errors, snapshot.send_failures) == (1, 1)


def test_snapshot_is_frozen_and_detached_from_later_updates() -> None:
    stats = NodeStats()
    snapshot = stats.snapshot()
    stats.record_sent(MessageType.PUSH, 5, PEER)
    assert snapshot.total_messages_sent == 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        snapshot.merges = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        snapshot.messages_sent[MessageType.PUSH] = 1  # type: ignore[index]


def test_snapshots_from_another_thread_see_whole_updates() -> None:
    stats = NodeStats()
    done = threading.Event()
    torn: list[int] = []

    def read() -> None:
        while not done.is_set():
            snapshot = stats.snapshot()
            if (
                snapshot.bytes_sent[MessageType.PUSH]
                != 7 * snapshot.messages_sent[MessageType.PUSH]
            ):
                torn.append(snapshot.messages_sent[MessageType.PUSH])

    reader = threading.Thread(target=read)
    reader.start()
    for i in range(20_000):
        stats.record_sent(MessageType.PUSH, 7, f"10.0.{i % 50}.1:1")
    done.set()
    reader.join()
    assert torn == []
    assert stats.snapshot().messages_sent[MessageType.PUSH] == 20_000

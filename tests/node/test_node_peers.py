"""PeerManager: a thread-safe set of peers that never holds the node itself."""

from __future__ import annotations

import random
import threading

import pytest

from dcounter_node import InvalidPeerAddressError, PeerManager, validate_peer_address

SELF = "127.0.0.1:7000"
A = "127.0.0.1:7001"
B = "127.0.0.1:7002"


def test_add_reports_whether_the_peer_is_new() -> None:
    peers = PeerManager(SELF)
    assert peers.add(A) is True
    assert peers.add(A) is False
    assert peers.peers() == [A]


def test_remove_reports_whether_the_peer_was_known() -> None:
    peers = PeerManager(SELF, [A, B])
    assert peers.remove(A) is True
    assert peers.remove(A) is False
    assert peers.peers() == [B]


def test_peers_are_listed_sorted() -> None:
    assert PeerManager(SELF, [B, A]).peers() == [A, B]


def test_peers_returns_a_copy() -> None:
    peers = PeerManager(SELF, [A])
    listed = peers.peers()
    listed.append(B)
    assert peers.peers() == [A]


def test_own_address_is_never_a_peer() -> None:
    peers = PeerManager(SELF, [SELF, A])
    assert peers.add(SELF) is False
    assert SELF not in peers
    assert len(peers) == 1


def test_setting_the_own_address_forgets_it_as_a_peer() -> None:
    peers = PeerManager(None, [A, B])
    peers.set_self_address(A)
    assert peers.peers() == [B]
    assert peers.self_address == A
    assert peers.add(A) is False


def test_contains_and_len() -> None:
    peers = PeerManager(SELF, [A])
    assert A in peers
    assert B not in peers
    assert len(peers) == 1


@pytest.mark.parametrize(
    "bad",
    ["", "localhost", "host:", ":7000", "host:0", "host:65536", "host:7o00", "a b:1", " h:1", 7000],
)
def test_invalid_address_is_rejected(bad: object) -> None:
    with pytest.raises(InvalidPeerAddressError):
        PeerManager(SELF).add(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("good", ["127.0.0.1:1", "node-3.example:65535", "[::1]:7946"])
def test_host_port_addresses_are_accepted(good: str) -> None:
    assert validate_peer_address(good) == good


def test_sample_returns_distinct_peers_up_to_the_count() -> None:
    peers = PeerManager(SELF, [f"10.0.0.{i}:1" for i in range(1, 11)])
    chosen = peers.sample(3, random.Random(1))
    assert len(set(chosen)) == 3
    assert set(chosen) <= set(peers.peers())
    assert sorted(peers.sample(50, random.Random(1))) == peers.peers()


def test_concurrent_adds_and_removes_from_threads_keep_the_set_exact() -> None:
    peers = PeerManager(SELF)
    kept = [f"10.1.{i // 200}.{i % 200 + 1}:1" for i in range(800)]
    churned = [f"10.2.{i // 200}.{i % 200 + 1}:1" for i in range(800)]
    start = threading.Barrier(8)
    removed: list[bool] = []

    def add_all(addresses: list[str]) -> None:
        start.wait()
        for addr in addresses:
            peers.add(addr)
            peers.peers()

    def add_then_remove(addresses: list[str]) -> None:
        start.wait()
        for addr in addresses:
            peers.add(addr)
        results = [peers.remove(addr) for addr in addresses]
        removed.extend(results)

    threads = [threading.Thread(target=add_all, args=(kept[i::4],)) for i in range(4)]
    threads += [threading.Thread(target=add_then_remove, args=(churned[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peers.peers() == sorted(kept)
    assert removed == [True] * len(churned)

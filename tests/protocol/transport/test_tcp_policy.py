"""The per-peer wire decision and the re-open backoff, as pure code: no sockets, no loop."""

from __future__ import annotations

import pytest

from dcounter_protocol._tcp._policy import Backoff, PeerPolicy, Route


def policy() -> PeerPolicy:
    return PeerPolicy(reprobe_interval=60.0, unanswered_retry=2.0)


def test_a_new_peer_is_offered_a_stream() -> None:
    assert policy().route(100.0, has_stream=False) is Route.OFFER


def test_a_peer_with_a_stream_gets_its_messages_queued() -> None:
    refusing = policy()
    refusing.not_confirmed(100.0, refused=True)

    assert refusing.route(100.0, has_stream=True) is Route.QUEUE


def test_a_refusing_peer_gets_the_seed_framing_until_the_reprobe_interval() -> None:
    peer = policy()

    assert peer.not_confirmed(100.0, refused=True) == 60.0
    assert peer.route(159.9, has_stream=False) is Route.SEED
    assert not peer.probe_due(159.9)
    assert peer.route(160.0, has_stream=False) is Route.OFFER
    assert peer.probe_due(160.0)


def test_a_silent_or_resetting_peer_is_probed_again_sooner() -> None:
    peer = policy()

    assert peer.not_confirmed(100.0, refused=False) == 2.0
    assert peer.route(101.9, has_stream=False) is Route.SEED
    assert peer.route(102.0, has_stream=False) is Route.OFFER


def test_a_confirmation_ends_the_seed_only_period() -> None:
    peer = policy()
    peer.not_confirmed(100.0, refused=True)

    peer.confirmed()

    assert peer.route(100.0, has_stream=False) is Route.OFFER


def test_backoff_doubles_up_to_the_maximum_then_gives_up() -> None:
    backoff = Backoff(0.05, 0.3)
    delays = [backoff.delay]
    while not backoff.failed():
        delays.append(backoff.delay)

    assert delays == pytest.approx([0.05, 0.1, 0.2, 0.3])


def test_backoff_starting_at_the_maximum_gives_up_after_one_failure() -> None:
    backoff = Backoff(1.0, 1.0)

    assert backoff.failed()
    assert backoff.delay == 1.0

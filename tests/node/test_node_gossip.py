"""The sans-IO gossip core: one event in, the exact messages out (no asyncio, no sockets)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from dcounter_crdt import CounterState, PNCounter
from dcounter_node import NodeConfig, PeerManager
from dcounter_node import _parts as parts_module
from dcounter_node._gossip import Gossip
from dcounter_node._gossip_types import Outgoing, is_quiet_pull
from dcounter_node._parts import SEED_READ_SIZE, encode_push_parts
from dcounter_protocol import (
    DigestAck,
    DigestPull,
    Message,
    MessageType,
    Push,
    decode_message,
    encode_message,
    state_digest,
)

ME = "10.0.0.1:7946"
PEER = "10.0.0.2:7946"
OTHER = "10.0.0.3:7946"
STRANGER = "10.9.9.9:7946"
MINE = f"{ME}#1"
THEIRS = f"{PEER}#1"


def make(
    state: CounterState | None = None,
    *,
    peers: tuple[str, ...] = (PEER,),
    streams: bool = True,
    **config: Any,
) -> Gossip:
    return Gossip(
        PNCounter(MINE, state),
        ME,
        NodeConfig(**config),
        PeerManager(ME, peers),
        random.Random(1),
        streams_to=lambda address: streams,
    )


def sent(outgoing: list[Outgoing]) -> list[tuple[str, Message]]:
    return [(send.address, decode_message(send.data)) for send in outgoing]


def digest(state: CounterState) -> int:
    return state_digest(state.increments, state.decrements)


HELD = CounterState.from_maps({MINE: 3, THEIRS: 2})


# -- receive: one message in, the replies out ------------------------------------------------


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        pytest.param(
            DigestPull(PEER, digest(HELD)),
            [(PEER, DigestAck(ME, digest(HELD)))],
            id="pull-same-digest-acks",
        ),
        pytest.param(
            DigestPull(PEER, 12345),
            [(PEER, Push(ME, HELD.increments, HELD.decrements, digest(HELD)))],
            id="pull-other-digest-pushes-full-state",
        ),
        pytest.param(DigestAck(PEER, 777), [], id="ack-sends-nothing"),
        pytest.param(Push(PEER, {THEIRS: 1}, None), [], id="older-delta-sends-nothing"),
        pytest.param(
            Push(PEER, {THEIRS: 2}, None, digest(CounterState.from_maps({THEIRS: 2}))),
            [(PEER, Push(ME, {MINE: 3}, {}))],
            id="full-push-lacking-ours-gets-the-difference",
        ),
        pytest.param(
            Push(PEER, HELD.increments, None, digest(HELD)),
            [],
            id="full-push-equal-to-ours-sends-nothing",
        ),
    ],
)
def test_a_received_message_gets_these_replies(
    message: Message, expected: list[tuple[str, Message]]
) -> None:
    gossip = make(HELD)
    received = gossip.receive(PEER, encode_message(message))
    assert (received.error, sent(received.sends)) == (None, expected)


def test_a_push_merges_what_is_newer_and_reports_it() -> None:
    gossip = make(HELD)
    received = gossip.receive(PEER, encode_message(Push(PEER, {THEIRS: 5, MINE: 1}, {THEIRS: 1})))
    assert received.learned == CounterState.from_maps({THEIRS: 5}, {THEIRS: 1})
    assert gossip.state() == CounterState.from_maps({MINE: 3, THEIRS: 5}, {THEIRS: 1})


def test_seed_exact_gossip_pushes_full_state_without_digest() -> None:
    gossip = make(HELD, delta_gossip=False)
    received = gossip.receive(PEER, encode_message(DigestPull(PEER, 1)))
    assert sent(received.sends) == [(PEER, Push(ME, HELD.increments, HELD.decrements))]


def test_an_empty_state_answers_a_differing_pull_with_nothing() -> None:
    received = make().receive(PEER, encode_message(DigestPull(PEER, 1)))
    assert received.sends == []


def test_an_invalid_payload_is_reported_not_raised() -> None:
    received = make(HELD).receive(PEER, b"\x07garbage")
    assert received.message is None
    assert received.error is not None


# -- local updates and delta flushes ---------------------------------------------------------


def test_a_local_update_is_flushed_as_a_delta_to_the_fanout() -> None:
    gossip = make(peers=(PEER, OTHER))
    gossip.increment(4)
    assert gossip.has_pending
    out = sent(gossip.flush())
    assert sorted(out, key=lambda item: item[0]) == [
        (PEER, Push(ME, {MINE: 4}, {})),
        (OTHER, Push(ME, {MINE: 4}, {})),
    ]
    assert (gossip.has_pending, gossip.flush()) == (False, [])


def test_a_learned_change_is_not_flushed_back_to_where_it_came_from() -> None:
    gossip = make(peers=(PEER, OTHER))
    gossip.receive(PEER, encode_message(Push(PEER, {THEIRS: 2}, None)))
    assert sent(gossip.flush()) == [(OTHER, Push(ME, {THEIRS: 2}, {}))]


def test_local_updates_are_taken_once_joined_for_the_driver_to_persist() -> None:
    gossip = make(peers=(PEER,))
    gossip.add(4)
    gossip.add(1)
    gossip.subtract(2)
    assert gossip.take_local() == CounterState.from_maps({MINE: 5}, {MINE: 2})
    assert not gossip.take_local()
    assert gossip.counter.value == 3


def test_local_updates_taken_by_an_event_still_wait_for_the_driver() -> None:
    gossip = make(peers=(PEER,))
    gossip.add(4)
    (out,) = sent(gossip.flush())
    assert out == (PEER, Push(ME, {MINE: 4}, {}))
    assert gossip.take_local() == CounterState.from_maps({MINE: 4})


@pytest.mark.parametrize("delta_gossip", [True, False])
def test_a_local_update_changes_the_state_and_digest_at_once(delta_gossip: bool) -> None:
    gossip = make(HELD, delta_gossip=delta_gossip)
    assert gossip.digest == digest(HELD)
    gossip.add(2)
    now = HELD.merged(CounterState.from_maps({MINE: 5}))
    assert (gossip.state(), gossip.digest) == (now, digest(now))
    (pull,) = sent(gossip.sync_tick())
    assert pull == (PEER, DigestPull(ME, digest(now)))


def test_a_full_push_after_local_updates_carries_them() -> None:
    gossip = make(HELD, delta_gossip=False)
    gossip.state()  # cached before the update
    gossip.subtract(1)
    received = gossip.receive(PEER, encode_message(DigestPull(PEER, 1)))
    assert sent(received.sends) == [(PEER, Push(ME, HELD.increments, {MINE: 1}))]
    assert gossip.take_local() == CounterState.from_maps(None, {MINE: 1})


def test_without_delta_gossip_nothing_is_pending() -> None:
    gossip = make(delta_gossip=False)
    gossip.increment(1)
    assert (gossip.has_pending, gossip.flush()) == (False, [])


# -- ticks -----------------------------------------------------------------------------------


def test_a_sync_tick_pulls_with_our_digest() -> None:
    gossip = make(HELD)
    assert sent(gossip.sync_tick()) == [(PEER, DigestPull(ME, digest(HELD)))]


def test_a_full_sync_tick_is_skipped_once_a_peer_confirmed_our_state() -> None:
    gossip = make(HELD)
    assert [m.type for _, m in sent(gossip.full_sync_tick())] == [MessageType.PUSH]
    gossip.receive(PEER, encode_message(DigestAck(PEER, digest(HELD))))
    assert gossip.full_sync_tick() == []


def test_a_full_sync_is_due_until_pushed_and_again_after_a_change() -> None:
    gossip = make(HELD)
    before = gossip.full_sync_due
    gossip.full_sync_tick()
    pushed = gossip.full_sync_due
    gossip.add(1)
    assert (before, pushed, gossip.full_sync_due) == (True, False, True)


def test_a_full_sync_is_due_after_a_differing_pull() -> None:
    gossip = make(HELD)
    gossip.full_sync_tick()
    gossip.receive(PEER, encode_message(DigestPull(PEER, 12345)))
    assert gossip.full_sync_due


def test_seed_exact_full_syncs_are_always_due() -> None:
    gossip = make(HELD, delta_gossip=False)
    gossip.full_sync_tick()
    assert gossip.full_sync_due


THIRD = "10.0.0.4:7946"


def pulled(gossip: Gossip) -> int:
    return len(gossip.sync_tick())


def test_in_agreement_every_other_sync_round_pulls_one_peer() -> None:
    gossip = make(HELD, peers=(PEER, OTHER, THIRD), max_sync_peers=3)
    assert [pulled(gossip), pulled(gossip)] == [3, 3]
    gossip.receive(PEER, encode_message(DigestAck(PEER, digest(HELD))))
    assert [pulled(gossip) for _ in range(5)] == [1, 0, 1, 0, 1]


def test_in_agreement_a_seed_peer_is_pulled_every_round_as_the_reference_does() -> None:
    gossip = agreed(make(HELD, peers=(PEER, OTHER, THIRD), max_sync_peers=3, streams=False))
    assert [pulled(gossip) for _ in range(4)] == [1, 1, 1, 1]
    assert not gossip.idle_round_due


def test_the_round_after_a_quiet_pull_is_idle_and_taken_once() -> None:
    gossip = agreed(make(HELD, peers=(PEER, OTHER, THIRD), max_sync_peers=3))
    assert (pulled(gossip), gossip.idle_round_due) == (1, True)
    assert (gossip.take_idle_round(), gossip.idle_round_due) == (True, False)
    assert pulled(gossip) == 1  # the idle round was taken by the driver: this one pulls


def test_out_of_agreement_every_round_pulls_the_full_fanout() -> None:
    gossip = make(HELD, peers=(PEER, OTHER, THIRD), max_sync_peers=3)
    assert [pulled(gossip) for _ in range(3)] == [3, 3, 3]
    assert not gossip.idle_round_due


def test_a_change_after_a_quiet_pull_brings_back_the_next_round() -> None:
    gossip = agreed(make(HELD, peers=(PEER, OTHER, THIRD), max_sync_peers=3))
    assert pulled(gossip) == 1
    gossip.add(1)
    assert (gossip.idle_round_due, pulled(gossip)) == (False, 3)


def test_a_round_after_a_pull_with_our_digest_needs_no_pull_of_ours() -> None:
    gossip = make(HELD, peers=(PEER, OTHER, THIRD), max_sync_peers=3)
    gossip.receive(PEER, encode_message(DigestPull(PEER, digest(HELD))))  # same state
    assert [pulled(gossip), pulled(gossip)] == [0, 1]


def test_a_local_change_brings_back_the_full_pull_fanout() -> None:
    gossip = make(HELD, peers=(PEER, OTHER, THIRD), max_sync_peers=3)
    gossip.receive(PEER, encode_message(DigestAck(PEER, digest(HELD))))
    assert pulled(gossip) == 1
    gossip.receive(PEER, encode_message(DigestPull(PEER, digest(HELD))))
    gossip.add(1)
    assert pulled(gossip) == 3


def test_a_differing_pull_brings_back_the_full_pull_fanout() -> None:
    gossip = make(HELD, peers=(PEER, OTHER, THIRD), max_sync_peers=3)
    gossip.receive(PEER, encode_message(DigestAck(PEER, digest(HELD))))
    gossip.receive(OTHER, encode_message(DigestPull(OTHER, 12345)))
    assert pulled(gossip) == 3


def agreed(gossip: Gossip) -> Gossip:
    """``gossip`` once a peer acked its exact state (its rounds are quiet from then on)."""
    gossip.receive(PEER, encode_message(DigestAck(PEER, gossip.digest)))
    return gossip


def test_a_pull_in_agreement_asks_a_stream_peer_for_no_ack() -> None:
    ((_, pull),) = sent(agreed(make(HELD, streams=True)).sync_tick())
    assert pull == DigestPull(ME, digest(HELD), {}, {})
    assert isinstance(pull, DigestPull)
    assert is_quiet_pull(pull)


def test_a_pull_in_agreement_to_a_seed_peer_is_the_references_pull() -> None:
    assert sent(agreed(make(HELD, streams=False)).sync_tick()) == [
        (PEER, DigestPull(ME, digest(HELD)))
    ]


def test_a_pull_out_of_agreement_wants_an_ack() -> None:
    # Until a peer confirmed our state, the ack is how we learn that it holds it.
    ((_, pull),) = sent(make(HELD, streams=True).sync_tick())
    assert isinstance(pull, DigestPull)
    assert not is_quiet_pull(pull)


def test_a_quiet_pull_with_our_digest_gets_no_ack_but_counts_as_agreement() -> None:
    gossip = make(HELD, peers=(PEER, OTHER, THIRD), max_sync_peers=3)
    received = gossip.receive(PEER, encode_message(DigestPull(PEER, digest(HELD), {}, {})))
    assert received.sends == []
    assert [pulled(gossip), pulled(gossip)] == [0, 1]


def test_a_quiet_pull_with_another_digest_gets_our_full_state() -> None:
    gossip = agreed(make(HELD, peers=(PEER, OTHER, THIRD), max_sync_peers=3))
    received = gossip.receive(PEER, encode_message(DigestPull(PEER, 12345, {}, {})))
    assert sent(received.sends) == [
        (PEER, Push(ME, HELD.increments, HELD.decrements, digest(HELD)))
    ]
    assert pulled(gossip) == 3  # the mismatch ended the agreement: the full fanout is back


def test_a_plain_pull_with_our_digest_is_still_acked() -> None:
    received = agreed(make(HELD)).receive(PEER, encode_message(DigestPull(PEER, digest(HELD))))
    assert sent(received.sends) == [(PEER, DigestAck(ME, digest(HELD)))]


def test_a_round_after_a_pull_with_our_digest_is_idle_and_taken_once() -> None:
    gossip = make(HELD, peers=(PEER, OTHER, THIRD), max_sync_peers=3)
    assert not gossip.take_idle_round()  # nobody pulled us yet
    gossip.receive(PEER, encode_message(DigestPull(PEER, digest(HELD), {}, {})))
    assert (gossip.in_agreement, gossip.take_idle_round(), gossip.take_idle_round()) == (
        True,
        True,
        False,
    )
    assert pulled(gossip) == 1  # the idle round was taken: this one pulls


def test_idle_round_due_tells_without_taking_the_round() -> None:
    gossip = make(HELD, peers=(PEER, OTHER, THIRD), max_sync_peers=3)
    gossip.receive(PEER, encode_message(DigestPull(PEER, digest(HELD), {}, {})))
    assert [gossip.idle_round_due, gossip.idle_round_due, gossip.take_idle_round()] == [
        True,
        True,
        True,
    ]
    assert not gossip.idle_round_due


def test_a_change_after_a_matching_pull_makes_no_round_idle() -> None:
    gossip = make(HELD, peers=(PEER, OTHER, THIRD), max_sync_peers=3)
    gossip.receive(PEER, encode_message(DigestPull(PEER, digest(HELD))))
    gossip.add(1)
    assert (gossip.in_agreement, gossip.take_idle_round()) == (False, False)
    assert pulled(gossip) == 3


def test_seed_exact_gossip_has_no_idle_rounds() -> None:
    gossip = make(HELD, delta_gossip=False)
    gossip.receive(PEER, encode_message(DigestPull(PEER, digest(HELD))))
    assert not gossip.take_idle_round()


def test_seed_exact_gossip_always_pulls_max_sync_peers() -> None:
    gossip = make(HELD, peers=(PEER, OTHER, THIRD), max_sync_peers=3, delta_gossip=False)
    gossip.receive(PEER, encode_message(DigestAck(PEER, digest(HELD))))
    assert pulled(gossip) == 3


def test_no_peers_no_messages() -> None:
    gossip = make(HELD, peers=())
    gossip.increment(1)
    assert (gossip.sync_tick(), gossip.full_sync_tick(), gossip.flush()) == ([], [], [])


# -- full pushes in parts --------------------------------------------------------------------


def big_state(replicas: int) -> CounterState:
    rng = random.Random(7)
    return CounterState.from_maps(
        {
            f"10.{i // 250}.{i % 250}.1:7946#{rng.getrandbits(32):08x}": i + 1
            for i in range(replicas)
        }
    )


def test_a_state_over_one_seed_read_goes_to_a_seed_peer_in_parts_that_each_fit() -> None:
    state = big_state(3000)
    gossip = make(state, streams=False)
    parts = gossip.receive(PEER, encode_message(DigestPull(PEER, 1))).sends
    assert len(parts) > 1
    assert all(1 + len(ME) + len(part.data) <= SEED_READ_SIZE for part in parts)
    merged = CounterState.empty()
    for _, message in sent(parts):
        merged = merged.merged(message.state())
    assert merged == state


def test_a_stream_peer_gets_the_same_state_in_one_push() -> None:
    gossip = make(big_state(3000), streams=True)
    assert len(gossip.receive(PEER, encode_message(DigestPull(PEER, 1))).sends) == 1


def test_parts_never_exceed_the_limit_and_cover_the_state() -> None:
    state = big_state(500)
    parts = encode_push_parts(ME, state, 99, 2000)
    assert all(len(part) <= 2000 for part in parts)
    assert all(decode_message(part).digest == 0 for part in parts)
    merged = CounterState.empty()
    for part in parts:
        merged = merged.merged(decode_message(part).state())
    assert merged == state


# -- reflection: replies go only to known peers ----------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        pytest.param(DigestPull(STRANGER, 12345), id="pull-other-digest"),
        pytest.param(DigestPull(STRANGER, digest(HELD)), id="pull-same-digest"),
        pytest.param(Push(STRANGER, {THEIRS: 1}, None, 99), id="full-push-lacking-ours"),
    ],
)
def test_no_reply_goes_to_an_address_only_read_in_a_frame(message: Message) -> None:
    received = make(HELD).receive(STRANGER, encode_message(message))
    assert (received.sends, received.unknown_sender) == ([], True)


# -- hostile pushes --------------------------------------------------------------------------


def test_a_claim_above_our_own_count_is_refused_and_the_rest_merged() -> None:
    gossip = make(HELD)
    forged = Push(PEER, {MINE: 2**64 - 1, THEIRS: 9}, {MINE: 1})
    received = gossip.receive(PEER, encode_message(forged))
    assert received.forged == CounterState.from_maps({MINE: 2**64 - 1}, {MINE: 1})
    assert gossip.state() == CounterState.from_maps({MINE: 3, THEIRS: 9})


def test_our_own_entry_at_or_below_our_count_is_no_forgery() -> None:
    received = make(HELD).receive(PEER, encode_message(Push(PEER, {MINE: 3}, None)))
    assert (received.forged, received.learned) == (CounterState.empty(), CounterState.empty())


def test_a_state_that_cannot_be_encoded_is_tried_once_per_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Seen before: every pull re-encoded an oversized state, failed, and logged a traceback.
    calls = []
    real = parts_module.encode_push_parts

    def counting(*args: Any) -> tuple[bytes, ...]:
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(parts_module, "encode_push_parts", counting)
    noise = "".join(random.Random(5).choices("abcdefghijklmnopqrstuvwxyz0123456789", k=40_000))
    huge = CounterState.from_maps({noise: 1})  # one entry past a seed read, even compressed
    gossip = make(huge, streams=False)
    pulls = [gossip.receive(PEER, encode_message(DigestPull(PEER, 1))) for _ in range(3)]
    assert [r.sends for r in pulls] == [[], [], []]
    assert len(calls) == 1
    failure = gossip.take_encode_failure()
    assert failure is not None
    assert gossip.take_encode_failure() is None  # reported once
    gossip.increment(1)
    gossip.receive(PEER, encode_message(DigestPull(PEER, 1)))
    assert len(calls) == 2


def test_a_large_changing_state_is_re_encoded_at_most_once_a_second() -> None:
    now = [100.0]
    state = big_state(1500)
    gossip = Gossip(
        PNCounter(MINE, state),
        ME,
        NodeConfig(),
        PeerManager(ME, [PEER]),
        random.Random(1),
        clock=lambda: now[0],
    )

    def pulled() -> CounterState:
        (push,) = sent(gossip.receive(PEER, encode_message(DigestPull(PEER, 1))).sends)
        return push[1].state()

    assert pulled() == state
    gossip.increment(1)
    now[0] += 0.5
    assert pulled() == state  # the previous encoding: a valid, slightly older state
    now[0] += 0.6
    assert pulled() == state.merged(CounterState.from_maps({MINE: 1}))


def test_a_small_state_is_always_pushed_as_it_is_now() -> None:
    gossip = make(HELD)
    gossip.receive(PEER, encode_message(DigestPull(PEER, 1)))
    gossip.increment(1)
    (push,) = sent(gossip.receive(PEER, encode_message(DigestPull(PEER, 1))).sends)
    assert push[1].state() == HELD.merged(CounterState.from_maps({MINE: 4}))

"""The named gossip core without asyncio: two cores wired through a fake link."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hypothesis import given, settings
from hypothesis import strategies as st

from dcounter_crdt import CounterMapState, CounterState
from dcounter_node import NodeConfig, PeerManager
from dcounter_node._counters import Counters
from dcounter_node._named_gossip import NamedGossip
from dcounter_protocol import (
    BucketDigests,
    NamedKind,
    NamedPull,
    NamedPush,
    decode_named,
    encode_named,
)

if TYPE_CHECKING:
    from dcounter_node._gossip_types import Outgoing

A, B = "10.0.0.1:7946", "10.0.0.2:7946"


@dataclass
class _Owner:
    """What Counters needs of its node for named counters."""

    config: NodeConfig = field(default_factory=NodeConfig)
    closed: bool = False

    def _writable(self) -> None:
        return None


def _core(
    address: str, peer: str, names: dict[str, int], *, buckets: int = 4096
) -> tuple[NamedGossip, Counters]:
    counters = Counters(_Owner(), lambda: None)  # type: ignore[arg-type]
    counters._bind(f"{address}#r")
    for name, by in names.items():
        counters.increment(name, by)
    core = NamedGossip(
        counters,
        f"{address}#r",
        NodeConfig(),
        PeerManager(address, [peer]),
        random.Random(1),
        buckets=buckets,
    )
    counters.push = core.local
    counters.stage_local()
    core.flush()  # the writes' own deltas: not under test here
    return core, counters


def _run(cores: dict[str, NamedGossip], sends: list[Outgoing]) -> dict[NamedKind, int]:
    """Deliver ``sends`` and every reply until none is left; bytes by kind."""
    sizes = dict.fromkeys(NamedKind, 0)
    sender_of = {id(core): address for address, core in cores.items()}
    queue = [(send, sender) for send, sender in ((s, _origin(s, cores)) for s in sends)]
    while queue:
        send, sender = queue.pop(0)
        assert isinstance(send.kind, NamedKind)
        sizes[send.kind] += len(send.data)
        target = cores[send.address]
        received = target.receive(sender, send.data)
        assert received.error is None
        replier = sender_of[id(target)]
        queue.extend((reply, replier) for reply in received.sends)
    return sizes


def _origin(send: Outgoing, cores: dict[str, NamedGossip]) -> str:
    (other,) = [address for address in cores if address != send.address]
    return other


def test_one_pull_repairs_both_sides_with_about_the_differing_names() -> None:
    shared = {f"n{i}": 1 for i in range(2000)}
    a, a_counters = _core(A, B, shared)
    b, b_counters = _core(B, A, {})
    b_counters.merge_remote(a_counters.snapshot())
    b._dirty.update(a_counters.snapshot().counters)
    a_counters.increment("n5", 4)
    a_counters.increment("only-a")
    b_counters.increment("n6", 2)
    b_counters.increment("only-b", 3)
    a_counters.stage_local()
    b_counters.stage_local()
    a.flush()
    b.flush()  # deltas lost: only anti-entropy repairs
    sizes = _run({A: a, B: b}, a.sync_tick())
    assert a_counters.snapshot() == b_counters.snapshot()
    assert (a_counters.value("n5"), a_counters.value("n6"), b_counters.value("only-a")) == (5, 3, 1)
    whole = len(encode_named(NamedPush(a_counters.snapshot())))
    assert sizes[NamedKind.NAMED_PUSH] < whole / 50
    assert a.digests.root == b.digests.root


def test_a_small_state_is_compared_over_few_buckets() -> None:
    a, a_counters = _core(A, B, {f"n{i}": 1 for i in range(100)})
    b, b_counters = _core(B, A, {f"n{i}": 1 for i in range(99)})
    (pull,) = a.sync_tick()
    message = decode_named(pull.data)
    assert isinstance(message, NamedPull)
    assert message.buckets == 8  # about one per 16 names
    sizes = _run({A: a, B: b}, [pull])
    assert a_counters.snapshot() == b_counters.snapshot()
    assert sizes[NamedKind.NAMED_BUCKETS] < 100


def test_equal_states_answer_a_pull_with_nothing() -> None:
    a, a_counters = _core(A, B, {"x": 1})
    b, b_counters = _core(B, A, {})
    b_counters.merge_remote(a_counters.snapshot())
    b._dirty.add("x")
    (pull,) = a.sync_tick()
    assert b.receive(A, pull.data).sends == []


def _pulled_in_agreement() -> tuple[NamedGossip, Counters]:
    """B's core (and counters), holding what A holds, just pulled by A with its own root."""
    a, a_counters = _core(A, B, {"x": 1})
    b, b_counters = _core(B, A, {})
    b_counters.merge_remote(a_counters.snapshot())
    b._dirty.add("x")
    (pull,) = a.sync_tick()
    b.receive(A, pull.data)
    return b, b_counters


def test_a_pull_with_our_own_root_spares_our_next_round_once() -> None:
    b, _ = _pulled_in_agreement()
    assert [b.take_idle_round(), b.take_idle_round()] == [True, False]


def _core_of_peers(peers: list[str], named_to: set[str]) -> NamedGossip:
    counters = Counters(_Owner(), lambda: None)  # type: ignore[arg-type]
    counters._bind(f"{A}#r")
    return NamedGossip(
        counters,
        f"{A}#r",
        NodeConfig(),
        PeerManager(A, peers),
        random.Random(1),
        named_to=named_to.__contains__,
    )


C, D = "10.0.0.3:7946", "10.0.0.4:7946"


def test_a_round_pulls_the_first_preferred_peer_that_takes_named_messages() -> None:
    core = _core_of_peers([B, C, D], named_to={C, D})
    # The default counter's pull targets of the round: both pulls then travel together.
    assert [send.address for send in core.sync_tick(prefer=[B, D, C])] == [D]
    assert [send.address for send in core.sync_tick(prefer=[C])] == [C]


def test_a_round_without_a_usable_preferred_peer_pulls_a_random_one() -> None:
    core = _core_of_peers([B, C, D], named_to={C, D})
    targets = set()
    for _ in range(50):
        (send,) = core.sync_tick(prefer=["10.9.9.9:7946", B])
        targets.add(send.address)
    assert targets == {C, D}


def test_idle_round_due_tells_without_taking_the_round() -> None:
    b, _ = _pulled_in_agreement()
    assert [b.idle_round_due, b.idle_round_due, b.take_idle_round(), b.idle_round_due] == [
        True,
        True,
        True,
        False,
    ]


def test_in_agreement_every_other_round_pulls_and_a_change_ends_that() -> None:
    b, b_counters = _pulled_in_agreement()
    assert [len(b.sync_tick()) for _ in range(5)] == [0, 1, 0, 1, 0]
    b_counters.increment("y")
    b_counters.stage_local()
    assert [len(b.sync_tick()) for _ in range(3)] == [1, 1, 1]


def test_a_differing_pull_or_a_change_keeps_the_round() -> None:
    a, _ = _core(A, B, {"x": 1})
    b, b_counters = _core(B, A, {})
    (pull,) = a.sync_tick()
    b.receive(A, pull.data)  # roots differ
    differing = b.take_idle_round()
    b_counters.merge_remote(CounterMapState({"x": CounterState({f"{A}#r": 1})}))
    b._dirty.add("x")
    b.receive(A, pull.data)  # now equal
    b_counters.increment("y")
    b_counters.stage_local()  # a local write after the agreeing pull
    assert (differing, b.take_idle_round()) == (False, False)


def test_an_empty_node_gets_everything_in_full_without_listing_hashes() -> None:
    a, a_counters = _core(A, B, {f"n{i}": i + 1 for i in range(500)})
    b, b_counters = _core(B, A, {})
    sizes = _run({A: a, B: b}, b.sync_tick())
    assert b_counters.snapshot() == a_counters.snapshot()
    # Its keys message names the buckets with no hash in them (a few bytes each).
    assert sizes[NamedKind.NAMED_KEYS] < 5 * 500
    assert sizes[NamedKind.NAMED_WANT] == 0


def test_digests_follow_local_writes_and_merges() -> None:
    a, a_counters = _core(A, B, {"x": 1, "y": 2})
    a_counters.increment("x", 5)
    a_counters.stage_local()
    pushed = encode_named(NamedPush(CounterMapState({"z": CounterState.from_maps({"r": 7})})))
    a.receive(B, pushed)
    fresh = BucketDigests.of(a_counters.snapshot())
    assert (a.digests.root, a.digests.digests) == (fresh.root, fresh.digests)


def test_a_delta_is_pushed_once_to_the_fanout_and_never_back() -> None:
    a, a_counters = _core(A, B, {})
    delta = encode_named(NamedPush(CounterMapState({"z": CounterState.from_maps({"r": 7})})))
    a.receive(B, delta)
    assert a.flush() == []  # the only peer is the one it came from
    a_counters.increment("mine")
    a_counters.stage_local()
    (send,) = a.flush()
    message = decode_named(send.data)
    assert isinstance(message, NamedPush)
    assert (send.address, sorted(message.state.counters), message.full) == (B, ["mine"], False)


_sides = st.dictionaries(
    st.sampled_from([f"n{i}" for i in range(40)]), st.integers(1, 50), max_size=40
)


@settings(derandomize=True, database=None, deadline=None, max_examples=60)
@given(_sides, _sides, _sides, st.sampled_from([1, 4, 64]), st.booleans())
def test_one_exchange_makes_any_two_states_equal(
    shared: dict[str, int],
    only_a: dict[str, int],
    only_b: dict[str, int],
    buckets: int,
    a_pulls: bool,
) -> None:
    a, a_counters = _core(A, B, shared, buckets=buckets)
    b, b_counters = _core(B, A, {}, buckets=buckets)
    b_counters.merge_remote(a_counters.snapshot())
    b._dirty.update(a_counters.snapshot().counters)
    for counters, extra in ((a_counters, only_a), (b_counters, only_b)):
        for name, by in extra.items():
            counters.increment(name, by)
        counters.stage_local()
    a.flush()
    b.flush()
    puller = a if a_pulls else b
    _run({A: a, B: b}, puller.sync_tick())
    assert a_counters.snapshot() == b_counters.snapshot()
    assert a.digests.root == b.digests.root

"""The membership state machine (SWIM rules), driven with explicit times and no I/O."""

from __future__ import annotations

import random

import pytest

from dcounter_node._membership import (
    MAX_UPDATES,
    Member,
    Membership,
    MembershipConfig,
    MembershipMessage,
    MemberState,
    MessageKind,
    Outgoing,
    Update,
    supersedes,
)
from dcounter_node._membership_wire import (
    MembershipDecodeError,
    decode_membership,
    encode_membership,
    is_membership,
)

A, S, D, L = MemberState.ALIVE, MemberState.SUSPECT, MemberState.DEAD, MemberState.LEFT
CONFIG = MembershipConfig(probe_interval=1.0, probe_timeout=0.5, suspect_timeout=3.0)


def node(address: str, *, now: float = 0.0, config: MembershipConfig = CONFIG) -> Membership:
    return Membership(address, f"{address}#r", config=config, rng=random.Random(1), now=now)


def states(membership: Membership) -> dict[str, MemberState]:
    return {m.address: m.state for m in membership.members()}


class Network:
    """Delivers outgoing messages between in-memory memberships; ``down`` drop everything."""

    def __init__(self, *addresses: str, config: MembershipConfig = CONFIG) -> None:
        self.nodes = {a: node(a, config=config) for a in addresses}
        self.down: set[str] = set()
        self.now = 0.0

    def deliver(self, outgoing: list[Outgoing]) -> None:
        queue = list(outgoing)
        while queue:
            out = queue.pop(0)
            sender = out.message.sender.address
            if out.address in self.down or sender in self.down or out.address not in self.nodes:
                continue
            queue.extend(self.nodes[out.address].receive(out.message, self.now))

    def run(self, seconds: float, step: float = 0.1, *, when_due: bool = False) -> None:
        """Advance time by ``step``, ticking every node up; ``when_due``: only the nodes
        whose ``next_due()`` has come (as the membership service does)."""
        end = self.now + seconds
        while self.now < end - 1e-9:
            self.now += step
            for address, membership in self.nodes.items():
                if address in self.down:
                    continue
                if not when_due or membership.next_due() <= self.now + 1e-9:
                    self.deliver(membership.tick(self.now))


def joined(seed: str, *others: str, config: MembershipConfig = CONFIG) -> Network:
    """A network where every other node joined through ``seed``, two seconds later."""
    net = Network(seed, *others, config=config)
    for joiner in others:
        net.deliver(net.nodes[joiner].join([seed]))
    net.run(2.0)
    return net


@pytest.mark.parametrize(
    ("known", "known_inc", "update", "update_inc", "replaces"),
    [
        (A, 1, A, 1, False),
        (A, 1, A, 2, True),
        (S, 1, A, 1, False),
        (S, 1, A, 2, True),
        (D, 1, A, 2, True),
        (L, 1, A, 2, True),
        (A, 1, S, 1, True),
        (A, 2, S, 1, False),
        (S, 1, S, 1, False),
        (S, 1, S, 2, True),
        (D, 1, S, 5, False),
        (A, 1, D, 1, True),
        (S, 1, D, 1, True),
        (D, 1, D, 1, False),
        (D, 1, D, 2, True),
        (A, 2, D, 1, False),
        (D, 1, L, 1, True),
        (A, 1, L, 1, True),
        (L, 1, L, 1, False),
        (L, 1, D, 1, False),
        (L, 1, D, 2, True),
    ],
)
def test_update_precedence(
    known: MemberState,
    known_inc: int,
    update: MemberState,
    update_inc: int,
    replaces: bool,
) -> None:
    member = Member("m:1", "m:1#r", known, known_inc, 0.0)
    assert supersedes(Update("m:1", "m:1#r", update, update_inc), member) is replaces


def test_join_learns_the_seeds_list_and_the_seed_learns_the_joiner() -> None:
    net = Network("a:1", "b:1", "c:1")
    net.deliver(net.nodes["b:1"].join(["a:1"]))
    net.deliver(net.nodes["c:1"].join(["a:1"]))
    assert states(net.nodes["c:1"]) == {"a:1": A, "b:1": A, "c:1": A}
    net.run(3.0)
    for membership in net.nodes.values():
        assert states(membership) == {"a:1": A, "b:1": A, "c:1": A}


def test_join_skips_this_node_and_duplicates() -> None:
    outgoing = node("a:1").join(["a:1", "b:1", "b:1"])
    assert [(o.address, o.message.kind) for o in outgoing] == [("b:1", MessageKind.JOIN)]


def test_a_silent_member_is_suspected_then_declared_dead() -> None:
    net = joined("a:1", "b:1", "c:1")
    net.down.add("c:1")
    net.run(2.5)
    assert states(net.nodes["a:1"])["c:1"] in (S, D)
    assert states(net.nodes["b:1"])["c:1"] in (S, D)
    net.run(CONFIG.suspect_timeout + 1.0)
    assert states(net.nodes["a:1"])["c:1"] is D
    assert states(net.nodes["b:1"])["c:1"] is D
    assert net.nodes["a:1"].alive() == ["b:1"]


def test_indirect_probe_keeps_a_member_alive_when_only_the_direct_path_fails() -> None:
    net = joined("a:1", "b:1", "c:1")
    original = net.deliver

    def lossy(outgoing: list[Outgoing]) -> None:
        # a:1 and c:1 cannot reach each other directly; b:1 relays.
        kept = [o for o in outgoing if {o.address, o.message.sender.address} != {"a:1", "c:1"}]
        original(kept)

    net.deliver = lossy  # type: ignore[method-assign]
    net.run(10.0)
    assert set(states(net.nodes["a:1"]).values()) == {A}
    assert set(states(net.nodes["c:1"]).values()) == {A}


def test_a_suspected_node_refutes_with_a_higher_incarnation() -> None:
    b = node("b:1")
    suspicion = MembershipMessage(
        MessageKind.GOSSIP,
        Update("a:1", "a:1#r", A, 0),
        updates=(Update("b:1", "b:1#r", S, 0),),
    )
    replies = b.receive(suspicion, 1.0)
    assert b.incarnation == 1
    assert replies == []
    out = b.tick(1.1)
    carried = {u for o in out for u in o.message.updates} | {o.message.sender for o in out}
    assert Update("b:1", "b:1#r", A, 1) in carried


def test_dead_member_that_comes_back_is_alive_again() -> None:
    net = joined("a:1", "b:1")
    net.down.add("b:1")
    net.run(CONFIG.suspect_timeout + 3.0)
    assert states(net.nodes["a:1"])["b:1"] is D
    # Restarted without memory of its past incarnation: it rejoins at 0 and is told it is dead.
    net.nodes["b:1"] = node("b:1", now=net.now)
    net.down.clear()
    net.deliver(net.nodes["b:1"].join(["a:1"]))
    net.run(3.0)
    assert states(net.nodes["a:1"])["b:1"] is A
    assert net.nodes["b:1"].incarnation > 0


def test_a_healed_partition_returns_without_a_new_join() -> None:
    net = joined("a:1", "b:1")
    net.down.add("b:1")
    net.run(CONFIG.suspect_timeout + 3.0)
    assert states(net.nodes["a:1"])["b:1"] is D
    net.down.clear()
    # Dead members are probed every dead_probe_rounds rounds; both sides must come back.
    net.run(CONFIG.probe_interval * (CONFIG.dead_probe_rounds + 2) + CONFIG.suspect_timeout)
    assert states(net.nodes["a:1"])["b:1"] is A
    assert states(net.nodes["b:1"])["a:1"] is A


def test_leave_is_announced_and_marks_left_at_once() -> None:
    net = joined("a:1", "b:1", "c:1")
    net.deliver(net.nodes["c:1"].leave(net.now))
    assert states(net.nodes["a:1"])["c:1"] is L
    assert states(net.nodes["b:1"])["c:1"] is L
    net.down.add("c:1")
    net.run(CONFIG.suspect_timeout + 2.0)
    assert states(net.nodes["a:1"])["c:1"] is L  # no timeout turns left into dead


def test_the_leave_announcement_decodes_and_marks_left() -> None:
    a, b = node("a:1"), node("b:1")
    a.receive(MembershipMessage(MessageKind.GOSSIP, Update("b:1", "b:1#r", A, 0)), 0.0)
    b.receive(MembershipMessage(MessageKind.GOSSIP, Update("a:1", "a:1#r", A, 0)), 0.0)
    (announcement,) = b.leave(1.0)
    received = decode_membership(encode_membership(announcement.message))
    a.receive(received, 1.0)
    assert states(a)["b:1"] is L


def test_a_leaving_node_ignores_everything() -> None:
    a = node("a:1")
    a.leave(0.0)
    ping = MembershipMessage(MessageKind.PING, Update("b:1", "b:1#r", A, 0), 1, "a:1")
    assert a.receive(ping, 0.1) == []
    assert a.tick(5.0) == []


def test_changes_are_reported_once() -> None:
    a = node("a:1")
    a.receive(MembershipMessage(MessageKind.GOSSIP, Update("b:1", "b:1#r", A, 0)), 0.0)
    a.receive(MembershipMessage(MessageKind.GOSSIP, Update("b:1", "b:1#r", A, 0)), 0.1)
    changes = a.take_changes()
    assert [(c.address, c.before, c.after) for c in changes] == [("b:1", None, A)]
    assert a.take_changes() == []


def test_updates_are_retransmitted_a_bounded_number_of_times() -> None:
    a = node("a:1")
    a.receive(MembershipMessage(MessageKind.GOSSIP, Update("b:1", "b:1#r", A, 0)), 0.0)
    carried = 0
    for _ in range(50):
        out = a.join(["c:1"])
        carried += sum(1 for u in out[0].message.updates if u.address == "b:1")
    assert 0 < carried < 50


def test_wire_round_trip() -> None:
    message = MembershipMessage(
        MessageKind.PING_REQ,
        Update("a:1", "a:1#9f", A, 3),
        seq=7,
        target="b:1",
        updates=(Update("c:1", "c:1#00", D, 2**64 - 1), Update("d:1", "d:1#1", L, 0)),
    )
    payload = encode_membership(message)
    assert is_membership(payload)
    assert payload[0] not in (0x00, 0x80)  # never a seed envelope flag
    assert decode_membership(payload) == message


def test_the_readme_example_ping_bytes() -> None:
    ping = MembershipMessage(MessageKind.PING, Update("a:1", "a:1#r", A, 0), 7, "b:1")
    expected = "44 43 4d 01 95 01 07 a3 62 3a 31 94 a3 61 3a 31 a5 61 3a 31 23 72 00 00 90"
    assert encode_membership(ping) == bytes.fromhex(expected)


VALID_SENDER = b"\x94\xa3a:1\xa1r\x00\x00"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"DCM\x02\x90", "version 1"),
        (b"DCM\x01", "not msgpack"),
        (b"DCM\x01\xc1", "not msgpack"),
        (b"DCM\x01\x93\x01\x02\x03", "array of 5"),
        (b"DCM\x01\x95\x09\x00\xa0" + VALID_SENDER + b"\x90", "unknown message kind"),
        (b"DCM\x01\x95\x01\x00\xa0\x94\xa3a:1\xa1r\x02\x00\x90", "alive or left"),
        (b"DCM\x01\x95\x01\xff\xa0" + VALID_SENDER + b"\x90", "seq must be"),
        (b"DCM\x01\x95\x01\x00\xa0\x94\xa0\xa1r\x00\x00\x90", "address must be"),
        (b"DCM\x01\x95\x01\x00\xa0\x94\xa1a\xa1r\x00\x00\x90", "address: "),
        (b"DCM\x01\x95\x01\x00\xa1x" + VALID_SENDER + b"\x90", "target: "),
        (b"DCM\x01\x95\x01\x00\xa0" + VALID_SENDER + b"\x91\x93\x01\x02\x03", "4 items"),
        (b"DCM\x01\x95\x01\x00\xa0\x94\xa3a:1\xa1r\x07\x00\x90", "unknown member state"),
    ],
)
def test_malformed_payloads_raise_a_typed_error(payload: bytes, reason: str) -> None:
    with pytest.raises(MembershipDecodeError, match=reason):
        decode_membership(payload)


def test_a_valid_minimal_payload_decodes() -> None:
    message = decode_membership(b"DCM\x01\x95\x06\x00\xa0" + VALID_SENDER + b"\x90")
    assert message == MembershipMessage(MessageKind.GOSSIP, Update("a:1", "r", A, 0))


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="probe_timeout"):
        MembershipConfig(probe_interval=1.0, probe_timeout=2.0)


def test_a_new_replica_id_of_its_own_is_gossiped_at_a_new_incarnation() -> None:
    membership = Membership(
        "a:1", "a:1#1", config=MembershipConfig(), rng=random.Random(0), now=0.0
    )
    membership.set_replica("a:1#1'")
    me = next(m for m in membership.members() if m.address == "a:1")
    assert (me.replica, me.incarnation) == ("a:1#1'", 1)
    sync = membership.join(["b:1"])[0].message
    assert sync.updates[0].replica == "a:1#1'"


FORGET_AFTER = 20.0
FORGETFUL = MembershipConfig(
    probe_interval=1.0, probe_timeout=0.5, suspect_timeout=3.0, forget_after=FORGET_AFTER
)


def test_a_dead_member_is_forgotten_forget_after_it_died() -> None:
    net = joined("a:1", "b:1", "c:1", config=FORGETFUL)
    net.down.add("c:1")
    net.run(FORGETFUL.suspect_timeout + 3.0)
    assert states(net.nodes["a:1"])["c:1"] is D
    net.nodes["a:1"].take_forgotten()
    net.run(FORGET_AFTER - 5.0)
    assert states(net.nodes["a:1"])["c:1"] is D  # not yet
    net.run(6.0)
    assert "c:1" not in states(net.nodes["a:1"])
    assert "c:1" not in states(net.nodes["b:1"])
    assert net.nodes["a:1"].take_forgotten() == ["c:1"]


def test_a_left_member_is_forgotten_forget_after_it_left() -> None:
    net = joined("a:1", "b:1", "c:1", config=FORGETFUL)
    net.deliver(net.nodes["c:1"].leave(net.now))
    net.down.add("c:1")
    net.run(FORGET_AFTER - 1.0)
    assert states(net.nodes["a:1"])["c:1"] is L
    net.run(2.0)
    assert "c:1" not in states(net.nodes["a:1"])


def test_members_are_kept_forever_without_forget_after() -> None:
    config = MembershipConfig(
        probe_interval=1.0, probe_timeout=0.5, suspect_timeout=3.0, forget_after=None
    )
    net = joined("a:1", "b:1", config=config)
    net.down.add("b:1")
    net.run(200.0, step=0.5)
    assert states(net.nodes["a:1"])["b:1"] is D


def test_news_of_a_death_does_not_bring_back_a_forgotten_member() -> None:
    a = node("a:1", config=FORGETFUL)
    news = MembershipMessage(
        MessageKind.GOSSIP, Update("b:1", "b:1#r", A, 0), updates=(Update("c:1", "c:1#r", D, 4),)
    )
    a.receive(news, 0.0)
    leave = MembershipMessage(MessageKind.GOSSIP, Update("d:1", "d:1#r", L, 2))
    a.receive(leave, 0.0)
    assert states(a) == {"a:1": A, "b:1": A}


def test_a_forgotten_member_that_talks_again_is_alive_again() -> None:
    net = joined("a:1", "b:1", config=FORGETFUL)
    net.down.add("b:1")
    net.run(FORGETFUL.suspect_timeout + FORGET_AFTER + 3.0)
    assert "b:1" not in states(net.nodes["a:1"])
    net.down.clear()
    net.deliver(net.nodes["b:1"].join(["a:1"]))
    net.run(3.0)
    assert states(net.nodes["a:1"])["b:1"] is A


def test_a_node_alone_asks_its_seeds_again_until_one_answers() -> None:
    net = Network("a:1", "b:1")
    net.down.add("a:1")  # the seed is not up yet: the first join is lost
    net.deliver(net.nodes["b:1"].join(["a:1"], net.now))
    net.run(5.0)
    assert states(net.nodes["b:1"]) == {"b:1": A}
    net.down.clear()
    net.run(CONFIG.rejoin_interval + 1.0)
    assert states(net.nodes["b:1"]) == {"a:1": A, "b:1": A}
    assert states(net.nodes["a:1"]) == {"a:1": A, "b:1": A}


def test_a_node_with_live_members_does_not_ask_its_seeds_again() -> None:
    net = joined("a:1", "b:1")
    net.deliver(net.nodes["b:1"].join(["a:1"], net.now))
    kinds: list[MessageKind] = []
    deliver = net.deliver

    def recording(outgoing: list[Outgoing]) -> None:
        kinds.extend(o.message.kind for o in outgoing)
        deliver(outgoing)

    net.deliver = recording  # type: ignore[method-assign]
    net.run(10 * CONFIG.rejoin_interval)
    assert MessageKind.PING in kinds
    assert MessageKind.JOIN not in kinds


@pytest.mark.parametrize(("forget_after", "rejoin_interval"), [(0.0, 1.0), (-1.0, 1.0), (9.0, 0.0)])
def test_forget_after_and_rejoin_interval_must_be_positive(
    forget_after: float, rejoin_interval: float
) -> None:
    with pytest.raises(ValueError, match="must be > 0"):
        MembershipConfig(forget_after=forget_after, rejoin_interval=rejoin_interval)


def test_a_join_to_a_large_cluster_is_answered_in_syncs_within_the_bound() -> None:
    big = MembershipConfig(max_members=4000)
    seed, joiner = node("a:1", config=big), node("z:1", config=big)
    known = [Update(f"m{i}:1", f"m{i}:1#r", A, 0) for i in range(MAX_UPDATES + 500)]
    for start in range(0, len(known), 100):
        news = MembershipMessage(
            MessageKind.GOSSIP, known[start], updates=tuple(known[start : start + 100])
        )
        seed.receive(news, 0.0)
    (join,) = joiner.join(["a:1"])
    syncs = seed.receive(join.message, 0.0)
    assert [o.message.kind for o in syncs] == [MessageKind.SYNC, MessageKind.SYNC]
    assert all(len(o.message.updates) <= MAX_UPDATES for o in syncs)
    for sync in syncs:
        joiner.receive(decode_membership(encode_membership(sync.message)), 0.0)
    assert len(joiner.members()) == len(known) + 2


def test_a_probe_of_a_suspect_member_tells_it_so() -> None:
    a = node("a:1")
    a.receive(MembershipMessage(MessageKind.GOSSIP, Update("b:1", "b:1#r", A, 0)), 0.0)
    a.receive(
        MembershipMessage(
            MessageKind.GOSSIP,
            Update("c:1", "c:1#r", A, 0),
            updates=(Update("b:1", "b:1#r", S, 0),),
        ),
        0.0,
    )
    for seq in range(10):  # acks to c carry the suspicion until its retransmit budget is spent
        a.receive(MembershipMessage(MessageKind.PING, Update("c:1", "c:1#r", A, 0), seq), 0.0)
    pings = [
        o
        for t in range(1, 40)
        for o in a.tick(t * 0.25)
        if o.message.kind is MessageKind.PING and o.address == "b:1"
    ]
    assert pings
    assert Update("b:1", "b:1#r", S, 0) in pings[0].message.updates


# -- deadlines: the service wakes up only when something is due --------------------------


def test_a_lone_node_is_next_due_at_each_probe() -> None:
    a = node("a:1", now=0.0)
    assert a.next_due() == 0.0
    assert a.tick(0.0) == []
    assert a.next_due() == CONFIG.probe_interval


def test_a_probe_in_flight_is_due_at_its_timeout_and_not_after_its_ack() -> None:
    a = node("a:1")
    a.receive(MembershipMessage(MessageKind.GOSSIP, Update("b:1", "b:1#r", A, 0)), 0.0)
    (ping,) = a.tick(0.0)
    assert a.next_due() == CONFIG.probe_timeout
    ack = MembershipMessage(MessageKind.ACK, Update("b:1", "b:1#r", A, 0), ping.message.seq, "b:1")
    a.receive(ack, 0.1)
    assert a.next_due() == CONFIG.probe_interval


def test_a_suspect_is_due_when_its_suspicion_times_out() -> None:
    config = MembershipConfig(probe_interval=1.0, probe_timeout=0.5, suspect_timeout=0.5)
    a = node("a:1", config=config)
    a.tick(0.0)
    a.receive(MembershipMessage(MessageKind.GOSSIP, Update("b:1", "b:1#r", A, 0)), 0.1)
    a.receive(MembershipMessage(MessageKind.GOSSIP, Update("b:1", "b:1#r", S, 0)), 0.2)
    assert a.next_due() == 0.7
    a.tick(0.7)
    assert (states(a), a.next_due()) == ({"a:1": A, "b:1": D}, 1.0)


def test_a_leaving_node_is_never_due() -> None:
    a = node("a:1")
    a.leave(0.0)
    assert a.next_due() == float("inf")


def test_a_tick_before_the_next_due_time_sends_nothing() -> None:
    net = joined("a:1", "b:1", "c:1")
    net.down.add("c:1")
    for _ in range(40):
        for address, membership in net.nodes.items():
            if address not in net.down:
                assert membership.tick(min(net.now + 0.01, membership.next_due() - 1e-6)) == []
        net.run(0.1)


def test_ticking_only_when_due_finds_a_dead_member_as_ticking_often_does() -> None:
    results = []
    for when_due in (False, True):
        net = Network("a:1", "b:1", "c:1")
        for joiner in ("b:1", "c:1"):
            net.deliver(net.nodes[joiner].join(["a:1"]))
        net.run(2.0, step=0.01, when_due=when_due)
        assert states(net.nodes["a:1"]) == {"a:1": A, "b:1": A, "c:1": A}
        net.down.add("c:1")
        net.run(CONFIG.probe_interval * 3 + CONFIG.suspect_timeout, step=0.01, when_due=when_due)
        results.append([states(net.nodes["a:1"]), states(net.nodes["b:1"])])
    expected = {"a:1": A, "b:1": A, "c:1": D}
    assert results[0] == results[1] == [expected, expected]


def test_a_lone_node_with_seeds_is_due_when_it_asks_them_again() -> None:
    config = MembershipConfig(probe_interval=5.0, probe_timeout=1.0, rejoin_interval=1.0)
    b = node("b:1", config=config)
    b.join(["a:1"], 0.0)
    b.tick(0.0)
    assert b.next_due() == 1.0
    assert [o.message.kind for o in b.tick(1.0)] == [MessageKind.JOIN]


def test_a_gone_member_is_due_when_it_is_to_be_forgotten() -> None:
    config = MembershipConfig(probe_interval=10.0, probe_timeout=1.0, forget_after=3.0)
    a = node("a:1", config=config)
    a.tick(0.0)
    a.receive(MembershipMessage(MessageKind.GOSSIP, Update("b:1", "b:1#r", A, 0)), 0.5)
    a.receive(MembershipMessage(MessageKind.GOSSIP, Update("b:1", "b:1#r", L, 0)), 1.0)
    assert a.next_due() == 4.0
    a.tick(4.0)
    assert states(a) == {"a:1": A}

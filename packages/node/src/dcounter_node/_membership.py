"""Who is in the cluster, as pure code: SWIM failure detection and gossip of member states.

No sockets, no asyncio: the caller passes the time in, feeds received messages to
:meth:`Membership.receive`, calls :meth:`Membership.tick` often (a few times per probe
interval) and sends the :class:`Outgoing` messages both return. The asyncio driver is
:mod:`dcounter_node._membership_service`; the wire codec :mod:`dcounter_node._membership_wire`.

The rules (SWIM with incarnation numbers, as in hashicorp/memberlist):

* Every ``probe_interval`` one member (round robin over a shuffled list of alive and suspect
  members) gets a ``ping``. No ``ack`` within ``probe_timeout``: ``ping-req`` through up to
  ``indirect_checks`` other alive members, which ping the target and forward its ack. No ack
  by the end of the interval: the target becomes ``suspect``.
* Lifeguard's local health (:mod:`dcounter_node._membership_awareness`): a probe that goes
  unanswered, or a suspicion of this node to refute, raises a score (at most
  ``awareness_limit``) that an answered probe lowers; the probe interval and timeout are
  multiplied by ``1 + score``, so a node that is itself slow suspects others less eagerly.
* A suspect member becomes ``dead`` when its suspicion times out
  (:mod:`dcounter_node._membership_suspicion`), unless an ``alive`` with a higher incarnation
  arrives first. The suspicion starts at ``suspect_max_factor`` times its least length
  (``suspect_timeout``, times log10 n above 10 members) and shrinks to it as up to
  ``suspect_confirmations`` other members confirm it: updates carry no originator (the wire
  has no room for one), so a confirmation is a member telling this node the suspicion in a
  message of its own. A node that hears itself suspected (or declared dead or left) at its
  incarnation or above refutes it: it takes the next incarnation and gossips ``alive``.
* Dead and left members are not probed, except one every ``dead_probe_rounds`` rounds, so a
  restarted node or a healed partition hears that it was declared dead and refutes it.
* State changes are broadcast by piggybacking on every membership message, each up to
  ``retransmit_mult * ceil(log10(n + 1))`` times (n the number of known members).
* ``leave`` declares this node ``left`` (a state no timeout produces) and tells every member.
* A dead or left member is forgotten ``forget_after`` after it entered that state (its
  entry removed: it no longer counts towards ``max_members`` nor gets rare probes). News of
  a death or leave about an unknown member never adds it (so gossip does not bring a
  forgotten one back); news that it is alive does, as for any new member.
* While this node knows no live member (alone: its seeds were not up yet, or everyone it
  knew was forgotten), it asks its seeds again every ``rejoin_interval``.

Precedence for an update about a member known at incarnation ``i`` in state ``s``:
``alive`` needs an incarnation above ``i``; ``suspect`` needs ``s`` alive at ``>= i`` or
``s`` suspect at ``> i``; ``dead`` needs ``s`` alive or suspect at ``>= i``, or dead/left at
``> i``; ``left`` needs ``s`` alive, suspect or dead at ``>= i``, or left at ``> i``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dcounter_node._membership_awareness import Awareness
from dcounter_node._membership_queue import BroadcastQueue
from dcounter_node._membership_suspicion import Suspicions
from dcounter_node._membership_types import (
    MAX_UPDATES,
    Member,
    MembershipConfig,
    MembershipMessage,
    MemberState,
    MessageKind,
    Outgoing,
    StateChange,
    Update,
)

if TYPE_CHECKING:
    import random
    from collections.abc import Iterable

__all__ = [
    "MAX_UPDATES",
    "Member",
    "MemberState",
    "Membership",
    "MembershipConfig",
    "MembershipMessage",
    "MessageKind",
    "Outgoing",
    "StateChange",
    "Update",
    "supersedes",
]


@dataclass(slots=True)
class _Probe:
    target: str
    seq: int
    #: When to ask others (``ping-req``), and when to give up: stretched by awareness.
    timeout_at: float
    ends_at: float
    indirect_sent: bool = False
    acked: bool = False
    #: A rare probe of a dead or left member: never escalates to suspicion.
    quiet: bool = False


@dataclass(slots=True)
class _Relay:
    """A ping sent on behalf of ``requester`` (a ping-req): forward the ack."""

    requester: str
    seq: int
    expires: float


_LIVE = (MemberState.ALIVE, MemberState.SUSPECT)
_GONE = (MemberState.DEAD, MemberState.LEFT)


def supersedes(update: Update, member: Member) -> bool:
    """Whether ``update`` replaces what is known of ``member`` (the module doc's precedence)."""
    known, inc = member.state, member.incarnation
    new = update.incarnation
    if update.state is MemberState.ALIVE:
        return new > inc
    if update.state is MemberState.SUSPECT:
        return (known is MemberState.ALIVE and new >= inc) or (
            known is MemberState.SUSPECT and new > inc
        )
    if update.state is MemberState.DEAD:
        return (known in _LIVE and new >= inc) or (known in _GONE and new > inc)
    return (known is not MemberState.LEFT and new >= inc) or new > inc


class Membership:
    """This node's view of the cluster and the SWIM protocol that keeps it current."""

    def __init__(
        self,
        address: str,
        replica: str,
        *,
        config: MembershipConfig,
        rng: random.Random,
        now: float,
    ) -> None:
        self._config = config
        self._rng = rng
        self._self = Member(address, replica, MemberState.ALIVE, 0, now)
        self._members: dict[str, Member] = {}
        self._broadcasts = BroadcastQueue()
        self._changes: list[StateChange] = []
        self._seq = 0
        self._probe: _Probe | None = None
        self._next_probe = now
        self._order: list[str] = []
        self._rounds = 0
        self._relays: dict[int, _Relay] = {}
        self._leaving = False
        self._refused = 0
        self._seeds: tuple[str, ...] = ()
        self._next_rejoin = now
        self._forgotten: list[str] = []
        self._awareness = Awareness(config.awareness_limit)
        self._suspicions = Suspicions(
            address,
            suspect_timeout=config.suspect_timeout,
            max_factor=config.suspect_max_factor,
            confirmations=config.suspect_confirmations,
        )

    # -- views ----------------------------------------------------------------------------

    @property
    def address(self) -> str:
        return self._self.address

    @property
    def incarnation(self) -> int:
        return self._self.incarnation

    @property
    def leaving(self) -> bool:
        return self._leaving

    def members(self) -> list[Member]:
        """Every known member, this node included, sorted by address (copies)."""
        everyone = [*self._members.values(), self._self]
        return sorted(
            (Member(m.address, m.replica, m.state, m.incarnation, m.since) for m in everyone),
            key=lambda m: m.address,
        )

    @property
    def refused(self) -> int:
        """Updates about new members ignored because ``max_members`` are known already."""
        return self._refused

    @property
    def awareness(self) -> int:
        """This node's health score (Lifeguard): 0 healthy, up to ``awareness_limit``."""
        return self._awareness.score

    @property
    def confirmations(self) -> int:
        """Suspicions confirmed by another member so far (each member once per suspicion)."""
        return self._suspicions.confirmed

    def suspicion_deadline(self, address: str) -> float | None:
        """When the suspect ``address`` is to be declared dead (None: not suspect)."""
        return self._suspicions.deadline(address)

    def alive(self) -> list[str]:
        """Addresses of the other members believed alive or suspect (gossip targets)."""
        return sorted(a for a, m in self._members.items() if m.state in _LIVE)

    def take_changes(self) -> list[StateChange]:
        """State changes since the last call (for logs and metrics)."""
        changes, self._changes = self._changes, []
        return changes

    def take_forgotten(self) -> list[str]:
        """Addresses of the members forgotten since the last call (for logs and metrics)."""
        forgotten, self._forgotten = self._forgotten, []
        return forgotten

    # -- actions --------------------------------------------------------------------------

    def join(self, seeds: Iterable[str], now: float | None = None) -> list[Outgoing]:
        """Ask each seed (not this node) for its member list.

        With ``now``, the seeds are also remembered: :meth:`tick` asks them again while this
        node is alone (a join sent before any seed listened is otherwise never answered).
        """
        wanted = tuple(seed for seed in dict.fromkeys(seeds) if seed != self.address)
        if now is not None:
            self._seeds = tuple(dict.fromkeys((*self._seeds, *wanted)))
            self._next_rejoin = now + self._config.rejoin_interval
        return [self._out(seed, MessageKind.JOIN) for seed in wanted]

    def leave(self, now: float) -> list[Outgoing]:
        """Declare this node left and tell every member that may still hear it."""
        self._leaving = True
        self._self.state = MemberState.LEFT
        self._self.since = now
        self._enqueue(self._self.update())
        return [self._out(address, MessageKind.GOSSIP) for address in self.alive()]

    def set_replica(self, replica: str) -> None:
        """This node counts under a new replica id (pruning): gossip it at a new incarnation."""
        mine = self._self
        if mine.replica != replica:
            mine.replica = replica
            mine.incarnation += 1
            self._enqueue(mine.update())

    def tick(self, now: float) -> list[Outgoing]:
        """Advance timers: suspicion timeouts, the current probe, the next probe."""
        if self._leaving:
            return []
        out: list[Outgoing] = []
        self._expire_suspects(now)
        self._forget_gone(now)
        if self._seeds and now >= self._next_rejoin:
            self._next_rejoin = now + self._config.rejoin_interval
            if not self.alive():
                out.extend(self.join(self._seeds))
        self._relays = {s: r for s, r in self._relays.items() if r.expires > now}
        probe = self._probe
        if probe is not None and not probe.acked and not probe.quiet:
            if not probe.indirect_sent and now >= probe.timeout_at:
                probe.indirect_sent = True
                out.extend(self._indirect(probe))
            if now >= probe.ends_at:
                target = self._members.get(probe.target)
                if target is not None and target.state in _LIVE:
                    # Without nacks from the helpers (the wire has none), an unanswered
                    # probe may be this node's fault as much as the target's: memberlist's
                    # rule then. (One that died or left meanwhile explains the silence.)
                    self._awareness.worse()
                self._suspect(probe.target, now)
                self._probe = None
        if now >= self._next_probe:
            self._next_probe = now + self._awareness.scale(self._config.probe_interval)
            out.extend(self._start_probe(now))
        return out

    def next_due(self) -> float:
        """The earliest time :meth:`tick` has something to do (start or time out a probe,
        declare a suspect dead, forget a relay or a gone member, ask the seeds again while
        alone); ``inf`` once leaving. Calling it earlier does nothing; a :meth:`receive` may
        bring it forward.
        """
        if self._leaving:
            return math.inf
        config = self._config
        due = self._next_probe
        probe = self._probe
        if probe is not None and not probe.acked and not probe.quiet:
            if not probe.indirect_sent:
                due = min(due, probe.timeout_at)
            due = min(due, probe.ends_at)
        due = min(due, self._suspicions.next_deadline())
        for relay in self._relays.values():
            due = min(due, relay.expires)
        if config.forget_after is not None:
            for member in self._members.values():
                if member.state in _GONE:
                    due = min(due, member.since + config.forget_after)
        if self._seeds and not self.alive():
            due = min(due, self._next_rejoin)
        return due

    def receive(self, message: MembershipMessage, now: float) -> list[Outgoing]:
        """Apply a received message; returns the replies."""
        if self._leaving:
            return []
        sender = message.sender.address
        self._apply(message.sender, now, by=sender, direct=True)
        for update in message.updates:
            self._apply(update, now, by=sender, direct=False)
        kind = message.kind
        if kind is MessageKind.PING:
            if message.target in ("", self.address):
                return [self._out(sender, MessageKind.ACK, seq=message.seq, target=self.address)]
            return []
        if kind is MessageKind.ACK:
            return self._on_ack(message)
        if kind is MessageKind.PING_REQ:
            self._seq += 1
            self._relays[self._seq] = _Relay(sender, message.seq, now + self._config.probe_interval)
            return [
                self._out(message.target, MessageKind.PING, seq=self._seq, target=message.target)
            ]
        if kind is MessageKind.JOIN:
            return self._sync(sender)
        return []

    # -- internals ------------------------------------------------------------------------

    def _on_ack(self, message: MembershipMessage) -> list[Outgoing]:
        probe = self._probe
        if probe is not None and probe.seq == message.seq and probe.target == message.target:
            if not probe.acked and not probe.quiet:
                self._awareness.better()
            probe.acked = True
        relay = self._relays.pop(message.seq, None)
        if relay is not None:
            return [
                self._out(relay.requester, MessageKind.ACK, seq=relay.seq, target=message.target)
            ]
        return []

    def _start_probe(self, now: float) -> list[Outgoing]:
        self._probe = None
        self._rounds += 1
        target: str | None = None
        quiet = False
        gone = sorted(a for a, m in self._members.items() if m.state in _GONE)
        if gone and self._rounds % self._config.dead_probe_rounds == 0:
            target, quiet = self._rng.choice(gone), True
        else:
            target = self._next_target()
        if target is None:
            return []
        self._seq += 1
        scale = self._awareness.scale
        config = self._config
        self._probe = _Probe(
            target,
            self._seq,
            now + scale(config.probe_timeout),
            now + scale(config.probe_interval),
            quiet=quiet,
        )
        ping = self._out(target, MessageKind.PING, seq=self._seq, target=target)
        member = self._members.get(target)
        if member is not None and member.state is not MemberState.ALIVE:
            # Lifeguard's buddy system: a member we suspect (or hold dead) hears it in the
            # ping itself, so a live one refutes at once instead of when gossip reaches it.
            told = member.update()
            if told not in ping.message.updates:
                updates = (told, *ping.message.updates)[: self._config.max_piggyback]
                ping = Outgoing(target, dataclasses.replace(ping.message, updates=updates))
        return [ping]

    def _next_target(self) -> str | None:
        while self._order:
            address = self._order.pop()
            member = self._members.get(address)
            if member is not None and member.state in _LIVE:
                return address
        live = self.alive()
        if not live:
            return None
        self._rng.shuffle(live)
        self._order = live
        return self._order.pop()

    def _indirect(self, probe: _Probe) -> list[Outgoing]:
        helpers = [a for a in self.alive() if a != probe.target]
        if len(helpers) > self._config.indirect_checks:
            helpers = self._rng.sample(helpers, self._config.indirect_checks)
        return [
            self._out(h, MessageKind.PING_REQ, seq=probe.seq, target=probe.target) for h in helpers
        ]

    def _suspect(self, address: str, now: float) -> None:
        member = self._members.get(address)
        if member is not None and member.state is MemberState.ALIVE:
            self._set(member, MemberState.SUSPECT, member.incarnation, member.replica, now)

    def _expire_suspects(self, now: float) -> None:
        for address in self._suspicions.expired(now):
            member = self._members[address]
            self._set(member, MemberState.DEAD, member.incarnation, member.replica, now)

    def _forget_gone(self, now: float) -> None:
        limit = self._config.forget_after
        if limit is None:
            return
        for address, member in list(self._members.items()):
            if member.state in _GONE and now >= member.since + limit:
                del self._members[address]
                self._broadcasts.drop(address)
                self._forgotten.append(address)

    def _apply(self, update: Update, now: float, *, by: str, direct: bool) -> None:
        """Apply ``update``, which member ``by`` sent (about itself if ``direct``)."""
        if update.address == self.address:
            self._about_self(update)
            return
        member = self._members.get(update.address)
        if member is None:
            if update.state is not MemberState.ALIVE:
                # As memberlist: a suspicion alone does not make a member, and news of a
                # death or leave about an unknown (or forgotten) one would only bring it back.
                return
            if len(self._members) + 1 >= self._config.max_members:
                # A bound on what gossip (a hostile sender included) makes us hold and probe.
                self._refused += 1
                return
            member = Member(update.address, update.replica, update.state, update.incarnation, now)
            self._members[update.address] = member
            if update.state in _LIVE:
                # As memberlist: at a random place in this round's probe order, so a new
                # member is probed this round, not only after everyone known before it.
                self._order.insert(self._rng.randint(0, len(self._order)), update.address)
            self._changes.append(
                StateChange(update.address, None, update.state, update.incarnation)
            )
            self._enqueue(member.update())
            return
        if supersedes(update, member):
            self._set(member, update.state, update.incarnation, update.replica, now, origin=by)
        elif direct and member.state is not MemberState.ALIVE:
            # It talks to us at an incarnation we hold as suspect/dead/left: tell it again,
            # so it hears it and refutes (a restarted node or a healed partition).
            self._enqueue(member.update())
        if (
            update.state is MemberState.SUSPECT
            and member.state is MemberState.SUSPECT
            and update.incarnation == member.incarnation
        ):
            self._suspicions.confirm(update.address, by)

    def _about_self(self, update: Update) -> None:
        mine = self._self
        if update.state is MemberState.ALIVE:
            if update.incarnation > mine.incarnation:
                mine.incarnation = update.incarnation + 1
                self._enqueue(mine.update())
        elif update.incarnation >= mine.incarnation:
            # Others could not hear from this node in time: maybe it is the slow one.
            self._awareness.worse()
            mine.incarnation = update.incarnation + 1
            self._enqueue(mine.update())

    def _set(
        self,
        member: Member,
        state: MemberState,
        incarnation: int,
        replica: str,
        now: float,
        *,
        origin: str | None = None,
    ) -> None:
        """Record ``member``'s new state; ``origin``: who said so (None: this node)."""
        before = member.state
        member.incarnation = incarnation
        member.replica = replica
        if state is not before:
            if before is MemberState.SUSPECT:
                self._suspicions.end(member.address)
            elif state is MemberState.SUSPECT:
                live = 1 + sum(1 for m in self._members.values() if m.state in _LIVE)
                self._suspicions.start(member.address, origin, members=live, now=now)
            member.state = state
            member.since = now
            self._changes.append(StateChange(member.address, before, state, incarnation))
        self._enqueue(member.update())

    def _enqueue(self, update: Update) -> None:
        self._broadcasts.put(update)

    def _budget(self) -> int:
        return self._config.retransmit_mult * max(1, math.ceil(math.log10(len(self._members) + 2)))

    def _piggyback(self) -> tuple[Update, ...]:
        return self._broadcasts.take(self._config.max_piggyback, self._budget())

    def _sync(self, address: str) -> list[Outgoing]:
        """The answer to a join: every member, in as many syncs as the bound needs."""
        everyone = [m.update() for m in self._members.values()]
        sender = self._self.update()
        return [
            Outgoing(
                address,
                MembershipMessage(
                    MessageKind.SYNC, sender, updates=tuple(everyone[i : i + MAX_UPDATES])
                ),
            )
            for i in range(0, max(len(everyone), 1), MAX_UPDATES)
        ]

    def _out(self, address: str, kind: MessageKind, *, seq: int = 0, target: str = "") -> Outgoing:
        message = MembershipMessage(kind, self._self.update(), seq, target, self._piggyback())
        return Outgoing(address, message)

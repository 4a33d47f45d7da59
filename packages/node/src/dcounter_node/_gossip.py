"""The gossip core: what a replica sends to whom, as pure code (no asyncio, no sockets).

:class:`Gossip` owns the replica's :class:`~dcounter_crdt.PNCounter` and decides the
anti-entropy traffic. Each event (a received payload, a sync tick, a full-sync tick, a delta
flush) returns the messages to send as :class:`Outgoing` values (address, type, encoded
bytes); the :class:`~dcounter_node.Node` only drives it: it runs the timers, makes counts
durable before a push leaves, and moves the bytes. A local update (:meth:`Gossip.add`) costs
one addition: the counter keeps it in its pending delta, which the next event takes, and
:meth:`Gossip.take_local` hands the driver what it must persist.

Anti-entropy follows the seed (and stays wire-compatible with the Go reference): every sync
interval a digest pull goes to a few random peers; a receiver whose digest matches answers
with a digest ack, otherwise with a push of its full state; every full-sync interval a full
push goes to a few peers; pushes merge by pointwise max. Replies go to the sender address
carried in the frame, and only when that sender is one of our peers: an address read in a
frame alone is never dialled (a forged pull would otherwise make us connect anywhere).

Beyond the seed (``NodeConfig.delta_gossip``, on by default): changes are pushed eagerly.
Local updates and entries won in merges are batched until :meth:`Gossip.flush` and pushed,
holding only the changed entries, to ``delta_fanout`` random peers (never back to the one
they came from). In that mode full-state pushes carry the sender's digest (a field the
reference ignores on pushes), and a node that gets one while holding entries the sender lacks
answers with just those entries, so one pull repairs both sides. The periodic full push is
skipped while no divergence was seen since a peer acknowledged our digest, and while a peer
has shown holding exactly our state (and nothing changed since) a sync round pulls a single
peer instead of ``max_sync_peers``, or none when a peer pulled us with our digest since the
last round. Such a pull, to a stream peer, is quiet (see :func:`is_quiet_pull`): it only
looks for a difference, so a matching digest gets no ack, which halves an idle cluster's
messages; a mismatch is answered with the full state as for any pull.

Hostile input: a push that would take the state past ``max_replicas`` entries or that names
a replica id longer than 255 bytes is rejected whole; an entry claiming more for our own
replica than we counted ourselves is refused (legitimate gossip can never do that) and the
rest of the push is merged.
"""

from __future__ import annotations

import time
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, assert_never

from dcounter_crdt import CounterState, CRDTError, PNCounter
from dcounter_node._gossip_types import Outgoing, Received, is_quiet_pull
from dcounter_node._parts import PushEncoder
from dcounter_node._push_checks import limit_passed, split_forged
from dcounter_protocol import (
    DigestAck,
    DigestPull,
    MessageType,
    ProtocolError,
    Push,
    decode_message,
    encode_message,
    state_digest,
)

if TYPE_CHECKING:
    import random
    from collections.abc import Callable, Mapping

    from dcounter_node._config import NodeConfig
    from dcounter_node._peers import PeerManager
    from dcounter_node._pruning import Tombstones

__all__ = ["Gossip"]

#: The count maps of a quiet pull: present but empty, where a plain pull has nil maps.
_NO_COUNTS: Final[Mapping[str, int]] = MappingProxyType({})


class Gossip:
    """The anti-entropy and delta-gossip decisions of one replica (sans-IO).

    ``streams_to(address)`` tells whether ``address`` takes messages up to the full message
    size (a stream peer); otherwise full pushes to it are split into parts that fit one
    16 KiB read of the reference. ``clock`` (seconds) only paces re-encoding a large full
    state (see :class:`~dcounter_node._parts.PushEncoder`). Not thread-safe: one event loop
    (or one test) drives it.
    """

    def __init__(
        self,
        counter: PNCounter,
        address: str,
        config: NodeConfig,
        peers: PeerManager,
        rng: random.Random,
        *,
        streams_to: Callable[[str], bool] = lambda address: True,
        clock: Callable[[], float] = time.monotonic,
        tombstones: Tombstones | None = None,
    ) -> None:
        self._counter = counter
        # Pruning records: entries they refuse are never merged (see "Pruning").
        self._tombstones = tombstones
        self._address = address
        self._config = config
        self._peers = peers
        self._rng = rng
        self._streams_to = streams_to
        self._clock = clock
        # Caches, dropped on every change of state.
        self._snapshot: CounterState | None = None
        self._digest: int | None = None
        self._replicas: frozenset[str] | None = None
        self._encoder = PushEncoder(address)
        # Local updates made with add()/subtract() since this core last looked: the counter
        # holds them as its pending delta, taken (once per event, not per update) by
        # _absorb_local(), which also drops the caches. What it took waits in `_unstaged`
        # for the driver to persist (take_local()).
        self._local = False
        self._unstaged = CounterState.empty()
        # Delta gossip: changed entries waiting for the next flush, and the peers known to
        # hold all of them already (the one they all came from).
        self._pending = CounterState.empty()
        self._pending_holders: frozenset[str] = frozenset()
        # Whether anything diverged since the last full sync or since a peer confirmed
        # holding our exact state (while False, the periodic full push is skipped).
        self._diverged = True
        # Whether a peer showed holding exactly our state (a matching ack, pull or full
        # push) with no change since: while True, a sync round pulls one peer, not
        # max_sync_peers (delta gossip only); and whether a peer pulled us with our exact
        # digest since our last sync round, which then needs no pull of ours at all.
        self._agreed = False
        self._pulled_agreeing = False
        # Whether our last sync round pulled while in agreement: then the next round is
        # spared (quiet cadence: in agreement, every other round pulls).
        self._quiet_pulled = False

    # -- state ----------------------------------------------------------------------------

    @property
    def counter(self) -> PNCounter:
        """The replica (read it freely; change it only through this object)."""
        return self._counter

    @property
    def has_pending(self) -> bool:
        """True while changed entries wait for :meth:`flush`."""
        if self._local:
            self._absorb_local()
        return bool(self._pending)

    def take_encode_failure(self) -> ProtocolError | None:
        """A push that could not be encoded since the last call, once (None if none).

        A full state that cannot be encoded is not tried again until the state changes.
        """
        return self._encoder.take_failure()

    def state(self) -> CounterState:
        """The full state (an immutable snapshot, cached until the next change)."""
        if self._local:
            self._absorb_local()
        if self._snapshot is None:
            self._snapshot = self._counter.snapshot()
        return self._snapshot

    @property
    def digest(self) -> int:
        """The state digest peers compare with (cached until the state changes)."""
        if self._local:
            self._absorb_local()
        if self._digest is None:
            self._digest = self.digest_of(self.state())
        return self._digest

    @staticmethod
    def digest_of(state: CounterState) -> int:
        """The digest of any state, as peers compute it."""
        return state_digest(state.increments, state.decrements)

    # -- events ---------------------------------------------------------------------------

    def add(self, by: int) -> None:
        """Count ``by`` up locally: the fast path, for a driver that counts often.

        Nothing is built per update: the change waits in the counter until the next event
        of this core or :meth:`take_local`, which the driver calls to persist it before it
        sends anything this core returns from then on.
        """
        self._counter.add(by)
        self._local = True

    def subtract(self, by: int) -> None:
        """Count ``by`` down locally (see :meth:`add`)."""
        self._counter.subtract(by)
        self._local = True

    def increment(self, by: int) -> CounterState:
        """Count ``by`` up locally; return the local changes not yet taken (to persist)."""
        self.add(by)
        return self.take_local()

    def decrement(self, by: int) -> CounterState:
        """Count ``by`` down locally; return the local changes not yet taken (to persist)."""
        self.subtract(by)
        return self.take_local()

    def take_local(self) -> CounterState:
        """This replica's own counts that rose locally since the last call (empty if none).

        A push this core returns may carry them, so a driver that makes counts durable
        before they leave persists what this returns before it sends anything.
        """
        if self._local:
            self._absorb_local()
        taken, self._unstaged = self._unstaged, CounterState.empty()
        return taken

    def receive(self, sender: str, payload: bytes) -> Received:
        """Handle one payload from ``sender`` (the address its frame names)."""
        if self._local:
            self._absorb_local()
        try:
            message = decode_message(payload)
        except ProtocolError as exc:
            return Received(error=exc)
        result = Received(message)
        match message:
            case Push():
                self._on_push(sender, message, result)
            case DigestPull():
                self._on_pull(sender, message, result)
            case DigestAck():
                if message.digest == self.digest:
                    # A peer holds exactly our state: no full push is needed for this change.
                    self._diverged = False
                    self._agreed = True
            case _:
                assert_never(message)
        return result

    def sync_tick(self) -> list[Outgoing]:
        """A sync round: a digest pull to a few random peers (one while in agreement; a quiet
        one, to a stream peer, every other round)."""
        if self._local:
            self._absorb_local()
        config = self._config
        # Quiet rounds: once a peer confirmed our exact state, one pull per round still
        # finds any difference (whoever lacks something differs from every puller, and
        # those who changed pull at full fanout every round), at a third of the idle
        # traffic; a quiet pull, to a stream peer, even every other round; and none when a
        # peer has just pulled us with our digest (that pull confirmed it). Any change or
        # mismatch brings back the full fanout, every round.
        pulled_agreeing, self._pulled_agreeing = self._pulled_agreeing, False
        quiet_pulled, self._quiet_pulled = self._quiet_pulled, False
        quiet = self._agreed and config.delta_gossip
        if quiet:
            if pulled_agreeing or quiet_pulled:
                return []
            count = 1
        else:
            count = config.max_sync_peers
        targets = self._peers.sample(count, self._rng)
        if not targets:
            return []
        digest = self.digest
        data = encode_message(DigestPull(self._address, digest))
        if not quiet:
            return [Outgoing(address, MessageType.DIGEST_PULL, data) for address in targets]
        # In agreement our pull only looks for a difference: an ack would confirm what we
        # already know, so stream peers (our own kind) are asked not to send one.
        quiet_data = encode_message(DigestPull(self._address, digest, _NO_COUNTS, _NO_COUNTS))
        streams_to = self._streams_to
        # A quiet pull (to our own kind) spares the next round; a seed peer gets the
        # reference's pull at the reference's pace, every round.
        self._quiet_pulled = streams_to(targets[0])
        return [
            Outgoing(address, MessageType.DIGEST_PULL, quiet_data if streams_to(address) else data)
            for address in targets
        ]

    def take_idle_round(self) -> bool:
        """Whether the next sync round would send nothing (see :attr:`idle_round_due`); if
        so, that round counts as done.

        The driver may then skip the round's wake-up. Should the agreement end before the
        round's time (see :attr:`in_agreement`), the round is due again.
        """
        if self.idle_round_due:
            self._pulled_agreeing = self._quiet_pulled = False
            return True
        return False

    @property
    def idle_round_due(self) -> bool:
        """Whether the next sync round would send nothing, without taking it: we agree
        with a peer, and a peer pulled us with our digest since the last round or our last
        round pulled (see :meth:`sync_tick`)."""
        if self._local:
            self._absorb_local()
        return (
            self._agreed
            and self._config.delta_gossip
            and (self._pulled_agreeing or self._quiet_pulled)
        )

    @property
    def in_agreement(self) -> bool:
        """Whether a peer showed holding exactly our state, with no change since."""
        if self._local:
            self._absorb_local()
        return self._agreed

    @property
    def full_sync_due(self) -> bool:
        """Whether the next full-sync round would push (with deltas: only once something
        diverged since the last one or since a peer confirmed our exact state)."""
        if self._local:
            self._absorb_local()
        return self._diverged or not self._config.delta_gossip

    def full_sync_tick(self) -> list[Outgoing]:
        """A full-sync round: our full state to a few random peers (with deltas, if needed)."""
        if self._local:
            self._absorb_local()
        if self._config.delta_gossip:
            if not self._diverged:
                return []
            self._diverged = False
        sends: list[Outgoing] = []
        for address in self._peers.sample(self._config.full_sync_peers, self._rng):
            sends.extend(self._full_push(address))
        return sends

    def flush(self) -> list[Outgoing]:
        """Push the pending changed entries to ``delta_fanout`` random peers."""
        if self._local:
            self._absorb_local()
        pending, self._pending = self._pending, CounterState.empty()
        if not pending:
            return []
        # Never echo a change back to the one peer it came from.
        targets = self._peers.sample(
            self._config.delta_fanout, self._rng, exclude=self._pending_holders
        )
        if not targets:
            return []
        return self._pushes(targets, pending)

    def rebase(self, replica_id: str, state: CounterState) -> CounterState:
        """Count under ``replica_id`` from ``state`` on (pruning applied a record); return
        the entries that rose, to persist. Local updates not taken yet are taken first."""
        before = self.state()
        self._counter = PNCounter(replica_id, state)
        if self._tombstones is not None:
            self._pending = self._tombstones.admit(self._pending)
        rose = state.delta_since(before)
        self._changed(rose, None)
        return rose

    # -- handlers -------------------------------------------------------------------------

    def _on_push(self, sender: str, message: Push, result: Received) -> None:
        try:
            theirs = message.state()
        except CRDTError as exc:
            result.error = exc
            return
        # What the push would change here (most pushes mostly repeat what we hold): only
        # these entries can pass a limit or claim more for our own replica than we counted.
        gains = theirs.delta_since(self.state())
        if gains and self._tombstones is not None:
            gains = self._tombstones.admit(gains)
        if gains:
            result.rejected = limit_passed(gains, self._known_replicas, self._config.max_replicas)
            if result.rejected is not None:
                return
            gains, result.forged = split_forged(gains, self._counter.replica_id)
            result.learned = self._counter.merge_delta(gains)
            if result.learned:
                self._changed(result.learned, sender)
        if not self._config.delta_gossip:
            return
        if not message.digest:
            # A delta, or a full state from a node that does not mark them (the reference):
            # either way someone differs from us, so keep the periodic full push going.
            self._diverged = True
            return
        # A push carrying a digest is the sender's full state (see _full_push).
        if message.digest == self.digest:
            self._diverged = False
            self._agreed = True
            return
        # The sender lacks something we hold: hand it just that, so the pull (or full sync)
        # that caused this push repairs both sides at once.
        missing = self._counter.delta_since(theirs)
        if not missing:
            return
        if sender not in self._peers:
            result.unknown_sender = True
            return
        result.sends.extend(self._pushes([sender], missing))

    def _on_pull(self, sender: str, message: DigestPull, result: Received) -> None:
        digest = self.digest
        if message.digest != digest:
            self._diverged = True
            self._agreed = False
        else:
            self._agreed = self._pulled_agreeing = True
        if sender not in self._peers:
            result.unknown_sender = True
            return
        if message.digest == digest:
            if is_quiet_pull(message):
                return  # the puller holds our state and knows it: nothing to say
            data = encode_message(DigestAck(self._address, digest))
            result.sends.append(Outgoing(sender, MessageType.DIGEST_ACK, data))
            return
        # An empty state sends nothing (an empty push is invalid on the wire); the puller's
        # own pushes will reach us.
        result.sends.extend(self._full_push(sender))

    # -- helpers --------------------------------------------------------------------------

    def _known_replicas(self) -> frozenset[str]:
        if self._replicas is None:
            self._replicas = self.state().replicas() | {self._counter.replica_id}
        return self._replicas

    def _limit(self, address: str) -> int:
        encoder = self._encoder
        return encoder.stream_limit if self._streams_to(address) else encoder.seed_limit

    def _full_push(self, address: str) -> list[Outgoing]:
        state = self.state()
        if not state:
            return []
        digest = self.digest if self._config.delta_gossip else 0
        parts = self._encoder.full(state, digest, self._limit(address), self._clock())
        return [Outgoing(address, MessageType.PUSH, part) for part in parts]

    def _pushes(self, targets: list[str], state: CounterState) -> list[Outgoing]:
        """``state`` (a delta) to each target, encoded once per kind of receiver."""
        encoded: dict[int, tuple[bytes, ...]] = {}
        sends: list[Outgoing] = []
        for address in targets:
            limit = self._limit(address)
            parts = encoded.get(limit)
            if parts is None:
                parts = encoded[limit] = self._encoder.parts(state, 0, limit)
            sends.extend(Outgoing(address, MessageType.PUSH, part) for part in parts)
        return sends

    def _absorb_local(self) -> None:
        """Take the counter's pending delta: to persist, to push, and a change of state."""
        self._local = False
        delta = self._counter.take_delta()
        if delta:
            self._unstaged = self._unstaged.merged(delta)
            self._changed(delta, None)

    def _changed(self, changes: CounterState, source: str | None) -> None:
        """Record that ``changes`` (already applied, learned from ``source``) altered state."""
        self._snapshot = None
        self._digest = None
        self._replicas = None
        self._encoder.changed()
        self._diverged = True
        self._agreed = False
        if self._config.delta_gossip:
            holders = frozenset(()) if source is None else frozenset((source,))
            self._pending_holders = (
                holders if not self._pending else self._pending_holders & holders
            )
            self._pending = self._pending.merged(changes)

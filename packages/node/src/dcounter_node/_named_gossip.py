"""The named-counter gossip core: what goes to whom, as pure code (no asyncio, no sockets).

Named counters (every name but ``"default"``, which stays on the seed's wire) travel in the
``"DCN" 01`` messages of :mod:`dcounter_protocol._named`, only to peers that confirmed
:data:`~dcounter_protocol.CAP_NAMED` (``named_to(address)``). Two mechanisms:

* **Deltas, per key.** Local writes (handed over by :meth:`NamedGossip.local`) and entries
  won from a delta push (of up to :data:`FORWARD_LIMIT` names) wait for
  :meth:`NamedGossip.flush`, which pushes just those entries to ``delta_fanout`` peers
  (never back to the one they came from).
* **Bucketed anti-entropy.** :class:`~dcounter_protocol.BucketDigests` keeps a digest per
  bucket of names, updated per changed name. Each sync round pulls one peer with the root
  digest only (a few bytes: a node that lacks something differs from every peer, so its
  own pull finds it); a peer whose root differs answers with its bucket digests;
  the puller answers the differing buckets with its key hashes there (for a bucket the peer
  holds nothing in, with its counters at once); the peer then pushes in full each name whose
  hash the puller lacks and asks (want) for the puller's hashes it lacks; full pushes are
  answered with whatever the receiver holds beyond them. An idle round costs O(buckets) at
  most and a repair sends about the names that differ.

Hostile input: a push that would pass ``max_keys``, ``max_key_length`` or, for one name,
``max_replicas`` is refused whole; entries claiming more for our own replica than we counted
are dropped (legitimate gossip never has them). Replies go only to peers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from dcounter_crdt import CounterMapState, CounterState, KeyLimitError
from dcounter_node._gossip_types import Outgoing
from dcounter_protocol import (
    NAMED_BUCKETS,
    BucketDigests,
    NamedBuckets,
    NamedKeys,
    NamedKind,
    NamedMessage,
    NamedMessageError,
    NamedPull,
    NamedPush,
    NamedWant,
    ProtocolError,
    decode_named,
    split_named,
)

if TYPE_CHECKING:
    import random
    from collections.abc import Callable, Iterable, Sequence

    from dcounter_node._config import NodeConfig
    from dcounter_node._counters import Counters
    from dcounter_node._peers import PeerManager
    from dcounter_node._pruning import Tombstones

__all__ = ["FORWARD_LIMIT", "NAMED_PART_SIZE", "NamedGossip", "NamedReceived"]

#: Largest named payload sent: a repair of many names goes out in parts this big.
NAMED_PART_SIZE: Final = 1024 * 1024
#: Most names a node forwards from one delta push. A bigger batch (a bulk load) would
#: reach every node several times over by forwarding; anti-entropy delivers it once, within
#: about a sync round.
FORWARD_LIMIT: Final = 1000
#: A pull asks for about one bucket per this many of the puller's names.
KEYS_PER_BUCKET: Final = 16


@dataclass(slots=True)
class NamedReceived:
    """What handling one named payload did (for the driver to count, log and send)."""

    message: NamedMessage | None = None
    error: ProtocolError | None = None
    #: Why a whole push was refused (nothing of it merged), if it was.
    rejected: str | None = None
    #: Names whose entries for our own replica claimed more than we counted (dropped).
    forged: int = 0
    #: Names whose state the push changed here.
    learned: int = 0
    #: A reply was due but the sender is not one of our peers, so none was sent.
    unknown_sender: bool = False
    sends: list[Outgoing] = field(default_factory=list)


@dataclass(slots=True)
class _Exchange:
    """The key hashes we listed for one peer (to answer its want), and names sent since."""

    names: dict[int, str]
    answered: set[str] = field(default_factory=set)


class NamedGossip:
    """Delta gossip and bucketed anti-entropy of one node's named counters (sans-IO)."""

    def __init__(
        self,
        counters: Counters,
        replica_id: str,
        config: NodeConfig,
        peers: PeerManager,
        rng: random.Random,
        *,
        named_to: Callable[[str], bool] = lambda address: True,
        part_size: int = NAMED_PART_SIZE,
        buckets: int = NAMED_BUCKETS,
        tombstones: Tombstones | None = None,
    ) -> None:
        self._counters = counters
        self._replica_id = replica_id
        # Pruning records: entries they refuse are dropped from every push (see "Pruning").
        self._tombstones = tombstones
        self._config = config
        self._peers = peers
        self._rng = rng
        self._named_to = named_to
        self._part_size = part_size
        self._digests = BucketDigests.of(counters.snapshot(), buckets)
        # Names changed since the digests last looked (refreshed before any digest is read).
        self._dirty: set[str] = set()
        self._pending = CounterMapState.empty()
        self._pending_holders: frozenset[str] = frozenset()
        self._exchanges: dict[str, _Exchange] = {}
        self._failure: ProtocolError | None = None
        # A peer pulled us with our own root since the last sync round, and nothing changed
        # since: our next round's pull can be spared, as the counter's gossip does.
        self._pulled_agreeing = False
        # The last pull we got carried our root, and nothing changed since (in agreement);
        # and whether our last round pulled while so: then the next round can be spared
        # (quiet cadence: see idle_round_due).
        self._agreed = False
        self._quiet_pulled = False

    @property
    def digests(self) -> BucketDigests:
        """The bucket digests, up to date."""
        self._refresh()
        return self._digests

    @property
    def has_pending(self) -> bool:
        """True while changed entries wait for :meth:`flush`."""
        return bool(self._pending)

    def take_encode_failure(self) -> ProtocolError | None:
        """A message that could not be encoded since the last call, once (None if none)."""
        failure, self._failure = self._failure, None
        return failure

    # -- events ---------------------------------------------------------------------------

    def local(self, changes: CounterMapState) -> None:
        """Local changes (``Counters.push``): digests to update, entries for the next flush."""
        self._pulled_agreeing = self._agreed = False
        self._dirty.update(changes.counters)
        self._queue(changes, None)

    def flush(self) -> list[Outgoing]:
        """Push the pending changed entries to ``delta_fanout`` peers."""
        pending, self._pending = self._pending, CounterMapState.empty()
        if not pending:
            return []
        targets = self._targets(self._config.delta_fanout, exclude=self._pending_holders)
        return self._push(targets, pending, full=False)

    def take_idle_round(self) -> bool:
        """Whether the next sync round may be spared (see :attr:`idle_round_due`); if so,
        that round counts as done."""
        idle = self.idle_round_due
        self._pulled_agreeing = self._quiet_pulled = False
        return idle

    @property
    def idle_round_due(self) -> bool:
        """Whether the next sync round may be spared, without taking it: a peer pulled us
        with our own root since the last one and nothing changed since, or we are in
        agreement and our last round pulled (in agreement, every other round pulls)."""
        return self._pulled_agreeing or (self._agreed and self._quiet_pulled)

    def sync_tick(self, prefer: Sequence[str] = ()) -> list[Outgoing]:
        """A sync round: our root digest to one random peer, the first of ``prefer`` that
        takes named messages if any (the default counter's pull targets, chosen at random
        too: both pulls of a round then travel together). None in a round after a peer
        pulled us with our root, nor in agreement in a round after one that pulled (see
        :attr:`idle_round_due`).

        One is enough to find any difference: a node that lacks something differs from
        every peer, so its own pull finds it every round; more pullers would only start
        more concurrent repairs of the same names, each costing bucket digests and hashes.
        The pull asks for about one bucket per 16 of our names (a power of two, at most
        all of ours): a small state is compared with a few digests.
        """
        for gone in [address for address in self._exchanges if address not in self._peers]:
            del self._exchanges[gone]
        if self.take_idle_round():
            return []  # as the counter's gossip: confirmed by a pull, or pulled last round
        digests = self.digests
        buckets = min(digests.buckets, 1 << (len(digests) // KEYS_PER_BUCKET).bit_length())
        peers, named_to = self._peers, self._named_to
        target = next((a for a in prefer if a in peers and named_to(a)), None)
        targets = [target] if target is not None else self._targets(1)
        sends = self._send(targets, NamedPull(buckets, digests.root))
        self._quiet_pulled = self._agreed and bool(sends)
        return sends

    def rebased(self, replica_id: str, names: Iterable[str]) -> None:
        """The counters now count under ``replica_id``, and pruning changed ``names``."""
        self._replica_id = replica_id
        self._dirty.update(names)
        self._pulled_agreeing = self._agreed = False

    def receive(self, sender: str, payload: bytes) -> NamedReceived:
        """Handle one named payload from ``sender`` (the address its frame names)."""
        try:
            message = decode_named(payload)
        except NamedMessageError as exc:
            return NamedReceived(error=exc)
        result = NamedReceived(message)
        if isinstance(message, NamedPush):
            self._on_push(sender, message, result)
            return result
        if sender not in self._peers or not self._named_to(sender):
            result.unknown_sender = sender not in self._peers
            return result
        match message:
            case NamedPull():
                self._on_pull(sender, message, result)
            case NamedBuckets():
                self._on_buckets(sender, message, result)
            case NamedKeys():
                self._on_keys(sender, message, result)
            case NamedWant():
                self._on_want(sender, message, result)
        return result

    # -- handlers -------------------------------------------------------------------------

    def _on_push(self, sender: str, message: NamedPush, result: NamedReceived) -> None:
        theirs = message.state
        admitted, result.forged, result.rejected = self._admit(theirs)
        if result.rejected is not None:
            return
        try:
            won = self._counters.merge_remote(admitted)
        except KeyLimitError as exc:
            result.rejected = str(exc)
            return
        result.learned = len(won)
        if won:
            self._pulled_agreeing = self._agreed = False
        self._dirty.update(won.counters)
        if not message.full:
            # A delta spreads on (epidemic); a repair is between two nodes only.
            if len(won) <= FORWARD_LIMIT:
                self._queue(won, sender)
            return
        extra: dict[str, CounterState] = {}
        for name, state in theirs.counters.items():
            more = self._counters.state(name).delta_since(state)
            if more:
                extra[name] = more
        exchange = self._exchanges.get(sender)
        if exchange is not None:
            exchange.answered.update(theirs.counters)
        if not extra:
            return
        if sender not in self._peers:
            result.unknown_sender = True
            return
        if self._named_to(sender):
            result.sends.extend(self._push([sender], CounterMapState(extra), full=False))

    def _too_many(self, buckets: int, result: NamedReceived) -> bool:
        if buckets <= self._digests.buckets:
            return False
        result.error = NamedMessageError(
            f"{buckets} buckets asked; this node keeps {self._digests.buckets}"
        )
        return True

    def _on_pull(self, sender: str, message: NamedPull, result: NamedReceived) -> None:
        digests = self.digests
        if self._too_many(message.buckets, result):
            return
        self._pulled_agreeing = self._agreed = message.root == digests.root
        if not self._pulled_agreeing:
            answer = NamedBuckets(message.buckets, digests.folded(message.buckets))
            result.sends.extend(self._send([sender], answer))

    def _on_buckets(self, sender: str, message: NamedBuckets, result: NamedReceived) -> None:
        self._agreed = False  # the answer to our pull: the peer's root differed from ours
        digests = self.digests
        buckets = message.buckets
        if self._too_many(buckets, result):
            return
        listed: dict[int, tuple[int, ...]] = {}
        names: dict[int, str] = {}
        for_them: list[str] = []
        for bucket in digests.differing(message.digests):
            held = digests.bucket_keys(bucket, buckets)
            if message.digests[bucket] == 0:
                for_them.extend(held)  # they hold nothing there: no need to compare
                continue
            listed[bucket] = tuple(held.values())
            names.update((h, name) for name, h in held.items())
        self._exchanges[sender] = _Exchange(names)
        if for_them:
            result.sends.extend(self._push([sender], self._states(for_them), full=True))
        if listed:
            result.sends.extend(self._send([sender], NamedKeys(buckets, listed)))

    def _on_keys(self, sender: str, message: NamedKeys, result: NamedReceived) -> None:
        digests = self.digests
        if self._too_many(message.buckets, result):
            return
        for_them: list[str] = []
        wanted: list[int] = []
        for bucket, hashes in message.keys.items():
            held = digests.bucket_keys(bucket, message.buckets)
            theirs = set(hashes)
            for_them.extend(name for name, h in held.items() if h not in theirs)
            mine = set(held.values())
            wanted.extend(h for h in hashes if h not in mine)
        if for_them:
            result.sends.extend(self._push([sender], self._states(for_them), full=True))
        if wanted:
            result.sends.extend(self._send([sender], NamedWant(tuple(wanted))))

    def _on_want(self, sender: str, message: NamedWant, result: NamedReceived) -> None:
        exchange = self._exchanges.get(sender)
        if exchange is None:
            return
        names = {exchange.names[h] for h in message.hashes if h in exchange.names}
        names -= exchange.answered
        exchange.answered |= names
        if names:
            result.sends.extend(self._push([sender], self._states(sorted(names)), full=True))

    # -- helpers --------------------------------------------------------------------------

    def _admit(self, theirs: CounterMapState) -> tuple[CounterMapState, int, str | None]:
        """``theirs`` without forged entries, how many names had some, or why to refuse."""
        own = self._replica_id
        limit = self._config.max_replicas
        clean: dict[str, CounterState] = {}
        forged = 0
        tombstones = self._tombstones
        for name, state in theirs.counters.items():
            if tombstones is not None:
                state = tombstones.admit(state, named=True)
            ours = self._counters.state(name)
            inc, dec = state.increments, state.decrements
            if inc.get(own, 0) > ours.increments.get(own, 0) or (
                dec.get(own, 0) > ours.decrements.get(own, 0)
            ):
                forged += 1
                state = CounterState.from_maps(
                    {r: c for r, c in inc.items() if r != own},
                    {r: c for r, c in dec.items() if r != own},
                )
            if len(state.replicas() | ours.replicas()) > limit:
                return (
                    CounterMapState.empty(),
                    forged,
                    (f"counter {name[:64]!r} would pass max_replicas={limit}"),
                )
            if state:
                clean[name] = state
        return CounterMapState(clean), forged, None

    def _queue(self, changes: CounterMapState, source: str | None) -> None:
        if not changes or not self._config.delta_gossip:
            return
        holders = frozenset(()) if source is None else frozenset((source,))
        self._pending_holders = holders if not self._pending else self._pending_holders & holders
        self._pending = self._pending.merged(changes)

    def _refresh(self) -> None:
        if self._dirty:
            dirty, self._dirty = self._dirty, set()
            state = self._counters.state
            update = self._digests.update
            for name in dirty:
                update(name, state(name))

    def _states(self, names: Iterable[str]) -> CounterMapState:
        state = self._counters.state
        return CounterMapState({name: state(name) for name in names})

    def _targets(self, count: int, *, exclude: Iterable[str] = ()) -> list[str]:
        candidates = self._peers.sample(len(self._peers), self._rng, exclude=frozenset(exclude))
        return [address for address in candidates if self._named_to(address)][:count]

    def _push(self, targets: list[str], state: CounterMapState, *, full: bool) -> list[Outgoing]:
        if not targets or not state:
            return []
        return self._send(targets, NamedPush(state, full))

    def _send(self, targets: list[str], message: NamedMessage) -> list[Outgoing]:
        if not targets:
            return []
        try:
            parts = split_named(message, max_size=self._part_size)
        except ProtocolError as exc:
            self._failure = exc
            return []
        kind: NamedKind = message.kind
        return [Outgoing(address, kind, part) for address in targets for part in parts]

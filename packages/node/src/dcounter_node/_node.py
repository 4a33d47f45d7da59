"""A PN-counter replica that gossips its state with peers over a transport.

:class:`Node` drives the sans-IO gossip core (:mod:`dcounter_node._gossip`, which decides
what goes to whom): it runs the timers, handles the messages that :class:`Inbound` passes
on, makes counts durable before a push carrying them leaves, and bounds the sends in flight
per peer and in total.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
from typing import TYPE_CHECKING, Self

from dcounter_crdt import CounterState, KeyLimitError, PNCounter
from dcounter_node._config import NodeConfig
from dcounter_node._counters import Counters
from dcounter_node._errors import (
    NodeClosedError,
    NodeError,
    NodeNotStartedError,
    StorageError,
)
from dcounter_node._gossip import Gossip
from dcounter_node._inbound import Inbound
from dcounter_node._incarnation import starting_point
from dcounter_node._named_link import NamedLink
from dcounter_node._outbound import Outbound
from dcounter_node._peers import PeerManager
from dcounter_node._ratelimit import RateLimitedLog
from dcounter_node._refusals import Refusals
from dcounter_node._rounds import GossipRounds
from dcounter_node._stats import NodeStats
from dcounter_node._watch import ValueWatch, Watchers
from dcounter_protocol import MessageType, TCPTransport, is_named

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine
    from contextlib import AbstractContextManager
    from types import TracebackType

    from dcounter_node._gossip_types import Outgoing, Received
    from dcounter_node._pruning import Tombstones
    from dcounter_node._storage import StateStore, StoredState
    from dcounter_protocol._transport import Handler, Transport

__all__ = ["Node"]

logger = logging.getLogger(__name__)

#: How long close() waits for sends already in flight (including the farewell delta).
_CLOSE_DRAIN_TIMEOUT = 1.0
#: A hostile peer's refused pushes are logged at most once per peer per this many seconds.
_HOSTILE_LOG_EVERY = 60.0


class _Status(enum.Enum):
    NEW = "new"
    STARTING = "starting"
    RUNNING = "running"
    CLOSING = "closing"
    CLOSED = "closed"


class Node:
    """One replica of the distributed PN-counter.

    Composed of a :class:`~dcounter_crdt.PNCounter`, a transport, a :class:`PeerManager`
    and an optional durable :class:`~dcounter_node._storage.StateStore`. All methods must be
    called from the event loop the node was started on, except ``peers`` and
    ``stats.snapshot()``, which are thread-safe.

    ``state`` seeds the counter (merged with whatever the store returns). ``rng`` makes peer
    selection and timer phases reproducible. ``tombstones`` (pruning records, see "Pruning"
    in the README) are applied to the state on start and to every push merged.
    """

    def __init__(
        self,
        transport: Transport,
        config: NodeConfig | None = None,
        *,
        peers: PeerManager | None = None,
        state: CounterState | None = None,
        store: StateStore | None = None,
        rng: random.Random | None = None,
        tombstones: Tombstones | None = None,
    ) -> None:
        self._transport = transport
        self._tombstones = tombstones
        self._config = config if config is not None else NodeConfig()
        self._peers = peers if peers is not None else PeerManager()
        self._initial_state = state if state is not None else CounterState.empty()
        self._store = store
        self._store_opened = False
        self._rng = rng if rng is not None else random.Random()
        self._stats = NodeStats()
        self._status = _Status.NEW
        self._gossip: Gossip | None = None
        self._address: str | None = None

        self._tasks: list[asyncio.Task[None]] = []
        self._rounds: GossipRounds | None = None
        self._closer: asyncio.Future[None] | None = None
        self._watches = Watchers()
        self._log = RateLimitedLog(logger)
        self._hostile_log = RateLimitedLog(logger, _HOSTILE_LOG_EVERY)
        self._outbound = Outbound(
            transport, self._stats, self._log, limit=self._config.outbound_queue_size, store=store
        )
        self._inbound = Inbound(
            self._handle,
            lambda: self._status in (_Status.STARTING, _Status.RUNNING),
            self._stats,
            self._log,
            queue_size=self._config.inbound_queue_size,
        )
        # Set while the gossip core holds changed entries for the next delta flush;
        # `_flush_armed` mirrors it so that a local update checks a bool, not the event.
        self._pending_ready = asyncio.Event()
        #: Awaited by start() once the transport listens, before the store opens (a node
        #: asks the heir of its bequeathed id to revoke it, see "Pruning" in the README).
        self.before_open: Callable[[], Awaitable[None]] | None = None
        self._flush_armed = False
        self._counters = Counters(self, self._wake_flush)
        self._refusals = Refusals(self._stats, self._peers, self._log, self._hostile_log)
        self._named = NamedLink(transport, self._peers, self._stats, self._log, self._refusals)

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Start listening, open the store and begin gossiping; a no-op when running.

        Raises :class:`NodeClosedError` after close(); errors of the store or transport
        propagate (the node is then closed).
        """
        if self._status is _Status.RUNNING:
            return
        if self._status is _Status.STARTING:
            raise NodeError("start() is already in progress")
        if self._status is not _Status.NEW:
            raise NodeClosedError("a closed node cannot start again")
        self._status = _Status.STARTING
        try:
            await self._start()
        except BaseException:
            await self.close()
            raise

    async def _start(self) -> None:
        transport = self._transport
        if isinstance(transport, TCPTransport):
            await transport.listen(self._inbound.on_frame, handle_now=self._inbound.on_frame_now)
        else:
            await transport.listen(self._inbound.on_frame)
        self._still_starting()
        if self.before_open is not None:
            await self.before_open()
            self._still_starting()
        stored = None
        if self._store is not None:
            self._store_opened = True
            stored = await self._store.open()
            self._still_starting()
        address = self._transport.address
        self._address = address
        self._peers.set_self_address(address)
        resumed, replica_id, state = await self._resume(address, stored)
        self._gossip = Gossip(
            PNCounter(replica_id, state),
            address,
            self._config,
            self._peers,
            self._rng,
            streams_to=self._streams_to,
            tombstones=self._tombstones,
        )
        self._bind_counters(replica_id, stored)
        if self._tombstones is not None:  # the named counters' entries are pruned alike
            self._counters._apply_tombstones(self._tombstones, resumed, replica_id)
        # After the binding: the named digests are built from the counters as loaded.
        self._named.start(
            self._counters, replica_id, self._config, self._rng, tombstones=self._tombstones
        )
        if self._store is not None and self._initial_state:
            self._store.stage(self._initial_state)

        self._status = _Status.RUNNING
        self._run(self._gossip, address, replica_id)

    async def _resume(
        self, address: str, stored: StoredState | None
    ) -> tuple[str, str, CounterState]:
        """The replica id this start resumes (bound in the store), and the id and state it
        continues with (its successor's, if that id was pruned meanwhile)."""
        # A new incarnation id whenever the node starts without its complete durable state
        # (none, or an unclean shutdown that may have lost the log's tail), so its fresh
        # counts are never swallowed by its old ones still held by peers (_incarnation).
        start = starting_point(address, self._config.replica_id, self._initial_state, stored)
        replica_id, state = start.replica_id, start.state
        if start.unclean_previous is not None:
            logger.warning(
                "no clean shutdown recorded: continuing as replica %s (was %s)",
                replica_id,
                start.unclean_previous,
            )
        if start.new_incarnation and self._store is not None:
            await self._store.bind(replica_id)
            self._still_starting()
        resumed = replica_id
        if self._tombstones is not None:
            # A resumed id that was pruned meanwhile continues under its successor.
            replica_id, state = self._tombstones.adopt(replica_id, state)
        return resumed, replica_id, state

    def _run(self, gossip: Gossip, address: str, replica_id: str) -> None:
        """Start the inbound worker, the gossip rounds and the delta flush."""
        config = self._config
        self._spawn(self._inbound.process(), "inbound")
        self._rounds = GossipRounds(
            sync_interval=config.sync_interval,
            full_sync_interval=config.effective_full_sync_interval,
            rng=self._rng,
            sync_round=self._sync_round,
            full_sync_round=self._full_sync_round,
            full_sync_due=lambda: gossip.full_sync_due,
        )
        self._rounds.start()
        if config.delta_gossip:
            self._spawn(self._flush_deltas(), "delta")
        logger.info(
            "node %s started (replica %s, peers: %d, %s gossip)",
            address,
            replica_id,
            len(self._peers),
            "delta" if config.delta_gossip else "seed",
        )

    def _bind_counters(self, replica_id: str, stored: StoredState | None) -> None:
        """Named counters start from what the store kept (a new incarnation keeps the old
        replica's entries, as for the default counter) and persist into it."""
        named = None if stored is None else stored.named
        try:
            self._counters._bind(replica_id, named)
        except KeyLimitError as exc:
            # As for a replica id the configuration contradicts: refuse, never drop counts.
            raise StorageError(
                f"the stored named counters do not fit this node's key limits: {exc}"
                " (raise max_keys or max_key_length to start on this store)"
            ) from None
        if self._store is not None:
            self._counters.persist = self._store.stage_named

    def _still_starting(self) -> None:
        if self._status is not _Status.STARTING:
            raise NodeClosedError("the node was closed while starting")

    async def close(self) -> None:
        """Stop gossiping and release everything; idempotent and safe to call concurrently.

        Pending deltas get one last push, sends in flight get a short grace period, then
        every task is cancelled and awaited, the transport closed and the store closed last.
        """
        if self._closer is None:
            self._closer = asyncio.ensure_future(self._close())
        await asyncio.shield(self._closer)

    async def _close(self) -> None:
        was_running = self._status is _Status.RUNNING
        self._status = _Status.CLOSING
        self._counters._closing()
        if self._rounds is not None:
            self._rounds.stop()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            if was_running and self._config.delta_gossip:
                # Writes not yet gossiped would be lost with a node that never comes back.
                self._flush()
            if was_running:
                self._stage_local()  # what the store's close must still commit
            await self._named.close()
            await self._outbound.close(_CLOSE_DRAIN_TIMEOUT)
            await self._transport.close()
        finally:
            self._inbound.clear()
            self._watches.end()
            self._counters._end_watches()
            self._status = _Status.CLOSED
            if self._store is not None and self._store_opened:
                await self._store.close()
            logger.info("node %s closed", self._address or self._transport.address)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- public API -----------------------------------------------------------------------

    @property
    def membership_handler(self) -> Handler | None:
        """Takes membership frames (issue 14) before the counter's gossip would see them."""
        return self._inbound.membership_handler

    @membership_handler.setter
    def membership_handler(self, handler: Handler | None) -> None:
        self._inbound.membership_handler = handler

    @property
    def pruning_handler(self) -> Handler | None:
        """Takes pruning frames (issue 14) likewise."""
        return self._inbound.pruning_handler

    @pruning_handler.setter
    def pruning_handler(self, handler: Handler | None) -> None:
        self._inbound.pruning_handler = handler

    @property
    def address(self) -> str:
        """This node's transport address (the bound one once started); its message node id."""
        return self._address if self._address is not None else self._transport.address

    @property
    def transport(self) -> Transport:
        """The transport this node gossips over (read-only use: stats, address)."""
        return self._transport

    @property
    def replica_id(self) -> str:
        """The counter replica id of this incarnation (known once started)."""
        if self._gossip is None:
            if self._config.replica_id is not None:
                return self._config.replica_id
            raise NodeNotStartedError("the replica id is chosen when the node starts")
        return self._gossip.counter.replica_id

    @property
    def config(self) -> NodeConfig:
        """The node's settings."""
        return self._config

    @property
    def peers(self) -> PeerManager:
        """The peers this node gossips with (thread-safe; add or remove at any time)."""
        return self._peers

    @property
    def stats(self) -> NodeStats:
        """Live statistics; call ``stats.snapshot()`` for a consistent copy."""
        return self._stats

    @property
    def running(self) -> bool:
        """True between a successful start() and close()."""
        return self._status is _Status.RUNNING

    @property
    def closed(self) -> bool:
        """True once close() has begun."""
        return self._status in (_Status.CLOSING, _Status.CLOSED)

    @property
    def counters(self) -> Counters:
        """Every counter of this node by name; ``"default"`` is the one :meth:`increment`
        counts (named counters: issue 20)."""
        return self._counters

    @property
    def sends_in_flight(self) -> int:
        """Sends started and not finished yet (bounded by ``outbound_queue_size``)."""
        return len(self._outbound)

    @property
    def value(self) -> int:
        """The counter's value as this replica sees it."""
        if self._gossip is None:
            return self._initial_state.value
        return self._gossip.counter.value

    @property
    def contribution(self) -> int:
        """This replica's own increments minus decrements."""
        if self._gossip is None:
            return 0
        return self._gossip.counter.contribution()

    @property
    def digest(self) -> int:
        """The state digest peers compare with (cached until the state changes)."""
        if self._gossip is None:
            return Gossip.digest_of(self._initial_state)
        return self._gossip.digest

    def state(self) -> CounterState:
        """The full per-replica state (an immutable snapshot)."""
        if self._gossip is None:
            return self._initial_state
        return self._gossip.state()

    def increment(self, by: int = 1) -> int:
        """Add ``by`` (an int >= 1) to this replica's count; return the new value.

        Raises :class:`~dcounter_crdt.InvalidAmountError` for a bad amount,
        :class:`~dcounter_crdt.CountOverflowError` past 2**64 - 1, NodeNotStartedError or
        NodeClosedError outside the node's lifetime.
        """
        # The hot path: one addition in the counter. The change is staged in the store
        # and encoded for peers once per flush, commit() or sync round, not per call.
        gossip = self._gossip
        if gossip is None or self._status is not _Status.RUNNING:
            gossip = self._writable()
        gossip.add(by)
        return self._counted(gossip)

    def decrement(self, by: int = 1) -> int:
        """Subtract ``by`` (an int >= 1) from this replica's count; return the new value."""
        gossip = self._gossip
        if gossip is None or self._status is not _Status.RUNNING:
            gossip = self._writable()
        gossip.subtract(by)
        return self._counted(gossip)

    async def commit(self) -> None:
        """Return once every change so far is durable (at once without a store)."""
        if self._store is not None and self._store_opened:
            self._stage_local()
            await self._store.commit()

    def watch(self, *, initial: bool = True) -> ValueWatch:
        """Iterate over the value as it changes, starting with the current value.

        ``initial=False`` skips the current value. The iteration ends when the node closes
        (at once if it is closed already); call ``aclose()`` (or use ``async with``) to stop
        earlier, or just drop the iterator.
        """
        return self._watches.new(self.value if initial else None, closed=self.closed)

    def apply_tombstones(self) -> int:
        """Apply the pruning records known now (see "Pruning"); the entries removed.

        Drops victims' entries, raises survivors', and moves this replica to its successor
        when its own id is a victim, in the named counters too. No value changes.
        """
        gossip = self._gossip
        if gossip is None or self._tombstones is None or self.closed:
            return 0
        before = gossip.state()
        value = gossip.counter.value
        own_id = gossip.counter.replica_id
        replica_id, state = self._tombstones.adopt(own_id, before)
        names, removed = self._counters._apply_tombstones(self._tombstones, own_id, replica_id)
        self._named.rebased(replica_id, names)
        if replica_id == own_id and state == before:
            return removed
        rose = gossip.rebase(replica_id, state)
        self._changed(rose, value)
        return removed + len(before.replicas() - state.replicas())

    # -- state bookkeeping ----------------------------------------------------------------

    def _writable(self) -> Gossip:
        if self._status in (_Status.CLOSING, _Status.CLOSED):
            raise NodeClosedError("the node is closed")
        if self._gossip is None:
            raise NodeNotStartedError("start the node before counting")
        return self._gossip

    def _counted(self, gossip: Gossip) -> int:
        """After a local update: wake the delta flush, tell the watchers; the new value."""
        if not self._flush_armed and self._config.delta_gossip:
            self._wake_flush()
        value = gossip.counter.value
        if self._watches:
            self._watches.publish(value)
        return value

    def _changed(self, changes: CounterState, value_before: int) -> None:
        """Record that ``changes`` (learned and applied by the gossip core) altered the state."""
        if self._store is not None:
            self._store.stage(changes)
        if self._gossip is not None and self._gossip.has_pending:
            self._wake_flush()
        value = self.value
        if value != value_before:
            self._watches.publish(value)

    def _wake_flush(self) -> None:
        self._flush_armed = True
        self._pending_ready.set()
        if self._rounds is not None:
            self._rounds.woken()

    def _stage_local(self) -> None:
        """Stage the local updates not staged yet: before a commit, and before any send
        (which may carry them: a push leaves only once its counts are durable)."""
        gossip = self._gossip
        if gossip is not None:
            changes = gossip.take_local()
            if changes and self._store is not None:
                self._store.stage(changes)
        if self._counters.has_local:
            self._counters.stage_local()

    def _streams_to(self, address: str) -> bool:
        """Whether ``address`` takes full-size messages (not limited to one seed read)."""
        transport = self._transport
        return not isinstance(transport, TCPTransport) or transport.streaming(address)

    # -- received messages ------------------------------------------------------------------

    def _handle(self, sender: str, payload: bytes) -> None:
        gossip = self._gossip
        if gossip is None:  # pragma: no cover - the worker starts after the gossip core
            return
        if is_named(payload):
            self._stage_local()  # the digests it compares must include every local write
            self._send_all(self._named.handle(sender, payload))
            if self._named.has_pending:  # won entries to forward
                self._wake_flush()
            self._pace(gossip)
            return
        before = gossip.counter.value
        received = gossip.receive(sender, payload)
        message = received.message
        if message is None or received.error is not None:
            self._stats.record_decode_error()
            exc = received.error
            self._log.warning(
                "decode",
                "dropping an invalid message from %s: %s: %s",
                sender,
                type(exc).__name__,
                exc,
            )
            return
        self._stats.record_received(message.type, len(payload), sender)
        if message.type is MessageType.PUSH:
            self._stats.record_merge(changed=bool(received.learned))
        if received.learned:
            self._changed(received.learned, before)
        self._report(sender, received)
        self._send_all(received.sends)
        self._pace(gossip)

    def _pace(self, gossip: Gossip) -> None:
        if self._rounds is not None:
            self._rounds.pace(gossip, self._named, in_agreement=gossip.in_agreement)

    def _report(self, sender: str, received: Received) -> None:
        """Count and log (rate limited) what the gossip core refused."""
        rejected = received.rejected
        self._refusals.report(
            sender,
            rejected=None if rejected is None else rejected.value,
            forged=str(received.forged) if received.forged else None,
            unknown_sender=received.unknown_sender,
        )

    def _send_all(self, sends: list[Outgoing]) -> None:
        # Before the sends start: each push commits the store first (see Outbound), and
        # that commit must cover every count the push carries.
        self._stage_local()
        for send in sends:
            self._outbound.send(send)
        failure = self._gossip.take_encode_failure() if self._gossip is not None else None
        if failure is not None:
            self._log.warning("encode", "cannot encode a push: %s", failure)

    # -- periodic gossip ------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[object, object, None], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(f"dcounter-node {self.address} {name}")
        self._tasks.append(task)

    def _sync_round(self) -> None:
        gossip = self._gossip
        if gossip is None:
            return
        pulls = gossip.sync_tick()
        named = self._named.sync_tick(prefer=[send.address for send in pulls])
        # Both pulls of the round to one peer, in one write: one system call here and one
        # wake-up there instead of two.
        with self._corked():
            self._send_all(pulls)
            self._send_all(named)
        if self._rounds is not None:
            self._rounds.round_ended(gossip, self._named, in_agreement=gossip.in_agreement)

    def _corked(self) -> AbstractContextManager[None]:
        """Writes on streams held until the block ends (see ``TCPTransport.corked``)."""
        transport = self._transport
        if isinstance(transport, TCPTransport):
            return transport.corked()
        return contextlib.nullcontext()

    def _full_sync_round(self) -> None:
        if self._gossip is not None:
            self._send_all(self._gossip.full_sync_tick())

    async def _flush_deltas(self) -> None:
        interval = self._config.delta_flush_interval
        while True:
            await self._pending_ready.wait()
            await asyncio.sleep(interval)
            self._flush()

    def _flush(self) -> None:
        self._pending_ready.clear()
        self._flush_armed = False
        if self._gossip is not None:
            self._send_all(self._gossip.flush())
            self._send_all(self._named.flush())

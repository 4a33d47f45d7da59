"""A PN-counter replica that gossips its state with peers over a transport.

Anti-entropy follows the seed (and stays wire-compatible with the Go reference): every sync
interval a digest pull goes to a few random peers; a receiver whose digest matches answers
with a digest ack, otherwise with a push of its full state; every full-sync interval a full
push goes to a few peers; pushes merge by pointwise max. Replies go to the sender address
carried in the frame.

Beyond the seed (``NodeConfig.delta_gossip``, on by default): changes are pushed eagerly.
Local updates and entries won in merges are batched for ``delta_flush_interval`` and pushed,
holding only the changed entries, to ``delta_fanout`` random peers (never back to the one
they came from), so a write spreads like an epidemic in milliseconds instead of sync rounds.
In that mode full-state pushes carry the sender's digest (a field the reference ignores on
pushes), and a node that gets one while holding entries the sender lacks answers with just
those entries, so one pull repairs both sides. The periodic full push is skipped while no
divergence was seen since a peer acknowledged our digest (a converged, idle cluster
exchanges digests only).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import secrets
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Self

from dcounter_crdt import CounterState, CRDTError, PNCounter
from dcounter_node._config import NodeConfig
from dcounter_node._errors import (
    ForeignStorageError,
    NodeClosedError,
    NodeError,
    NodeNotStartedError,
)
from dcounter_node._peers import PeerManager
from dcounter_node._stats import NodeStats
from dcounter_protocol import (
    Message,
    MessageType,
    ProtocolError,
    TransportError,
    decode_message,
    encode_message,
    state_digest,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Mapping
    from types import TracebackType

    from dcounter_node._storage import StateStore
    from dcounter_protocol._transport import Transport

__all__ = ["Node", "ValueWatch"]

logger = logging.getLogger(__name__)

#: Values a lagging watcher keeps before the oldest are dropped (the latest always stays).
WATCH_QUEUE_SIZE = 64
#: Sends in flight to one address; beyond this a dead or slow peer's sends are dropped so it
#: cannot use up the node's whole outbound budget.
_MAX_SENDS_PER_PEER = 8
#: How long close() waits for sends already in flight (including the farewell delta).
_CLOSE_DRAIN_TIMEOUT = 1.0
#: Repeated warnings of one kind are logged at most once per this many seconds.
_LOG_EVERY = 10.0


class _Status(enum.Enum):
    NEW = "new"
    STARTING = "starting"
    RUNNING = "running"
    CLOSING = "closing"
    CLOSED = "closed"


class ValueWatch(AsyncIterator[int]):
    """An async iterator over a node's value; ends when the node closes.

    Each watch has its own bounded buffer: a consumer that lags sees the oldest values
    dropped, never the latest one, and never slows the node down.
    """

    def __init__(self, maxlen: int = WATCH_QUEUE_SIZE) -> None:
        self._values: deque[int] = deque(maxlen=maxlen)
        self._wakeup = asyncio.Event()
        self._closed = False

    @property
    def closed(self) -> bool:
        """True once the watch ended (node closed or :meth:`aclose` called)."""
        return self._closed

    def _publish(self, value: int) -> None:
        if not self._closed:
            self._values.append(value)
            self._wakeup.set()

    def _end(self) -> None:
        self._closed = True
        self._wakeup.set()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> int:
        while not self._values:
            if self._closed:
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()
        return self._values.popleft()

    async def aclose(self) -> None:
        """Stop watching; buffered values are discarded."""
        self._values.clear()
        self._end()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class _RateLimitedLog:
    """Logs a recurring warning once per interval per key, counting what it held back."""

    _MAX_KEYS = 1024

    def __init__(self, interval: float = _LOG_EVERY) -> None:
        self._interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, key: str, msg: str, *args: object) -> None:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        if len(self._last) >= self._MAX_KEYS:
            self._last.clear()
            self._suppressed.clear()
        self._last[key] = now
        held = self._suppressed.pop(key, 0)
        if held:
            logger.warning(msg + " (%d similar messages suppressed)", *args, held)
        else:
            logger.warning(msg, *args)


class Node:
    """One replica of the distributed PN-counter.

    Composed of a :class:`~dcounter_crdt.PNCounter`, a transport, a :class:`PeerManager`
    and an optional durable :class:`~dcounter_node._storage.StateStore`. All methods must be
    called from the event loop the node was started on, except ``peers`` and
    ``stats.snapshot()``, which are thread-safe.

    ``state`` seeds the counter (merged with whatever the store returns). ``rng`` makes peer
    selection and timer phases reproducible.
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
    ) -> None:
        self._transport = transport
        self._config = config if config is not None else NodeConfig()
        self._peers = peers if peers is not None else PeerManager()
        self._initial_state = state if state is not None else CounterState.empty()
        self._store = store
        self._store_opened = False
        self._rng = rng if rng is not None else random.Random()
        self._stats = NodeStats()
        self._status = _Status.NEW
        self._counter: PNCounter | None = None
        self._address: str | None = None

        self._inbound: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(
            maxsize=self._config.inbound_queue_size
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._sends: set[asyncio.Task[None]] = set()
        self._sends_per_peer: dict[str, int] = {}
        self._closer: asyncio.Future[None] | None = None
        self._watches: weakref.WeakSet[ValueWatch] = weakref.WeakSet()
        self._log = _RateLimitedLog()

        # Caches, dropped on every change of state (the digest is recomputed only then).
        self._snapshot: CounterState | None = None
        self._digest: int | None = None
        self._full_push: bytes | None = None

        # Delta gossip: changed entries waiting for the next flush.
        self._pending = CounterState.empty()
        self._pending_ready = asyncio.Event()
        # Peers known to hold every pending entry already (the one they all came from).
        self._pending_holders: frozenset[str] = frozenset()
        # Delta gossip: whether anything diverged since the last full sync or since a peer
        # confirmed holding our exact state (while False, the periodic full push is skipped).
        self._diverged = True

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the store, start listening and begin gossiping; a no-op when running.

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
        stored = None
        if self._store is not None:
            self._store_opened = True
            stored = await self._store.open()
            self._still_starting()
        await self._transport.listen(self._on_frame)
        self._still_starting()
        address = self._transport.address
        self._address = address
        self._peers.set_self_address(address)

        wanted = self._config.replica_id
        if stored is not None and wanted is not None and wanted != stored.replica_id:
            raise ForeignStorageError(
                f"the store belongs to replica {stored.replica_id!r}, "
                f"but the configuration asks for {wanted!r}"
            )
        if stored is not None and stored.clean_shutdown:
            replica_id = stored.replica_id
            state = self._initial_state.merged(stored.state)
        else:
            # A new incarnation id whenever the node starts without its complete durable
            # state (none, or an unclean shutdown that may have lost the log's tail), so
            # its fresh counts are never swallowed by its old ones still held by peers.
            replica_id = wanted or f"{address}#{secrets.token_hex(4)}"
            state = self._initial_state
            if stored is not None:
                state = state.merged(stored.state)
                logger.warning(
                    "no clean shutdown recorded: continuing as replica %s (was %s)%s",
                    replica_id,
                    stored.replica_id,
                    ""
                    if wanted is None
                    else "; the id is fixed by the configuration, so"
                    " peers holding higher counts for it may absorb the next writes",
                )
            if self._store is not None:
                await self._store.bind(replica_id)
                self._still_starting()
        self._counter = PNCounter(replica_id, state)
        if self._store is not None and self._initial_state:
            self._store.stage(self._initial_state)

        self._status = _Status.RUNNING
        config = self._config
        self._spawn(self._process_inbound(), "inbound")
        self._spawn(self._every(config.sync_interval, self._sync_round), "sync")
        self._spawn(
            self._every(config.effective_full_sync_interval, self._full_sync_round), "full-sync"
        )
        if config.delta_gossip:
            self._spawn(self._flush_deltas(), "delta")
        logger.info(
            "node %s started (replica %s, peers: %d, %s gossip)",
            address,
            replica_id,
            len(self._peers),
            "delta" if config.delta_gossip else "seed",
        )

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
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            if was_running and self._config.delta_gossip:
                # Writes not yet gossiped would be lost with a node that never comes back.
                self._flush_pending()
            if self._sends:
                await asyncio.wait(set(self._sends), timeout=_CLOSE_DRAIN_TIMEOUT)
            sends = set(self._sends)
            for task in sends:
                task.cancel()
            await asyncio.gather(*sends, return_exceptions=True)
            await self._transport.close()
        finally:
            while not self._inbound.empty():
                self._inbound.get_nowait()
            for watch in list(self._watches):
                watch._end()
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
        if self._counter is None:
            if self._config.replica_id is not None:
                return self._config.replica_id
            raise NodeNotStartedError("the replica id is chosen when the node starts")
        return self._counter.replica_id

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
    def sends_in_flight(self) -> int:
        """Sends started and not finished yet (bounded by ``outbound_queue_size``)."""
        return len(self._sends)

    @property
    def value(self) -> int:
        """The counter's value as this replica sees it."""
        if self._counter is None:
            return self._initial_state.value
        return self._counter.value

    @property
    def contribution(self) -> int:
        """This replica's own increments minus decrements."""
        if self._counter is None:
            return 0
        return self._counter.contribution()

    @property
    def digest(self) -> int:
        """The state digest peers compare with (cached until the state changes)."""
        if self._digest is None:
            snapshot = self._current()
            self._digest = state_digest(snapshot.increments, snapshot.decrements)
        return self._digest

    def state(self) -> CounterState:
        """The full per-replica state (an immutable snapshot)."""
        return self._current()

    def increment(self, by: int = 1) -> int:
        """Add ``by`` (an int >= 1) to this replica's count; return the new value.

        Raises :class:`~dcounter_crdt.InvalidAmountError` for a bad amount,
        :class:`~dcounter_crdt.CountOverflowError` past 2**64 - 1, NodeNotStartedError or
        NodeClosedError outside the node's lifetime.
        """
        counter = self._writable()
        before = counter.value
        delta = counter.increment(by)
        self._changed(delta, before)
        return counter.value

    def decrement(self, by: int = 1) -> int:
        """Subtract ``by`` (an int >= 1) from this replica's count; return the new value."""
        counter = self._writable()
        before = counter.value
        delta = counter.decrement(by)
        self._changed(delta, before)
        return counter.value

    async def commit(self) -> None:
        """Return once every change so far is durable (at once without a store)."""
        if self._store is not None and self._store_opened:
            await self._store.commit()

    def watch(self, *, initial: bool = True) -> ValueWatch:
        """Iterate over the value as it changes, starting with the current value.

        ``initial=False`` skips the current value. The iteration ends when the node closes
        (at once if it is closed already); call ``aclose()`` (or use ``async with``) to stop
        earlier, or just drop the iterator.
        """
        watch = ValueWatch()
        if self.closed:
            watch._end()
            return watch
        if initial:
            watch._publish(self.value)
        self._watches.add(watch)
        return watch

    # -- state bookkeeping ----------------------------------------------------------------

    def _writable(self) -> PNCounter:
        if self._status in (_Status.CLOSING, _Status.CLOSED):
            raise NodeClosedError("the node is closed")
        if self._counter is None:
            raise NodeNotStartedError("start the node before counting")
        return self._counter

    def _current(self) -> CounterState:
        if self._counter is None:
            return self._initial_state
        if self._snapshot is None:
            self._snapshot = self._counter.snapshot()
        return self._snapshot

    def _changed(self, changes: CounterState, value_before: int, source: str | None = None) -> None:
        """Record that ``changes`` (already applied, learned from ``source``) altered the state."""
        self._snapshot = None
        self._digest = None
        self._full_push = None
        self._diverged = True
        if self._store is not None:
            self._store.stage(changes)
        if self._config.delta_gossip and self._status is _Status.RUNNING:
            holders = frozenset(()) if source is None else frozenset((source,))
            self._pending_holders = (
                holders if not self._pending else self._pending_holders & holders
            )
            self._pending = self._pending.merged(changes)
            self._pending_ready.set()
        value = self.value
        if value != value_before:
            for watch in list(self._watches):
                watch._publish(value)

    # -- inbound --------------------------------------------------------------------------

    async def _on_frame(self, sender: str, payload: bytes) -> None:
        """Transport handler: only queue the message, never block the transport."""
        if self._status not in (_Status.STARTING, _Status.RUNNING):
            return
        try:
            self._inbound.put_nowait((sender, payload))
        except asyncio.QueueFull:
            self._stats.record_inbound_drop()
            self._log.warning("inbound", "inbound queue full: dropping messages (from %s)", sender)

    async def _process_inbound(self) -> None:
        while True:
            sender, payload = await self._inbound.get()
            try:
                self._handle(sender, payload)
            except Exception:
                # A bug handling one message must not stop the node from gossiping.
                logger.exception("error handling a message from %s", sender)

    def _handle(self, sender: str, payload: bytes) -> None:
        try:
            message = decode_message(payload)
            gains = self._gains(message) if message.type is MessageType.PUSH else None
        except (ProtocolError, CRDTError) as exc:
            self._stats.record_decode_error()
            self._log.warning(
                "decode",
                "dropping an invalid message from %s: %s: %s",
                sender,
                type(exc).__name__,
                exc,
            )
            return
        self._stats.record_received(message.type, len(payload), sender)
        if gains is not None:
            self._on_push(sender, message, gains)
        elif message.type is MessageType.DIGEST_PULL:
            self._on_pull(sender, message)
        else:
            if message.digest == self.digest:
                # A peer holds exactly our state: no full push is needed for this change.
                self._diverged = False
            logger.debug("digest ack from %s (%016x)", sender, message.digest)

    def _gains(self, message: Message) -> CounterState:
        """The entries of a push that are higher than ours, validated by the CRDT.

        Only the winners are validated (a CRDT error, e.g. an empty replica id, rejects the
        message): most pushes mostly repeat what we hold, and building a state from every
        entry would cost more than the rest of the merge.
        """
        current = self._current()
        increments = _newer(message.increments, current.increments)
        decrements = _newer(message.decrements, current.decrements)
        if not increments and not decrements:
            return CounterState.empty()
        return CounterState.from_maps(increments, decrements)

    def _on_push(self, sender: str, message: Message, gains: CounterState) -> None:
        counter = self._counter
        if counter is None:  # pragma: no cover - the worker starts after the counter
            return
        self._stats.record_merge(changed=bool(gains))
        if gains:
            before = counter.value
            counter.merge(gains)
            self._changed(gains, before, sender)
        if not self._config.delta_gossip:
            return
        if not message.digest:
            # A delta, or a full state from a node that does not mark them (the reference):
            # either way someone differs from us, so keep the periodic full push going.
            self._diverged = True
            return
        # A push carrying a digest is the sender's full state (see _full_push_bytes).
        if message.digest == self.digest:
            self._diverged = False
            return
        # The sender lacks something we hold: hand it just that, so the pull (or full sync)
        # that caused this push repairs both sides at once.
        current = self._current()
        increments = _newer(current.increments, message.increments)
        decrements = _newer(current.decrements, message.decrements)
        if increments or decrements:
            self._send_push(sender, CounterState.from_maps(increments, decrements))

    def _on_pull(self, sender: str, message: Message) -> None:
        digest = self.digest
        if message.digest == digest:
            data = encode_message(Message.digest_ack(self.address, digest))
            self._send(sender, data, message_type=MessageType.DIGEST_ACK)
            return
        self._diverged = True
        push = self._full_push_bytes()
        if push is None:
            # An empty push is invalid on the wire; the puller's own pushes will reach us.
            logger.debug("pull from %s: digests differ but our state is empty", sender)
            return
        self._send(sender, push, message_type=MessageType.PUSH)

    # -- outbound -------------------------------------------------------------------------

    def _full_push_bytes(self) -> bytes | None:
        """Our full state as an encoded push (cached until the state changes).

        With delta gossip the push also carries our digest: the reference ignores a push's
        digest, and it tells our peers this is a full state, not a delta (see _on_push).
        Seed-exact pushes leave it out, byte for byte like the reference's.
        """
        if self._full_push is None:
            state = self._current()
            if not state:
                return None
            digest = self.digest if self._config.delta_gossip else 0
            message = Message.push(self.address, state.increments, state.decrements, digest)
            self._full_push = encode_message(message)
        return self._full_push

    def _send_push(self, address: str, state: CounterState) -> None:
        try:
            data = encode_message(Message.push(self.address, state.increments, state.decrements))
        except ProtocolError as exc:
            self._log.warning("encode", "cannot encode a push: %s", exc)
            return
        self._send(address, data, message_type=MessageType.PUSH)

    def _send(
        self,
        address: str,
        data: bytes,
        *,
        message_type: MessageType,
    ) -> None:
        """Send without waiting: one task per send, bounded in total and per peer."""
        in_flight = self._sends_per_peer.get(address, 0)
        if len(self._sends) >= self._config.outbound_queue_size or (
            in_flight >= _MAX_SENDS_PER_PEER
        ):
            self._stats.record_outbound_drop()
            self._log.warning(
                f"outbound:{address}", "too many sends in flight: dropping one to %s", address
            )
            return
        task = asyncio.ensure_future(self._deliver(address, data, message_type))
        self._sends.add(task)
        self._sends_per_peer[address] = in_flight + 1
        task.add_done_callback(lambda done: self._sent(done, address))

    def _sent(self, task: asyncio.Task[None], address: str) -> None:
        self._sends.discard(task)
        left = self._sends_per_peer.get(address, 1) - 1
        if left > 0:
            self._sends_per_peer[address] = left
        else:
            self._sends_per_peer.pop(address, None)

    async def _deliver(self, address: str, data: bytes, message_type: MessageType) -> None:
        try:
            if message_type is MessageType.PUSH and self._store is not None:
                # A push goes out only once every count in it is durable here. Otherwise a
                # crash could bring this replica back below what its peers already hold,
                # and max-merge would swallow its next acknowledged writes. Everything in
                # ``data`` was staged before it was encoded, so this commit covers it.
                await self._store.commit()
            await self._transport.send(address, data)
        except TransportError as exc:
            self._stats.record_send_failure()
            logger.debug("send to %s failed: %s: %s", address, type(exc).__name__, exc)
            self._log.warning(
                f"send:{address}", "cannot reach %s: %s: %s", address, type(exc).__name__, exc
            )
        except Exception as exc:
            self._stats.record_send_failure()
            self._log.warning(
                f"send:{address}", "send to %s failed: %s: %s", address, type(exc).__name__, exc
            )
        else:
            self._stats.record_sent(message_type, len(data), address)

    # -- periodic gossip ------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[object, object, None], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(f"dcounter-node {self.address} {name}")
        self._tasks.append(task)

    async def _every(self, interval: float, action: Callable[[], None]) -> None:
        """Run ``action`` every ``interval`` seconds, starting at a random phase."""
        loop = asyncio.get_running_loop()
        # A random phase keeps nodes started together from gossiping in lockstep.
        next_at = loop.time() + self._rng.uniform(0.0, interval)
        while True:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            try:
                action()
            except Exception:
                logger.exception("error in periodic gossip")
            next_at += interval
            now = loop.time()
            if next_at < now:  # fell behind (a stalled loop): skip the missed rounds
                next_at = now + interval

    def _sync_round(self) -> None:
        targets = self._peers.sample(self._config.max_sync_peers, self._rng)
        if not targets:
            return
        data = encode_message(Message.digest_pull(self.address, self.digest))
        for address in targets:
            self._send(address, data, message_type=MessageType.DIGEST_PULL)

    def _full_sync_round(self) -> None:
        if self._config.delta_gossip:
            if not self._diverged:
                return
            self._diverged = False
        data = self._full_push_bytes()
        if data is None:
            return
        for address in self._peers.sample(self._config.full_sync_peers, self._rng):
            self._send(address, data, message_type=MessageType.PUSH)

    async def _flush_deltas(self) -> None:
        interval = self._config.delta_flush_interval
        while True:
            await self._pending_ready.wait()
            await asyncio.sleep(interval)
            self._flush_pending()

    def _flush_pending(self) -> None:
        self._pending_ready.clear()
        pending, self._pending = self._pending, CounterState.empty()
        if not pending:
            return
        # Never echo a change back to the one peer it came from.
        targets = self._peers.sample(
            self._config.delta_fanout, self._rng, exclude=self._pending_holders
        )
        if not targets:
            return
        try:
            data = encode_message(
                Message.push(self.address, pending.increments, pending.decrements)
            )
        except ProtocolError as exc:
            self._log.warning("encode", "cannot encode a delta push: %s", exc)
            return
        for address in targets:
            self._send(address, data, message_type=MessageType.PUSH)


def _newer(theirs: Mapping[str, int] | None, ours: Mapping[str, int] | None) -> dict[str, int]:
    """The entries of ``theirs`` above the same entry of ``ours`` (absent counts as 0)."""
    if not theirs:
        return {}
    if not ours:
        return {key: count for key, count in theirs.items() if count > 0}
    get = ours.get
    return {key: count for key, count in theirs.items() if count > get(key, 0)}

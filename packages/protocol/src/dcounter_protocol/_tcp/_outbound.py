"""Sending: the seed framing (dial, write, close) and per-peer streams (offer, fall back,
queue, flush, re-open), as the module doc of :mod:`dcounter_protocol._tcp` describes.

Which wire a message takes is :class:`~dcounter_protocol._tcp._policy.PeerPolicy`'s call;
this module carries it out.
"""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING, Any

from dcounter_protocol._errors import ConnectError, TransportClosedError, TransportError
from dcounter_protocol._framing import encode_frame
from dcounter_protocol._stream import STREAM_VERSION_CAPS, encode_hello, encode_stream_frames
from dcounter_protocol._tcp._boundary import error_text, os_errors
from dcounter_protocol._tcp._options import (
    BATCH_BYTES,
    CLOSE_GRACE,
    MAX_PEERS,
    OPEN_ATTEMPTS,
    WRITE_NOW_AFTER,
    log,
)
from dcounter_protocol._tcp._outstream import OutboundStream, Peer
from dcounter_protocol._tcp._policy import Backoff, Route

if TYPE_CHECKING:
    from dcounter_protocol._tcp._bytestream import Backend, Dialer
    from dcounter_protocol._tcp._deadlines import Reaper
    from dcounter_protocol._tcp._options import Counters, TCPOptions

__all__ = ["Outbound"]


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Outbound:
    """Every peer this transport sends to, and the tasks and streams that serve them."""

    def __init__(
        self,
        sender: str,
        options: TCPOptions,
        counters: Counters,
        *,
        backend: Backend,
        dialer: Dialer,
        write_deadlines: Reaper,
    ) -> None:
        #: Our listen address, named in every frame and hello (the real port once bound).
        self.sender = sender
        self.closed = False
        self._options = options
        self._counters = counters
        self._backend = backend
        self._dialer = dialer
        self._write_deadlines = write_deadlines
        self._peers: dict[str, Peer] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._streams: set[OutboundStream] = set()
        #: While corked (see :meth:`cork`), the peers whose queued messages wait for uncork.
        self._held: dict[str, Peer] | None = None
        self._corks = 0

    @property
    def streams(self) -> set[OutboundStream]:
        """Stream connections made and not yet lost (confirmed or not)."""
        return self._streams

    def streaming(self, address: str) -> bool:
        """True while a confirmed stream to ``address`` is open."""
        peer = self._peers.get(address)
        return peer is not None and peer.stream is not None

    def queued(self) -> int:
        return sum(len(peer.queue) for peer in self._peers.values())

    def capabilities(self, address: str) -> int | None:
        """The capability bits ``address`` confirmed; None while it has no stream."""
        peer = self._peers.get(address)
        if peer is None or not peer.has_stream:
            return None
        return peer.capabilities

    async def open_stream(self, address: str) -> bool:
        """Open a stream to ``address`` unless one is open; True once one is confirmed.

        False for a peer taken for seed-only or one that did not confirm in time; raises
        :class:`TransportError` if the dial fails.
        """
        loop = asyncio.get_running_loop()
        peer = self._peer(address)
        if peer.has_stream:
            return True
        if not peer.policy.probe_due(loop.time()):
            return False
        connecting = peer.connecting or self._start_offer(loop, peer)
        # Shielded: other sends may wait for the same offer.
        await asyncio.shield(connecting)
        return peer.has_stream

    def try_queue(self, address: str, data: bytes) -> bool:
        """Queue ``data`` if ``address`` has a stream and it fits one; else False."""
        peer = self._peers.get(address)
        if peer is not None and peer.has_stream and 0 < len(data) <= self._options.max_message_size:
            self._enqueue(peer, data)
            return True
        return False

    # -- the seed framing -------------------------------------------------------------------

    async def send_seed(self, task: asyncio.Task[Any], address: str, data: bytes) -> None:
        """One message, one connection: dial, write the frame, close (EOF ends the frame)."""
        frame = encode_frame(self.sender, data)
        stream = await self._dialer.dial(task, address)
        guard = os_errors(f"write to {address}")
        try:
            with guard:
                # Most frames fit the socket buffer: one send(), no waiting, no deadline.
                sent = stream.try_send(frame)
                if sent < len(frame):
                    loop = asyncio.get_running_loop()
                    guard.deadline = self._write_deadlines.start(loop, task)
                    await stream.send_all(memoryview(frame)[sent:])
        finally:
            # The kernel still delivers what is buffered, then sends FIN.
            stream.close()
        self._counters.seed_sent += 1

    # -- streams: the first send to a peer -------------------------------------------------

    async def send_auto(self, task: asyncio.Task[Any], address: str, data: bytes) -> None:
        """Queue on the peer's stream, opening one first if the policy says so."""
        loop = asyncio.get_running_loop()
        for _ in range(OPEN_ATTEMPTS):
            peer = self._peer(address)
            route = peer.policy.route(loop.time(), has_stream=peer.has_stream)
            if route is Route.QUEUE:
                self._enqueue(peer, data)
                return
            if route is Route.SEED:
                break
            connecting = peer.connecting or self._start_offer(loop, peer)
            answer = peer.answered
            if answer is not None and not answer.done():
                # Shielded: the answer serves every send waiting for it, not only this one.
                await asyncio.shield(answer)
            if not connecting.done():
                # Dialled, but the confirmation is late (a loaded peer or loop): this message
                # goes the seed way; the stream is still taken if the confirmation comes.
                break
            if connecting.cancelled():
                raise TransportClosedError(f"transport {self.sender} closed during send")
            error = connecting.exception()
            if isinstance(error, TransportError):
                # Each waiting send raises its own error, not one shared object.
                raise type(error)(str(error)) from error
            if error is not None:
                raise error
        # Seed-only, confirming late, or the new stream broke at once every time: the framing
        # that always works.
        await self.send_seed(task, address, data)

    def _peer(self, address: str) -> Peer:
        peer = self._peers.get(address)
        if peer is None:
            if len(self._peers) >= MAX_PEERS:
                now = asyncio.get_running_loop().time()
                for stale in [a for a, p in self._peers.items() if p.forgettable(now)]:
                    del self._peers[stale]
            peer = self._peers[address] = Peer(address, self._options)
        return peer

    def _start_offer(self, loop: asyncio.AbstractEventLoop, peer: Peer) -> asyncio.Task[bool]:
        peer.answered = loop.create_future()
        connecting = loop.create_task(self._open_stream(peer, peer.answered))
        peer.connecting = connecting
        self._tasks.add(connecting)
        connecting.add_done_callback(functools.partial(self._connecting_done, peer))
        return connecting

    def _connecting_done(self, peer: Peer, task: asyncio.Task[bool]) -> None:
        if peer.connecting is task:
            peer.connecting = None
            answered, peer.answered = peer.answered, None
            if answered is not None:
                _resolve(answered)
        self._tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved here; the waiting sends raise their own copies

    async def _open_stream(self, peer: Peer, answered: asyncio.Future[None] | None = None) -> bool:
        """Dial and offer a stream: True when confirmed (attached), False for seed-only.

        ``answered`` (first sends wait on it) is resolved ``handshake_timeout`` after the dial
        even if the confirmation has not come yet; this keeps waiting for it up to
        ``read_timeout`` (the listener's own bound for a hello) before giving up.
        """
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - asyncio always runs coroutines in tasks
            raise RuntimeError("no current task")
        address = peer.address
        stream = await self._dialer.dial(task, address)
        protocol = OutboundStream(self, peer, loop)
        try:
            with os_errors(f"dial to {address}"):
                await self._backend.start_client(loop, stream, lambda: protocol)
        except BaseException:
            # Interrupted after connection_made (cancelled by close()), uvloop closes the
            # transport without ever calling connection_lost: forget the protocol here.
            self._streams.discard(protocol)
            if protocol.transport is not None:
                protocol.transport.abort()
            stream.close()
            raise
        transport = protocol.transport
        if transport is None:  # pragma: no cover - set by connection_made
            raise ConnectError(f"dial to {address} failed: no transport")
        caps = self._options.capabilities
        if caps is not None and peer.v1_until <= loop.time():
            protocol.version = STREAM_VERSION_CAPS
        reason = await self._handshake(loop, protocol, transport, answered)
        if reason is not None:
            transport.abort()
            if protocol.version == STREAM_VERSION_CAPS and protocol.refused and not self.closed:
                # A listener that only knows version 1 closes on a version 2 hello: offer
                # version 1 at once (then, if refused again, the seed framing).
                peer.v1_until = loop.time() + self._options.reprobe_interval
                return await self._open_stream(peer, answered)
            retry = peer.policy.not_confirmed(loop.time(), refused=protocol.refused)
            self._counters.seed_fallbacks += 1
            log.info(
                "%s did not confirm a stream (%s): using the seed framing, re-probing in %gs",
                address,
                reason,
                retry,
            )
            return False
        if self.closed:
            transport.abort()
            raise TransportClosedError(f"transport {self.sender} is closed")
        self._attach(peer, protocol)
        return True

    async def _handshake(
        self,
        loop: asyncio.AbstractEventLoop,
        protocol: OutboundStream,
        transport: asyncio.Transport,
        answered: asyncio.Future[None] | None,
    ) -> str | None:
        """Send the hello; None once confirmed, else why the peer did not confirm."""
        options = self._options
        answer_timer = None
        if answered is not None:
            answer_timer = loop.call_later(options.handshake_timeout, _resolve, answered)
        limit = max(options.handshake_timeout, options.read_timeout)
        try:
            caps = self._options.capabilities if protocol.version == STREAM_VERSION_CAPS else None
            transport.write(encode_hello(self.sender, capabilities=caps))
            async with asyncio.timeout(limit):
                return await protocol.handshake
        except TimeoutError:
            return f"no confirmation within {limit:g}s"
        except BaseException:
            transport.abort()
            raise
        finally:
            if answer_timer is not None:
                answer_timer.cancel()

    # -- streams: queueing and writing ---------------------------------------------------

    def _attach(self, peer: Peer, protocol: OutboundStream) -> None:
        loop = asyncio.get_running_loop()
        peer.stream = protocol
        peer.capabilities = protocol.capabilities
        peer.policy.confirmed()
        self._counters.open_out += 1
        self._counters.streams_opened += 1
        peer.last_write = loop.time()
        peer.timer = loop.call_at(
            peer.last_write + self._options.stream_idle_timeout, self._check_peer, peer
        )
        log.debug("stream to %s open", peer.address)
        if peer.queue:
            self.schedule_flush(peer)

    def cork(self) -> None:
        """Hold stream writes until the matching :meth:`uncork` (corks nest)."""
        self._corks += 1
        if self._held is None:
            self._held = {}

    def uncork(self) -> None:
        """End one :meth:`cork`; after the last, write what each held peer got, one write
        per peer, at once (no pass of the loop)."""
        self._corks -= 1
        held = self._held
        if self._corks or held is None:
            return
        self._held = None
        for peer in held.values():
            stream = peer.stream
            if peer.flush_handle is None and stream is not None and not stream.paused:
                self._flush(peer)

    def _enqueue(self, peer: Peer, data: bytes) -> None:
        queue = peer.queue
        if len(queue) == queue.maxlen:
            self._counters.queue_drops += 1  # append() below pushes the oldest out
        queue.append(data)
        if peer.flush_handle is None:
            stream = peer.stream
            if stream is not None and not stream.paused:
                if self._held is not None:
                    self._held[peer.address] = peer
                elif len(queue) == 1 and stream.loop.time() - peer.last_write >= WRITE_NOW_AFTER:
                    # A lone message after a quiet spell (what an idle node sends) is written
                    # at once: a scheduled flush would cost a pass of the loop. What follows
                    # it closely is batched by a flush, as before.
                    self._flush(peer)
                else:
                    peer.flush_handle = stream.loop.call_soon(self._flush, peer)

    def schedule_flush(self, peer: Peer) -> None:
        if peer.flush_handle is None and peer.queue and peer.stream is not None:
            peer.flush_handle = asyncio.get_running_loop().call_soon(self._flush, peer)

    def _flush(self, peer: Peer) -> None:
        """Write what is queued for ``peer``: one write per batch, batches until paused."""
        peer.flush_handle = None
        stream = peer.stream
        if stream is None or stream.transport is None or stream.transport.is_closing():
            return
        transport = stream.transport
        queue = peer.queue
        written = 0
        while queue and not stream.paused:
            batch: list[bytes] = []
            size = 0
            while queue and size < BATCH_BYTES:
                payload = queue.popleft()
                batch.append(payload)
                size += len(payload)
            transport.write(encode_stream_frames(batch))
            written += len(batch)
        if written:
            self._counters.stream_sent += written
            peer.last_write = stream.loop.time()

    def _check_peer(self, peer: Peer) -> None:
        """Timer: abort a stream that stopped making progress, close an idle one, re-arm."""
        peer.timer = None
        stream = peer.stream
        if stream is None or stream.transport is None:
            return
        transport = stream.transport
        now = stream.loop.time()
        if stream.paused:
            deadline = stream.paused_since + self._options.write_timeout
            if now >= deadline:
                log.warning(
                    "stream to %s made no progress for %gs: aborting it (%d message(s) queued)",
                    peer.address,
                    self._options.write_timeout,
                    len(peer.queue),
                )
                self._detach(peer, stream)
                transport.abort()
                return
        else:
            deadline = peer.last_write + self._options.stream_idle_timeout
            if now >= deadline:
                if not peer.queue and transport.get_write_buffer_size() == 0:
                    log.debug("closing the idle stream to %s", peer.address)
                    self._detach(peer, stream)
                    transport.close()
                    return
                deadline = now + self._options.stream_idle_timeout
        peer.timer = stream.loop.call_at(deadline, self._check_peer, peer)

    # -- streams: reports from the protocol, and re-opening ---------------------------------

    def stream_paused(self, peer: Peer, stream: OutboundStream) -> None:
        if peer.stream is not stream:
            return
        # The stall check must come at paused_since + write_timeout, maybe before the idle one.
        if peer.timer is not None:
            peer.timer.cancel()
        peer.timer = stream.loop.call_at(
            stream.paused_since + self._options.write_timeout, self._check_peer, peer
        )

    def stream_misbehaved(self, peer: Peer, stream: OutboundStream, what: str) -> None:
        log.warning("stream to %s: the listener sent %s; aborting it", peer.address, what)
        self._detach(peer, stream)
        if stream.transport is not None:
            stream.transport.abort()

    def stream_lost(self, peer: Peer, stream: OutboundStream, exc: Exception | None) -> None:
        if peer.stream is stream:
            log.debug(
                "stream to %s lost: %s (%d message(s) queued)",
                peer.address,
                "closed by the peer" if exc is None else error_text(exc),
                len(peer.queue),
            )
        self._detach(peer, stream)

    def _detach(self, peer: Peer, stream: OutboundStream) -> None:
        """Stop using ``stream`` for ``peer``; re-open in the background if messages wait."""
        if peer.stream is not stream:
            return
        peer.stream = None
        self._counters.open_out -= 1
        peer.stop_timers()
        self._start_reconnect(peer)

    def _start_reconnect(self, peer: Peer) -> None:
        if self.closed or not peer.queue or peer.reconnecting is not None:
            return
        task = asyncio.get_running_loop().create_task(self._reconnect(peer))
        peer.reconnecting = task
        self._tasks.add(task)
        task.add_done_callback(functools.partial(self._reconnect_done, peer))

    def _reconnect_done(self, peer: Peer, task: asyncio.Task[None]) -> None:
        if peer.reconnecting is task:
            peer.reconnecting = None
        self._tasks.discard(task)
        if task.cancelled():
            return
        if task.exception() is None and peer.stream is None:
            # Messages queued after the last attempt (or a stream that broke at once).
            self._start_reconnect(peer)

    async def _reconnect(self, peer: Peer) -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - asyncio always runs coroutines in tasks
            return
        backoff = Backoff(self._options.reconnect_delay, self._options.reconnect_max_delay)
        while not self.closed and peer.queue:
            if peer.policy.probe_due(loop.time()):
                await asyncio.sleep(backoff.delay)
                self._counters.reconnects += 1
                try:
                    if await self._open_stream(peer):
                        return
                except TransportError as exc:
                    if backoff.failed():
                        self._give_up(peer, "cannot reconnect to", exc)
                        return
                    continue
            # The peer no longer confirms streams: its queue goes out with the seed framing.
            payload = peer.queue.popleft()
            try:
                await self.send_seed(task, peer.address, payload)
            except TransportError as exc:
                self._give_up(peer, "cannot reach", exc, lost=1)
                return

    def _give_up(self, peer: Peer, what: str, exc: Exception, *, lost: int = 0) -> None:
        lost += len(peer.queue)
        peer.queue.clear()
        self._counters.undelivered += lost
        log.warning("%s %s (%s): %d queued message(s) dropped", what, peer.address, exc, lost)

    # -- close ------------------------------------------------------------------------------

    async def close(self) -> None:
        """Cancel peer tasks, write what is queued, close the streams, abort the laggards."""
        self.closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for peer in self._peers.values():
            if peer.timer is not None:
                peer.timer.cancel()
                peer.timer = None
            if peer.stream is not None:
                self._flush(peer)
                peer.stream = None
                self._counters.open_out -= 1
            peer.stop_timers()
            self._counters.undelivered += len(peer.queue)
            peer.queue.clear()
        await self._close_streams()
        self._peers.clear()

    async def _close_streams(self) -> None:
        streams = list(self._streams)
        for stream in streams:
            if stream.transport is not None:
                stream.transport.close()
        pending = [stream.closed for stream in streams if not stream.closed.done()]
        if pending:
            await asyncio.wait(pending, timeout=min(self._options.write_timeout, CLOSE_GRACE))
            for stream in streams:
                if not stream.closed.done() and stream.transport is not None:
                    stream.transport.abort()
            # Bounded: an abort is reported at the next loop pass, but never hang close().
            await asyncio.wait(pending, timeout=CLOSE_GRACE)

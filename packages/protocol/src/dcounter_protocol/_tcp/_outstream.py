"""The dialer's side of one peer: its queue, its policy, and the stream protocol."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Protocol, cast

from dcounter_protocol._errors import HandshakeError
from dcounter_protocol._stream import STREAM_VERSION, STREAM_VERSION_CAPS, parse_ack
from dcounter_protocol._tcp._boundary import error_text
from dcounter_protocol._tcp._policy import PeerPolicy

if TYPE_CHECKING:
    from dcounter_protocol._tcp._options import TCPOptions

__all__ = ["OutboundStream", "Peer", "StreamOwner"]


class StreamOwner(Protocol):
    """What an :class:`OutboundStream` reports to (the outbound side)."""

    @property
    def streams(self) -> set[OutboundStream]: ...

    def stream_misbehaved(self, peer: Peer, stream: OutboundStream, what: str) -> None: ...

    def stream_lost(self, peer: Peer, stream: OutboundStream, exc: Exception | None) -> None: ...

    def stream_paused(self, peer: Peer, stream: OutboundStream) -> None: ...

    def schedule_flush(self, peer: Peer) -> None: ...


class OutboundStream(asyncio.Protocol):
    """The dialer's end of a stream: waits for the confirmation, then only writes."""

    def __init__(self, owner: StreamOwner, peer: Peer, loop: asyncio.AbstractEventLoop):
        self._owner = owner
        self._peer = peer
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        #: None once confirmed, else why the peer is taken for seed-only.
        self.handshake: asyncio.Future[str | None] = loop.create_future()
        #: The peer answered the hello with a close or other bytes: it does not speak streams
        #: (a reset or a timeout may only mean a loaded peer).
        self.refused = False
        self.closed: asyncio.Future[None] = loop.create_future()
        self.paused = False
        self.paused_since = 0.0
        #: The hello's version (set before it is written) and, once confirmed, the
        #: listener's capability bits (0 for a version 1 confirmation).
        self.version = STREAM_VERSION
        self.capabilities = 0
        self._ack = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)
        self._owner.streams.add(self)

    def data_received(self, data: bytes) -> None:
        if self.handshake.done():
            if self.handshake.result() is None:
                # A listener writes nothing after its confirmation.
                self._owner.stream_misbehaved(self._peer, self, f"{len(data)} unexpected bytes")
            return
        self._ack += data
        try:
            if parse_ack(self._ack, version=self.version):
                if self.version == STREAM_VERSION_CAPS:
                    self.capabilities = self._ack[-1]
                self.handshake.set_result(None)
        except HandshakeError as exc:
            self.refused = True
            self.handshake.set_result(f"{error_text(exc)} in its reply")

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner.streams.discard(self)
        if not self.closed.done():
            self.closed.set_result(None)
        if not self.handshake.done():
            self.refused = exc is None
            reason = "closed without confirming" if exc is None else error_text(exc)
            self.handshake.set_result(reason)
        else:
            self._owner.stream_lost(self._peer, self, exc)

    def pause_writing(self) -> None:
        self.paused = True
        self.paused_since = self.loop.time()
        self._owner.stream_paused(self._peer, self)

    def resume_writing(self) -> None:
        self.paused = False
        self._owner.schedule_flush(self._peer)


class Peer:
    """Outbound state for one target address."""

    __slots__ = (
        "address",
        "answered",
        "capabilities",
        "connecting",
        "flush_handle",
        "last_write",
        "policy",
        "queue",
        "reconnecting",
        "stream",
        "timer",
        "v1_until",
    )

    def __init__(self, address: str, options: TCPOptions) -> None:
        self.address = address
        self.queue: deque[bytes] = deque(maxlen=options.stream_queue_size)
        self.policy = PeerPolicy(
            reprobe_interval=options.reprobe_interval,
            unanswered_retry=options.reconnect_max_delay,
        )
        #: The confirmed stream in use, if any.
        self.stream: OutboundStream | None = None
        #: A first connection being opened, that sends wait for.
        self.connecting: asyncio.Task[bool] | None = None
        #: Resolved when sends waiting for ``connecting`` should act (confirmed, refused,
        #: failed, or ``handshake_timeout`` after the dial).
        self.answered: asyncio.Future[None] | None = None
        #: A broken stream being re-opened in the background (sends only queue meanwhile).
        self.reconnecting: asyncio.Task[None] | None = None
        self.flush_handle: asyncio.Handle | None = None
        #: Idle or stall check of the stream.
        self.timer: asyncio.TimerHandle | None = None
        self.last_write = 0.0
        #: The listener's capability bits, as its last confirmation said.
        self.capabilities = 0
        #: Until then, hellos to this peer are version 1 (it refused a version 2 one).
        self.v1_until = 0.0

    @property
    def has_stream(self) -> bool:
        """A stream is open or being re-opened: messages only queue."""
        return self.stream is not None or self.reconnecting is not None

    def forgettable(self, now: float) -> bool:
        return (
            self.stream is None
            and self.connecting is None
            and self.reconnecting is None
            and not self.queue
            and self.policy.probe_due(now)
        )

    def stop_timers(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.flush_handle is not None:
            self.flush_handle.cancel()
            self.flush_handle = None

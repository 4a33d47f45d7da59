"""TCP transport: the seed's framing for everyone, a negotiated persistent stream between us.

Two wires, chosen per peer (:mod:`dcounter_protocol._framing`, :mod:`dcounter_protocol._stream`):

* **seed framing**, the reference's wire: one connection per message, carrying
  ``[len(addr)][addr][payload]``; the sender closes after writing and the receiver reads until
  EOF (not one 16 KiB read like the reference, so frames up to the maximum size arrive whole).
* **stream mode**: one persistent connection per peer, opened with a hello (``00 "DCS"``,
  version, the sender's address once) that the listener confirms, then length-prefixed frames
  from the dialer to the listener.

Sending, ``TCPOptions.wire``:

* ``"seed"``: every message with the seed framing (dial, write, close).
* ``"auto"`` (default): the first send to a peer dials it and offers a stream. If the peer
  confirms within ``handshake_timeout``, that send and every later one are queued on the
  stream and return at once: frames queued during one event-loop pass go out in one write.
  If it has not confirmed by then, that message goes out with the seed framing (and so do
  others meanwhile) while the confirmation is still awaited up to ``read_timeout``; a late
  one still opens the stream. A peer that closes or answers anything else (the Go reference
  reads one frame and closes; a seed-only listener rejects the 00 byte) is remembered as
  seed-only and gets the seed framing until ``reprobe_interval`` has passed; the next send
  then offers a stream again. A reset or no confirmation at all may only mean a loaded peer,
  so that peer is probed again after ``reconnect_max_delay``.

  Errors: a send that has to open a connection waits for it (dial, then up to
  ``handshake_timeout``) and raises ConnectError or TransportTimeoutError when the peer cannot
  be reached, exactly like the seed framing; sends to a peer with an open stream, or one
  being re-opened, only queue: they never block and never raise (except after close()).
  :meth:`TCPTransport.send_nowait` does the same without a coroutine, and says when a real
  send is needed. A peer's queue holds at most ``stream_queue_size`` messages: when full the
  oldest is dropped and counted (:meth:`TCPTransport.stats`). A payload above
  ``max_message_size`` takes the seed path, so a receiver with the same limit rejects that
  one message and not a whole stream; an empty one raises TruncatedFrameError in both modes.

  Streams: a stream that breaks while messages are still queued is re-opened with backoff
  (``reconnect_delay`` doubling up to ``reconnect_max_delay``; after a failed attempt at the
  maximum delay the queued messages are dropped and counted, and the next send dials afresh).
  One that breaks with nothing queued is forgotten, and the next send dials again, so a peer
  that restarted is reached at once. A stream whose writes make no progress for
  ``write_timeout`` (the peer stopped reading) is aborted and re-opened; one idle for
  ``stream_idle_timeout`` is closed. As with any TCP stream, messages written just before a
  peer dies can be lost without an error; gossip repairs that.

Receiving (either setting; ``"seed"`` only changes how we send, so mixed clusters work): the
first byte of a connection decides. ``00`` starts a stream: the hello is checked (magic,
version, address), confirmed, and each frame is passed to the handler in order; anything
else is a seed frame, read to EOF as the reference's senders expect. Limits apply to both:

* **Connection cap** (``max_connections``): a slot is held from accept until the connection
  is done: for a seed frame until its handler returned, for a stream until it closes. When
  all slots are taken the transport stops accepting; further connections wait in the
  kernel's listen queue (``backlog``), and once that is full the kernel ignores new attempts,
  so senders hit their dial timeout. Nothing grows without bound. So that persistent streams
  cannot starve newcomers (more peers streaming to a node than it has slots), while a
  connection waits and every slot is taken, the least recently active idle stream is closed
  to make room (its dialer re-dials on its next send; counted as ``streams_evicted``).
* **Read timeout** (``read_timeout``): a seed frame must be complete (EOF) within it from
  accept; a stream's hello likewise, and each stream frame within it from its first byte. A
  stream with no frame in progress may stay idle for ``stream_idle_timeout + read_timeout``
  (longer than the dialer's own idle close, so normally the dialer closes first).
* **Size**: each frame is rejected as soon as its header shows it exceeds
  ``max_message_size`` (plus the address for a seed frame), without buffering more.

A peer that stalls, sends garbage, a bad hello, a huge or zero length or half a frame is
dropped with one warning log line; it only ever holds its own slot. A connection closed
without any data (a port probe) is logged at debug level. Handler exceptions are logged and
never reach the sender. A stream's handler calls run one at a time in its connection's task;
while they lag the transport stops reading that stream (TCP backpressure), so a slow handler
makes the dialer's queue drop its oldest messages instead of growing memory.

I/O: seed connections use the loop's non-blocking socket calls (``sock_connect``,
``sock_sendall``, ``sock_accept``, ``sock_recv``), cheaper than stream objects for one
short-lived connection on the default loop; streams use asyncio protocols
(``create_connection`` / ``connect_accepted_socket``), fast on both asyncio and uvloop
(``benchmarks/bench_transport.py``). Timeouts of short operations use one small reaper per
kind (dial, write, read) instead of an ``asyncio.timeout()`` per operation, for the same reason.

:meth:`TCPTransport.close` stops accepting, cancels connections being read or handled, makes
sends in progress fail with :class:`~dcounter_protocol._errors.TransportClosedError`, writes
what is queued and gives outbound streams up to one second to hand it to the kernel, then
leaves no task or socket behind.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import select
import socket
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, cast

from dcounter_protocol._errors import (
    ConnectError,
    FrameError,
    HandshakeError,
    InvalidOptionError,
    TransportClosedError,
    TransportError,
    TransportTimeoutError,
)
from dcounter_protocol._framing import MAX_ADDRESS_LENGTH, FrameDecoder, encode_frame
from dcounter_protocol._message import DEFAULT_MAX_MESSAGE_SIZE
from dcounter_protocol._stream import (
    STREAM_ACK,
    STREAM_MARKER,
    StreamDecoder,
    encode_hello,
    encode_stream_frames,
    parse_ack,
)

if TYPE_CHECKING:
    from dcounter_protocol._transport import Handler

__all__ = ["TCPOptions", "TCPTransport", "TransportStats", "WireMode"]

_log = logging.getLogger(__name__)

#: How a :class:`TCPTransport` sends: ``"auto"`` (streams where the peer confirms one, the
#: seed's framing elsewhere) or ``"seed"`` (the seed's framing only).
WireMode: TypeAlias = Literal["auto", "seed"]
_WIRE_MODES: tuple[WireMode, ...] = ("auto", "seed")

#: Bytes asked of the kernel per read; seed frames are usually far smaller.
_RECV_SIZE = 64 * 1024
#: Pause after an accept() failure such as EMFILE, so the loop does not spin on it.
_ACCEPT_RETRY_DELAY = 0.1
#: Bound on cached parsed target addresses (peer addresses come from the network).
_TARGET_CACHE_SIZE = 1024
#: Outbound peer entries past which idle ones (no stream, nothing queued) are forgotten.
_MAX_PEERS = 4096
#: Bytes put in one write() when a backlog is flushed, so one batch never copies a whole queue.
_BATCH_BYTES = 256 * 1024
#: Inbound stream frames decoded but not yet handled at which reading pauses, and resumes.
_PAUSE_FRAMES = 1024
_RESUME_FRAMES = 256
#: Longest close() waits for outbound streams to hand their buffered bytes to the kernel.
_CLOSE_GRACE = 1.0
#: With every connection slot taken, how often to look for a connection kept waiting.
_SLOT_CHECK_INTERVAL = 0.1
#: Times a send re-checks a peer whose freshly opened stream broke at once, before it falls
#: back to the seed framing for that message.
_OPEN_ATTEMPTS = 3

_SockAddr = tuple[Any, ...]
#: (address family, socket address) of one way to reach a target.
_Target = tuple[int, _SockAddr]


def _check_seconds(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidOptionError(f"{name} must be a number, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise InvalidOptionError(f"{name} must be finite and > 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class TCPOptions:
    """Timeouts (seconds), limits and wire choice of a :class:`TCPTransport`."""

    dial_timeout: float = 5.0
    read_timeout: float = 5.0
    write_timeout: float = 5.0
    #: Inbound connections read or handled at once (streams count while open).
    max_connections: int = 256
    #: Largest payload accepted from a peer (a seed frame may add up to 256 header bytes).
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    #: Length of the kernel's queue of connections not yet accepted.
    backlog: int = 128
    #: How to send: "auto" (stream mode with fallback) or "seed" (seed framing only).
    #: Receiving always accepts both.
    wire: WireMode = "auto"
    #: How long a dialer waits for the listener to confirm a stream.
    handshake_timeout: float = 1.0
    #: Outbound streams without a write for this long are closed.
    stream_idle_timeout: float = 30.0
    #: Messages queued per peer at most; when full, the oldest is dropped.
    stream_queue_size: int = 1024
    #: How long a peer that did not confirm a stream gets the seed framing before a re-probe.
    reprobe_interval: float = 60.0
    #: First delay before re-opening a broken stream with messages queued; doubles per try.
    reconnect_delay: float = 0.05
    #: Largest such delay; a failed attempt after it gives the queued messages up.
    reconnect_max_delay: float = 2.0

    def __post_init__(self) -> None:
        for name in (
            "dial_timeout",
            "read_timeout",
            "write_timeout",
            "handshake_timeout",
            "stream_idle_timeout",
            "reprobe_interval",
            "reconnect_delay",
            "reconnect_max_delay",
        ):
            _check_seconds(name, getattr(self, name))
        for name in ("max_connections", "max_message_size", "backlog", "stream_queue_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidOptionError(f"{name} must be an int >= 1, got {value!r}")
        if self.wire not in _WIRE_MODES:
            raise InvalidOptionError(f"wire must be 'auto' or 'seed', got {self.wire!r}")
        if self.reconnect_max_delay < self.reconnect_delay:
            raise InvalidOptionError(
                f"reconnect_max_delay ({self.reconnect_max_delay!r}) must be >= "
                f"reconnect_delay ({self.reconnect_delay!r})"
            )


@dataclass(frozen=True, slots=True)
class TransportStats:
    """A snapshot of a :class:`TCPTransport`'s counters (since creation) and gauges (now)."""

    #: Messages written to outbound streams.
    stream_sent: int = 0
    #: Messages sent with the seed framing, one connection each.
    seed_sent: int = 0
    #: Messages received on inbound streams, and as seed frames.
    stream_received: int = 0
    seed_received: int = 0
    #: Oldest queued messages dropped because a peer's queue was full.
    queue_drops: int = 0
    #: Queued messages given up: the peer stayed unreachable while re-opening, or close().
    undelivered: int = 0
    #: Outbound stream handshakes confirmed.
    streams_opened: int = 0
    #: Attempts to re-open a broken stream that still had messages queued.
    reconnects: int = 0
    #: Handshakes a peer did not confirm (it then gets the seed framing for a while).
    seed_fallbacks: int = 0
    #: Inbound connections dropped for a bad frame or handshake, or a timeout.
    inbound_dropped: int = 0
    #: Idle inbound streams closed to make room when all connection slots were taken.
    streams_evicted: int = 0
    #: Streams open now, outbound and inbound.
    open_streams_out: int = 0
    open_streams_in: int = 0
    #: Messages waiting in outbound queues now.
    queued: int = 0


def _split_address(address: str) -> tuple[str, int]:
    """``"host:port"`` or ``"[v6]:port"`` -> (host, port); ValueError when malformed."""
    if address.startswith("["):
        host, sep, port_text = address[1:].partition("]:")
        if not sep:
            raise ValueError(f"malformed address {address!r}: expected [host]:port")
    else:
        host, sep, port_text = address.rpartition(":")
        if not sep or ":" in host:
            raise ValueError(f"malformed address {address!r}: expected host:port or [v6]:port")
    if not (port_text.isascii() and port_text.isdigit()) or int(port_text) > 65535:
        raise ValueError(f"malformed address {address!r}: bad port {port_text!r}")
    return host, int(port_text)


def _join_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _numeric_family(host: str) -> int | None:
    """The address family of a numeric IP literal, None for names."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        return family
    return None


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _connection_waiting(listener: socket.socket) -> bool:
    """Whether a connection waits in ``listener``'s accept queue (never blocks)."""
    try:
        readable, _, _ = select.select([listener], [], [], 0)
    except (OSError, ValueError):  # closed meanwhile
        return False
    return bool(readable)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _Deadline:
    """One task's deadline; :meth:`clear` it when the guarded section is over."""

    __slots__ = ("expired", "task", "when")

    def __init__(self, task: asyncio.Task[Any], when: float) -> None:
        self.task: asyncio.Task[Any] | None = task
        self.when = when
        #: Set when the reaper cancelled the task for this deadline.
        self.expired = False

    def clear(self) -> None:
        self.task = None


class _Reaper:
    """Cancels tasks that overrun one fixed timeout.

    Does the job of ``asyncio.timeout()`` for many short operations at a fraction of its cost:
    all deadlines of a reaper are "start + the same timeout", so they come in nondecreasing
    order and one FIFO plus a single timer replace a timer per operation. A task cancelled by
    the reaper sees CancelledError at its current await, with ``deadline.expired`` set; the
    caller uncancels it and raises its own error, exactly as ``asyncio.timeout()`` does.
    """

    __slots__ = ("_queue", "_timeout", "_timer")

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._queue: deque[_Deadline] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def start(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> _Deadline:
        queue = self._queue
        while queue and queue[0].task is None:  # finished ones, usually in order
            queue.popleft()
        deadline = _Deadline(task, loop.time() + self._timeout)
        queue.append(deadline)
        if self._timer is None:
            self._timer = loop.call_at(deadline.when, self._expire, loop)
        return deadline

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        now = loop.time()
        queue = self._queue
        while queue:
            head = queue[0]
            task = head.task
            if task is not None:
                if head.when > now:
                    self._timer = loop.call_at(head.when, self._expire, loop)
                    return
                head.expired = True
                head.task = None
                task.cancel()
            queue.popleft()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._queue.clear()


# -- stream connections ---------------------------------------------------------------------


class _OutboundStream(asyncio.Protocol):
    """The dialer's end of a stream: waits for the confirmation, then only writes."""

    def __init__(self, owner: TCPTransport, peer: _Peer, loop: asyncio.AbstractEventLoop):
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
        self._ack = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)
        self._owner._outbound.add(self)

    def data_received(self, data: bytes) -> None:
        if self.handshake.done():
            if self.handshake.result() is None:
                # A listener writes nothing after its confirmation.
                self._owner._stream_misbehaved(self._peer, self, f"{len(data)} unexpected bytes")
            return
        self._ack += data
        try:
            if parse_ack(self._ack):
                self.handshake.set_result(None)
        except HandshakeError as exc:
            self.refused = True
            self.handshake.set_result(f"{_error_text(exc)} in its reply")

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner._outbound.discard(self)
        if not self.closed.done():
            self.closed.set_result(None)
        if not self.handshake.done():
            self.refused = exc is None
            reason = "closed without confirming" if exc is None else _error_text(exc)
            self.handshake.set_result(reason)
        else:
            self._owner._stream_lost(self._peer, self, exc)

    def pause_writing(self) -> None:
        self.paused = True
        self.paused_since = self.loop.time()
        self._owner._stream_paused(self._peer, self)

    def resume_writing(self) -> None:
        self.paused = False
        self._owner._schedule_flush(self._peer)


class _Peer:
    """Outbound state for one target address."""

    __slots__ = (
        "address",
        "answered",
        "connecting",
        "flush_handle",
        "last_write",
        "queue",
        "reconnecting",
        "seed_until",
        "stream",
        "timer",
    )

    def __init__(self, address: str, queue_size: int) -> None:
        self.address = address
        self.queue: deque[bytes] = deque(maxlen=queue_size)
        #: The confirmed stream in use, if any.
        self.stream: _OutboundStream | None = None
        #: A first connection being opened, that sends wait for.
        self.connecting: asyncio.Task[bool] | None = None
        #: Resolved when sends waiting for ``connecting`` should act (confirmed, refused,
        #: failed, or ``handshake_timeout`` after the dial).
        self.answered: asyncio.Future[None] | None = None
        #: A broken stream being re-opened in the background (sends only queue meanwhile).
        self.reconnecting: asyncio.Task[None] | None = None
        #: Loop time until which the peer gets the seed framing without a probe.
        self.seed_until = 0.0
        self.flush_handle: asyncio.Handle | None = None
        #: Idle or stall check of the stream.
        self.timer: asyncio.TimerHandle | None = None
        self.last_write = 0.0

    def forgettable(self, now: float) -> bool:
        return (
            self.stream is None
            and self.connecting is None
            and self.reconnecting is None
            and not self.queue
            and self.seed_until <= now
        )


class _InboundStream(asyncio.Protocol):
    """The listener's end of a stream: decodes frames for the connection's task to handle."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, options: TCPOptions, first: bytes, started: float
    ) -> None:
        self._loop = loop
        self._decoder = StreamDecoder(max_size=options.max_message_size)
        self._read_timeout = options.read_timeout
        self._idle_limit = options.stream_idle_timeout + options.read_timeout
        self._first = first
        self._started = started
        self.transport: asyncio.Transport | None = None
        self.frames: deque[bytes] = deque()
        #: Why the stream was dropped (a violation or timeout: logged as a warning).
        self.failure: str | None = None
        #: Why it ended otherwise (EOF, reset, idle), for a debug line.
        self.ending = "closed by the peer"
        #: No more frames will come.
        self.ended = False
        self.received = 0
        self.reading_paused = False
        self._acked = False
        #: Loop time the hello or the frame in progress began; None between frames.
        self._partial_since: float | None = started
        self._last_activity = started
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._closed: asyncio.Future[None] = loop.create_future()

    @property
    def sender(self) -> str:
        return self._decoder.sender or ""

    @property
    def idle(self) -> bool:
        """Open, past its hello, with no frame in progress."""
        return not self.ended and self._acked and self._partial_since is None

    @property
    def last_activity(self) -> float:
        return self._last_activity

    def close_idle(self, why: str) -> None:
        """End the stream gracefully (FIN): the dialer sees EOF and re-dials when it sends."""
        if self.ended:
            return
        self._end(why)
        if self.transport is not None:
            self.transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)
        self._timer = self._loop.call_at(self._started + self._read_timeout, self._check)
        first, self._first = self._first, b""
        self.data_received(first)

    def data_received(self, data: bytes) -> None:
        if self.ended:
            return
        self.received += len(data)
        decoder = self._decoder
        try:
            frames = decoder.feed(data)
        except FrameError as exc:
            self._fail(_error_text(exc))
            return
        now = self._loop.time()
        hello_done = not self._acked and decoder.sender is not None
        if hello_done:
            self._acked = True
            if self.transport is not None:
                self.transport.write(STREAM_ACK)
            self._last_activity = now
        if frames:
            self.frames.extend(frames)
            self._last_activity = now
            self._wake()
        if decoder.sender is not None:
            if not decoder.buffered:
                self._partial_since = None
            elif frames or hello_done or self._partial_since is None:
                self._partial_since = now
        if decoder.error is not None:
            self._fail(_error_text(decoder.error))
            return
        if len(self.frames) >= _PAUSE_FRAMES and not self.reading_paused:
            self.reading_paused = True
            if self.transport is not None:
                self.transport.pause_reading()

    def eof_received(self) -> bool | None:
        if not self.ended:
            try:
                self._decoder.end_of_stream()
            except FrameError as exc:
                self._fail(_error_text(exc))
                return None
            self._end("closed by the peer")
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.ended:
            self._end("closed by the peer" if exc is None else _error_text(exc))
        if not self._closed.done():
            self._closed.set_result(None)

    def resume_reading(self) -> None:
        if self.reading_paused:
            self.reading_paused = False
            if self.transport is not None and not self.transport.is_closing():
                self.transport.resume_reading()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    async def wait_frames(self) -> None:
        """Return once frames arrived or the stream ended."""
        waiter = self._loop.create_future()
        self._waiter = waiter
        try:
            await waiter
        finally:
            self._waiter = None

    async def wait_closed(self) -> None:
        """Wait (bounded) for connection_lost, i.e. for the transport to release the socket."""
        if self.transport is not None and not self._closed.done():
            await asyncio.wait({self._closed}, timeout=_CLOSE_GRACE)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _end(self, why: str) -> None:
        self.ended = True
        self.ending = why
        self._wake()

    def _fail(self, reason: str) -> None:
        if self.ended:
            return
        self.failure = reason
        self._end(reason)
        self.abort()

    def _check(self) -> None:
        """Timer: drop a stalled hello or frame, close an idle stream, else re-arm."""
        self._timer = None
        if self.ended:
            return
        now = self._loop.time()
        if self.reading_paused:
            # Our handler is behind, not the peer: not its timeout.
            deadline = now + self._read_timeout
        elif self._partial_since is not None:
            deadline = self._partial_since + self._read_timeout
            if now >= deadline:
                what = "frame" if self._decoder.sender is not None else "handshake"
                self._fail(f"no complete {what} within {self._read_timeout:g}s")
                return
        else:
            deadline = self._last_activity + self._idle_limit
            if now >= deadline:
                self.close_idle(f"idle for {self._idle_limit:g}s")
                return
        self._timer = self._loop.call_at(deadline, self._check)


class _Accepted:
    """An accepted socket, and the stream protocol that owns it once handed over."""

    __slots__ = ("sock", "stream")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.stream: _InboundStream | None = None


# -- the transport --------------------------------------------------------------------------


class TCPTransport:
    """TCP with the seed's framing and the negotiated stream mode; implements Transport."""

    def __init__(self, address: str = "127.0.0.1:0", *, options: TCPOptions | None = None):
        """Configure (nothing is bound until listen()); InvalidOptionError on a bad address."""
        if not isinstance(address, str):
            raise InvalidOptionError(f"address must be a str, got {address!r}")
        try:
            self._host, self._port = _split_address(address)
        except ValueError as exc:
            raise InvalidOptionError(str(exc)) from None
        if not 1 <= len(address.encode("utf-8")) <= MAX_ADDRESS_LENGTH:
            raise InvalidOptionError(f"address must be 1..{MAX_ADDRESS_LENGTH} bytes: {address!r}")
        self._address = address
        self._options = options if options is not None else TCPOptions()
        self._frame_limit = self._options.max_message_size + 1 + MAX_ADDRESS_LENGTH
        self._max_payload = self._options.max_message_size
        self._streams = self._options.wire == "auto"
        self._dial_deadlines = _Reaper(self._options.dial_timeout)
        self._write_deadlines = _Reaper(self._options.write_timeout)
        self._read_deadlines = _Reaper(self._options.read_timeout)
        self._handler: Handler | None = None
        self._listener: socket.socket | None = None
        self._accept_task: asyncio.Task[None] | None = None
        self._slots: asyncio.Semaphore | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._sends: set[asyncio.Task[object]] = set()
        self._cancelled_sends: set[asyncio.Task[object]] = set()
        self._sends_drained: asyncio.Future[None] | None = None
        self._targets: dict[str, _Target] = {}
        self._peers: dict[str, _Peer] = {}
        self._peer_tasks: set[asyncio.Task[Any]] = set()
        self._outbound: set[_OutboundStream] = set()
        self._closed = False
        self._close_done: asyncio.Event | None = None
        # Counters behind stats().
        self._stream_sent = 0
        self._seed_sent = 0
        self._stream_received = 0
        self._seed_received = 0
        self._queue_drops = 0
        self._undelivered = 0
        self._streams_opened = 0
        self._reconnects = 0
        self._seed_fallbacks = 0
        self._inbound_dropped = 0
        self._evicted = 0
        self._open_out = 0
        self._in_streams: set[_InboundStream] = set()

    # -- public API -----------------------------------------------------------------------

    @property
    def address(self) -> str:
        """The configured ``"host:port"``; once listening, with the real bound port."""
        return self._address

    @property
    def options(self) -> TCPOptions:
        """The timeouts, limits and wire choice in force."""
        return self._options

    @property
    def active_connections(self) -> int:
        """Inbound connections currently holding a slot (being read or handled)."""
        return len(self._connections)

    def streaming(self, address: str) -> bool:
        """True while a confirmed stream to ``address`` is open (it takes full-size frames)."""
        peer = self._peers.get(address)
        return peer is not None and peer.stream is not None

    def stats(self) -> TransportStats:
        """The counters since creation and the current gauges."""
        return TransportStats(
            stream_sent=self._stream_sent,
            seed_sent=self._seed_sent,
            stream_received=self._stream_received,
            seed_received=self._seed_received,
            queue_drops=self._queue_drops,
            undelivered=self._undelivered,
            streams_opened=self._streams_opened,
            reconnects=self._reconnects,
            seed_fallbacks=self._seed_fallbacks,
            inbound_dropped=self._inbound_dropped,
            open_streams_out=self._open_out,
            open_streams_in=len(self._in_streams),
            streams_evicted=self._evicted,
            queued=sum(len(peer.queue) for peer in self._peers.values()),
        )

    async def listen(self, handler: Handler) -> None:
        """Bind (port 0 picks a free port, reported by :attr:`address`) and start serving."""
        if self._closed:
            raise TransportClosedError(f"transport {self._address} is closed")
        if self._listener is not None:
            raise TransportError(f"transport {self._address} is already listening")
        loop = asyncio.get_running_loop()
        listener = await self._bind(loop)
        self._listener = listener
        self._handler = handler
        self._slots = asyncio.Semaphore(self._options.max_connections)
        self._address = _join_address(self._host, listener.getsockname()[1])
        self._accept_task = loop.create_task(self._accept_loop(listener))

    async def send(self, address: str, data: bytes) -> None:
        """Send one message to ``address`` with :attr:`address` as sender (see the module doc).

        Raises ConnectError (refused, unreachable, unresolvable, reset), TransportTimeoutError
        (dial or write took too long) or TransportClosedError (after or during close()) when
        this send has to open a connection; never once the peer has a stream.
        """
        if self.send_nowait(address, data):
            return
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - asyncio always runs coroutines in tasks
            raise RuntimeError("TCPTransport.send() must run in an asyncio task")
        self._sends.add(task)
        try:
            if self._streams and 0 < len(data) <= self._max_payload:
                await self._send_auto(task, address, data)
            else:
                await self._send_seed(task, address, data)
        except asyncio.CancelledError:
            if task in self._cancelled_sends and task.uncancel() == 0:
                raise TransportClosedError(
                    f"transport {self._address} closed during send"
                ) from None
            raise
        finally:
            self._sends.discard(task)
            drained = self._sends_drained
            if drained is not None and not self._sends and not drained.done():
                drained.set_result(None)

    def send_nowait(self, address: str, data: bytes) -> bool:
        """Queue ``data`` for ``address`` if that costs no waiting; False if it needs send().

        True when the peer has a stream open (or being re-opened) and the payload fits it: the
        message is queued exactly as :meth:`send` would queue it, without creating a task or
        awaiting anything. False otherwise (no stream yet, a seed-only peer, ``wire="seed"``,
        an empty or oversized payload): nothing was done and the caller should ``await
        send()``. Raises TransportClosedError after close(). Must run in the event loop.
        """
        if self._closed:
            raise TransportClosedError(f"transport {self._address} is closed")
        peer = self._peers.get(address)
        if (
            peer is not None
            and (peer.stream is not None or peer.reconnecting is not None)
            and 0 < len(data) <= self._max_payload
        ):
            self._enqueue(peer, data)
            return True
        return False

    async def close(self) -> None:
        """Stop accepting, cancel inbound work and sends in progress; idempotent."""
        if self._closed:
            if self._close_done is not None:
                await self._close_done.wait()
            return
        self._closed = True
        self._close_done = asyncio.Event()
        try:
            if self._accept_task is not None:
                self._accept_task.cancel()
                await asyncio.gather(self._accept_task, return_exceptions=True)
            if self._listener is not None:
                self._listener.close()
            connections = list(self._connections)
            for task in connections:
                task.cancel()
            if connections:
                await asyncio.gather(*connections, return_exceptions=True)
            if self._sends:
                self._sends_drained = asyncio.get_running_loop().create_future()
                self._cancelled_sends.update(self._sends)
                for send_task in self._sends:
                    send_task.cancel()
                await self._sends_drained
                self._cancelled_sends.clear()
            peer_tasks = list(self._peer_tasks)
            for peer_task in peer_tasks:
                peer_task.cancel()
            if peer_tasks:
                await asyncio.gather(*peer_tasks, return_exceptions=True)
            await self._close_streams()
        finally:
            for reaper in (self._dial_deadlines, self._write_deadlines, self._read_deadlines):
                reaper.close()
            self._close_done.set()

    async def __aenter__(self) -> TCPTransport:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "listening" if self._listener else "idle"
        return f"<TCPTransport {self._address} {state} wire={self._options.wire}>"

    # -- sending: seed framing ------------------------------------------------------------

    async def _resolve(self, loop: asyncio.AbstractEventLoop, address: str) -> list[_Target]:
        cached = self._targets.get(address)
        if cached is not None:
            return [cached]
        try:
            host, port = _split_address(address)
        except ValueError as exc:
            raise ConnectError(str(exc)) from None
        family = _numeric_family(host)
        if family is not None:
            target: _Target = (
                (family, (host, port)) if family == socket.AF_INET else (family, (host, port, 0, 0))
            )
            if len(self._targets) >= _TARGET_CACHE_SIZE:
                self._targets.clear()
            self._targets[address] = target
            return [target]
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise ConnectError(f"cannot resolve {address}: {exc}") from exc
        return [(info[0], info[4]) for info in infos]

    async def _send_seed(self, task: asyncio.Task[Any], address: str, data: bytes) -> None:
        await self._send_seed_frame(task, address, encode_frame(self._address, data))
        self._seed_sent += 1

    async def _send_seed_frame(self, task: asyncio.Task[Any], address: str, frame: bytes) -> None:
        loop = asyncio.get_running_loop()
        sock = await self._dial(task, address)
        deadline: _Deadline | None = None
        limit = self._options.write_timeout
        try:
            # Most frames fit the socket buffer: one send() and no deadline at all.
            try:
                sent = sock.send(frame)
            except (BlockingIOError, InterruptedError):
                sent = 0
            if sent < len(frame):
                deadline = self._write_deadlines.start(loop, task)
                await loop.sock_sendall(sock, memoryview(frame)[sent:])
        except asyncio.CancelledError:
            if deadline is not None and deadline.expired and task.uncancel() == 0:
                raise TransportTimeoutError(
                    f"write to {address} timed out after {limit:g}s"
                ) from None
            raise
        except TimeoutError as exc:  # the kernel's own (ETIMEDOUT)
            raise TransportTimeoutError(f"write to {address} timed out: {exc}") from exc
        except OSError as exc:
            raise ConnectError(f"write to {address} failed: {_error_text(exc)}") from exc
        finally:
            if deadline is not None:
                deadline.clear()
            # The kernel still delivers what is buffered, then sends FIN: the EOF that ends
            # the frame on the receiving side.
            sock.close()

    async def _dial(self, task: asyncio.Task[Any], address: str) -> socket.socket:
        """A connected non-blocking socket to ``address``, within the dial timeout."""
        loop = asyncio.get_running_loop()
        deadline = self._dial_deadlines.start(loop, task)
        try:
            return await self._connect(loop, address)
        except asyncio.CancelledError:
            if deadline.expired and task.uncancel() == 0:
                raise TransportTimeoutError(
                    f"dial to {address} timed out after {self._options.dial_timeout:g}s"
                ) from None
            raise
        except TimeoutError as exc:  # the kernel's own (ETIMEDOUT)
            raise TransportTimeoutError(f"dial to {address} timed out: {exc}") from exc
        except OSError as exc:
            raise ConnectError(f"dial to {address} failed: {_error_text(exc)}") from exc
        finally:
            deadline.clear()

    async def _connect(self, loop: asyncio.AbstractEventLoop, address: str) -> socket.socket:
        error: OSError | None = None
        for family, sockaddr in await self._resolve(loop, address):
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.setblocking(False)
                await loop.sock_connect(sock, sockaddr)
            except OSError as exc:
                sock.close()
                error = exc
                continue
            except BaseException:
                sock.close()
                raise
            return sock
        if error is None:
            raise ConnectError(f"{address} resolved to no address")
        raise error

    # -- sending: streams -----------------------------------------------------------------

    def _peer(self, address: str) -> _Peer:
        peer = self._peers.get(address)
        if peer is None:
            if len(self._peers) >= _MAX_PEERS:
                now = asyncio.get_running_loop().time()
                for stale in [a for a, p in self._peers.items() if p.forgettable(now)]:
                    del self._peers[stale]
            peer = self._peers[address] = _Peer(address, self._options.stream_queue_size)
        return peer

    async def _send_auto(self, task: asyncio.Task[Any], address: str, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(_OPEN_ATTEMPTS):
            peer = self._peer(address)
            if peer.stream is not None or peer.reconnecting is not None:
                self._enqueue(peer, data)
                return
            if peer.seed_until > loop.time():
                break
            connecting = peer.connecting
            if connecting is None:
                peer.answered = loop.create_future()
                connecting = loop.create_task(self._open_stream(peer, peer.answered))
                peer.connecting = connecting
                self._peer_tasks.add(connecting)
                connecting.add_done_callback(functools.partial(self._connecting_done, peer))
            answer = peer.answered
            if answer is not None and not answer.done():
                # Shielded: the answer serves every send waiting for it, not only this one.
                await asyncio.shield(answer)
            if not connecting.done():
                # Dialled, but the confirmation is late (a loaded peer or loop): this message
                # goes the seed way; the stream is still taken if the confirmation comes.
                break
            if connecting.cancelled():
                raise TransportClosedError(f"transport {self._address} closed during send")
            error = connecting.exception()
            if isinstance(error, TransportError):
                # Each waiting send raises its own error, not one shared object.
                raise type(error)(str(error)) from error
            if error is not None:
                raise error
        # Seed-only, confirming late, or the new stream broke at once every time: the framing
        # that always works.
        await self._send_seed(task, address, data)

    def _connecting_done(self, peer: _Peer, task: asyncio.Task[bool]) -> None:
        if peer.connecting is task:
            peer.connecting = None
            answered, peer.answered = peer.answered, None
            if answered is not None and not answered.done():
                answered.set_result(None)
        self._peer_tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved here; the waiting sends raise their own copies

    async def _open_stream(self, peer: _Peer, answered: asyncio.Future[None] | None = None) -> bool:
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
        sock = await self._dial(task, address)
        protocol = _OutboundStream(self, peer, loop)
        try:
            await loop.create_connection(lambda: protocol, sock=sock)
        except BaseException as exc:
            # Interrupted after connection_made (cancelled by close()), uvloop closes the
            # transport without ever calling connection_lost: forget the protocol here.
            self._outbound.discard(protocol)
            if protocol.transport is not None:
                protocol.transport.abort()
            sock.close()
            if isinstance(exc, OSError):
                raise ConnectError(f"dial to {address} failed: {_error_text(exc)}") from exc
            raise
        transport = protocol.transport
        if transport is None:  # pragma: no cover - set by connection_made
            raise ConnectError(f"dial to {address} failed: no transport")
        answer_timer = None
        if answered is not None:
            answer_timer = loop.call_later(self._options.handshake_timeout, _resolve, answered)
        limit = max(self._options.handshake_timeout, self._options.read_timeout)
        try:
            transport.write(encode_hello(self._address))
            async with asyncio.timeout(limit):
                reason = await protocol.handshake
        except TimeoutError:
            reason = f"no confirmation within {limit:g}s"
        except BaseException:
            transport.abort()
            raise
        finally:
            if answer_timer is not None:
                answer_timer.cancel()
        if reason is not None:
            transport.abort()
            # A refusal is how a seed-only peer answers: believe it for reprobe_interval. A
            # reset or silence can also be a peer (or loop) too busy to answer in time, so
            # the next probe comes sooner.
            if protocol.refused:
                retry = self._options.reprobe_interval
            else:
                retry = self._options.reconnect_max_delay
            peer.seed_until = loop.time() + retry
            self._seed_fallbacks += 1
            _log.info(
                "%s did not confirm a stream (%s): using the seed framing, re-probing in %gs",
                address,
                reason,
                retry,
            )
            return False
        if self._closed:
            transport.abort()
            raise TransportClosedError(f"transport {self._address} is closed")
        self._attach(peer, protocol)
        return True

    def _attach(self, peer: _Peer, protocol: _OutboundStream) -> None:
        loop = asyncio.get_running_loop()
        peer.stream = protocol
        peer.seed_until = 0.0
        self._open_out += 1
        self._streams_opened += 1
        peer.last_write = loop.time()
        peer.timer = loop.call_at(
            peer.last_write + self._options.stream_idle_timeout, self._check_peer, peer
        )
        _log.debug("stream to %s open", peer.address)
        if peer.queue:
            self._schedule_flush(peer)

    def _enqueue(self, peer: _Peer, data: bytes) -> None:
        queue = peer.queue
        if len(queue) == queue.maxlen:
            self._queue_drops += 1  # append() below pushes the oldest out
        queue.append(data)
        if peer.flush_handle is None:
            stream = peer.stream
            if stream is not None and not stream.paused:
                peer.flush_handle = asyncio.get_running_loop().call_soon(self._flush, peer)

    def _schedule_flush(self, peer: _Peer) -> None:
        if peer.flush_handle is None and peer.queue and peer.stream is not None:
            peer.flush_handle = asyncio.get_running_loop().call_soon(self._flush, peer)

    def _flush(self, peer: _Peer) -> None:
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
            while queue and size < _BATCH_BYTES:
                payload = queue.popleft()
                batch.append(payload)
                size += len(payload)
            transport.write(encode_stream_frames(batch))
            written += len(batch)
        if written:
            self._stream_sent += written
            peer.last_write = stream.loop.time()

    def _check_peer(self, peer: _Peer) -> None:
        """Timer: abort a stream that stopped making progress, close an idle one, re-arm."""
        peer.timer = None
        stream = peer.stream
        if stream is None or stream.transport is None:
            return
        now = stream.loop.time()
        if stream.paused:
            deadline = stream.paused_since + self._options.write_timeout
            if now >= deadline:
                _log.warning(
                    "stream to %s made no progress for %gs: aborting it (%d message(s) queued)",
                    peer.address,
                    self._options.write_timeout,
                    len(peer.queue),
                )
                transport = stream.transport
                self._detach(peer, stream)
                transport.abort()
                return
        else:
            deadline = peer.last_write + self._options.stream_idle_timeout
            if now >= deadline:
                if not peer.queue and stream.transport.get_write_buffer_size() == 0:
                    _log.debug("closing the idle stream to %s", peer.address)
                    transport = stream.transport
                    self._detach(peer, stream)
                    transport.close()
                    return
                deadline = now + self._options.stream_idle_timeout
        peer.timer = stream.loop.call_at(deadline, self._check_peer, peer)

    def _stream_paused(self, peer: _Peer, stream: _OutboundStream) -> None:
        if peer.stream is not stream:
            return
        # The stall check must come at paused_since + write_timeout, maybe before the idle one.
        if peer.timer is not None:
            peer.timer.cancel()
        peer.timer = stream.loop.call_at(
            stream.paused_since + self._options.write_timeout, self._check_peer, peer
        )

    def _stream_misbehaved(self, peer: _Peer, stream: _OutboundStream, what: str) -> None:
        _log.warning("stream to %s: the listener sent %s; aborting it", peer.address, what)
        self._detach(peer, stream)
        if stream.transport is not None:
            stream.transport.abort()

    def _stream_lost(self, peer: _Peer, stream: _OutboundStream, exc: Exception | None) -> None:
        if peer.stream is stream:
            _log.debug(
                "stream to %s lost: %s (%d message(s) queued)",
                peer.address,
                "closed by the peer" if exc is None else _error_text(exc),
                len(peer.queue),
            )
        self._detach(peer, stream)

    def _detach(self, peer: _Peer, stream: _OutboundStream) -> None:
        """Stop using ``stream`` for ``peer``; re-open in the background if messages wait."""
        if peer.stream is not stream:
            return
        peer.stream = None
        self._open_out -= 1
        if peer.timer is not None:
            peer.timer.cancel()
            peer.timer = None
        if peer.flush_handle is not None:
            peer.flush_handle.cancel()
            peer.flush_handle = None
        self._start_reconnect(peer)

    def _start_reconnect(self, peer: _Peer) -> None:
        if self._closed or not peer.queue or peer.reconnecting is not None:
            return
        task = asyncio.get_running_loop().create_task(self._reconnect(peer))
        peer.reconnecting = task
        self._peer_tasks.add(task)
        task.add_done_callback(functools.partial(self._reconnect_done, peer))

    def _reconnect_done(self, peer: _Peer, task: asyncio.Task[None]) -> None:
        if peer.reconnecting is task:
            peer.reconnecting = None
        self._peer_tasks.discard(task)
        if task.cancelled():
            return
        if task.exception() is None and peer.stream is None:
            # Messages queued after the last attempt (or a stream that broke at once).
            self._start_reconnect(peer)

    async def _reconnect(self, peer: _Peer) -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - asyncio always runs coroutines in tasks
            return
        delay = self._options.reconnect_delay
        while not self._closed and peer.queue:
            if peer.seed_until <= loop.time():
                await asyncio.sleep(delay)
                self._reconnects += 1
                try:
                    if await self._open_stream(peer):
                        return
                except TransportError as exc:
                    if delay >= self._options.reconnect_max_delay:
                        lost = len(peer.queue)
                        peer.queue.clear()
                        self._undelivered += lost
                        _log.warning(
                            "cannot reconnect to %s (%s): %d queued message(s) dropped",
                            peer.address,
                            exc,
                            lost,
                        )
                        return
                    delay = min(delay * 2, self._options.reconnect_max_delay)
                    continue
            # The peer no longer confirms streams: its queue goes out with the seed framing.
            payload = peer.queue.popleft()
            try:
                await self._send_seed(task, peer.address, payload)
            except TransportError as exc:
                lost = 1 + len(peer.queue)
                peer.queue.clear()
                self._undelivered += lost
                _log.warning(
                    "cannot reach %s (%s): %d queued message(s) dropped", peer.address, exc, lost
                )
                return

    async def _close_streams(self) -> None:
        """close(): write what is queued, close outbound streams, abort the laggards."""
        for peer in self._peers.values():
            if peer.timer is not None:
                peer.timer.cancel()
                peer.timer = None
            stream = peer.stream
            if stream is not None:
                self._flush(peer)
                peer.stream = None
                self._open_out -= 1
            if peer.flush_handle is not None:
                peer.flush_handle.cancel()
                peer.flush_handle = None
            self._undelivered += len(peer.queue)
            peer.queue.clear()
        streams = list(self._outbound)
        for stream in streams:
            if stream.transport is not None:
                stream.transport.close()
        pending = [stream.closed for stream in streams if not stream.closed.done()]
        if pending:
            await asyncio.wait(pending, timeout=min(self._options.write_timeout, _CLOSE_GRACE))
            for stream in streams:
                if not stream.closed.done() and stream.transport is not None:
                    stream.transport.abort()
            # Bounded: an abort is reported at the next loop pass, but never hang close().
            await asyncio.wait(pending, timeout=_CLOSE_GRACE)
        self._peers.clear()

    # -- receiving ------------------------------------------------------------------------

    async def _bind(self, loop: asyncio.AbstractEventLoop) -> socket.socket:
        host, port = self._host, self._port
        family = _numeric_family(host)
        sockaddr: _SockAddr
        if family is not None:
            sockaddr = (host, port) if family == socket.AF_INET else (host, port, 0, 0)
        else:
            try:
                infos = await loop.getaddrinfo(
                    host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
                )
            except OSError as exc:
                raise TransportError(
                    f"cannot resolve listen address {self._address}: {exc}"
                ) from exc
            if not infos:
                raise TransportError(f"listen address {self._address} resolved to nothing")
            family, sockaddr = infos[0][0], infos[0][4]
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(sockaddr)
            sock.listen(self._options.backlog)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise TransportError(f"cannot listen on {self._address}: {exc}") from exc
        return sock

    async def _accept_loop(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        slots = self._slots
        if slots is None:  # pragma: no cover - set by listen() before this task starts
            return
        while True:
            if slots.locked():
                await self._acquire_slot_under_pressure(listener, slots)
            else:
                await slots.acquire()
            try:
                conn, peer = await _accept(loop, listener)
            except OSError as exc:
                slots.release()
                _log.error("accept failed on %s: %s", self._address, exc)
                await asyncio.sleep(_ACCEPT_RETRY_DELAY)
                continue
            except BaseException:
                slots.release()
                raise
            conn.setblocking(False)
            accepted = _Accepted(conn)
            task = loop.create_task(self._serve(accepted, peer))
            self._connections.add(task)
            # A task cancelled before its first step never runs its body's finally blocks,
            # so the socket and slot are released here, whatever happened.
            task.add_done_callback(functools.partial(self._connection_done, accepted))

    async def _acquire_slot_under_pressure(
        self, listener: socket.socket, slots: asyncio.Semaphore
    ) -> None:
        """Take a slot when all are taken: wait, and while a connection is waiting in the
        listen queue, close the least recently active idle inbound stream to make room (its
        dialer reconnects on its next send), so persistent streams never starve newcomers."""
        while True:
            if _connection_waiting(listener):
                self._evict_idle_stream()
            try:
                async with asyncio.timeout(_SLOT_CHECK_INTERVAL):
                    await slots.acquire()
                return
            except TimeoutError:
                continue

    def _evict_idle_stream(self) -> None:
        idle = [stream for stream in self._in_streams if stream.idle]
        if not idle:
            return
        victim = min(idle, key=lambda stream: stream.last_activity)
        self._evicted += 1
        _log.info(
            "closing the idle stream from %s on %s to make room: all %d connection slots taken",
            victim.sender,
            self._address,
            self._options.max_connections,
        )
        victim.close_idle("evicted to make room for a waiting connection")

    def _connection_done(self, accepted: _Accepted, task: asyncio.Task[None]) -> None:
        if accepted.stream is None:
            accepted.sock.close()
        else:
            # The stream's transport owns the socket: closing it under the transport could
            # close a reused descriptor. The transport closes it (normally already has).
            accepted.stream.abort()
        self._connections.discard(task)
        if self._slots is not None:
            self._slots.release()

    async def _serve(self, accepted: _Accepted, peer: object) -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - asyncio always runs coroutines in tasks
            return
        conn = accepted.sock
        started = loop.time()
        received = 0
        deadline = self._read_deadlines.start(loop, task)
        try:
            chunk = await loop.sock_recv(conn, _RECV_SIZE)
            if chunk and chunk[0] == STREAM_MARKER:
                deadline.clear()
                await self._serve_stream(accepted, peer, chunk, started)
                return
            decoder = FrameDecoder(max_size=self._frame_limit)
            while chunk:
                received += len(chunk)
                decoder.feed(chunk)
                chunk = await loop.sock_recv(conn, _RECV_SIZE)
            deadline.clear()
            if received == 0:
                # Port probes and health checks connect and leave: not worth a warning.
                _log.debug("connection from %s closed without data", _peer_text(peer))
                return
            frame = decoder.end_of_stream()
        except asyncio.CancelledError:
            if deadline.expired and task.uncancel() == 0:
                reason = f"no complete frame within {self._options.read_timeout:g}s"
                self._log_drop(peer, reason, received)
                return
            raise
        except (FrameError, OSError) as exc:
            self._log_drop(peer, _error_text(exc), received)
            return
        finally:
            deadline.clear()
            if accepted.stream is None:
                conn.close()
        handler = self._handler
        if handler is None:  # pragma: no cover - connections exist only after listen()
            return
        self._seed_received += 1
        try:
            await handler(frame.sender, frame.payload)
        except Exception:
            _log.exception("handler failed for a message from %s", frame.sender)

    async def _serve_stream(
        self, accepted: _Accepted, peer: object, first: bytes, started: float
    ) -> None:
        """Run one inbound stream: hand its socket to a protocol, handle its frames in order."""
        loop = asyncio.get_running_loop()
        stream = _InboundStream(loop, self._options, first, started)
        accepted.stream = stream
        established = False
        try:
            try:
                await loop.connect_accepted_socket(lambda: stream, accepted.sock)
            except OSError as exc:
                self._log_drop(peer, _error_text(exc), len(first))
                return
            established = True
            self._in_streams.add(stream)
            try:
                await self._handle_stream(stream)
            finally:
                self._in_streams.discard(stream)
        finally:
            stream.abort()
            # Interrupted before it was established (cancelled by close()), uvloop closes the
            # transport without calling connection_lost: nothing to wait for then.
            if established:
                await stream.wait_closed()
        if stream.failure is not None:
            self._log_drop(peer, stream.failure, stream.received)
        else:
            _log.debug(
                "stream from %s (%s) ended: %s", _peer_text(peer), stream.sender, stream.ending
            )

    async def _handle_stream(self, stream: _InboundStream) -> None:
        handler = self._handler
        if handler is None:  # pragma: no cover - connections exist only after listen()
            return
        frames = stream.frames
        while True:
            while frames:
                payload = frames.popleft()
                self._stream_received += 1
                try:
                    await handler(stream.sender, payload)
                except Exception:
                    _log.exception("handler failed for a message from %s", stream.sender)
                if stream.reading_paused and len(frames) <= _RESUME_FRAMES:
                    stream.resume_reading()
            if stream.ended:
                return
            await stream.wait_frames()

    def _log_drop(self, peer: object, reason: str, received: int) -> None:
        # The one line a misbehaving peer costs us; the connection is closed right after.
        self._inbound_dropped += 1
        _log.warning(
            "dropped connection from %s to %s: %s (%d bytes received)",
            _peer_text(peer),
            self._address,
            reason,
            received,
        )


def _peer_text(peer: object) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return _join_address(str(peer[0]), int(peer[1]))
    return str(peer)


async def _accept(
    loop: asyncio.AbstractEventLoop, listener: socket.socket
) -> tuple[socket.socket, _SockAddr]:
    """Accept one connection; cancelling the wait never loses an accepted socket.

    ``loop.sock_accept`` accepts inside its reader callback: when the waiting future is
    cancelled after that callback was scheduled (as close() does), the accepted socket is
    left behind unclosed (CPython 3.11 logs InvalidStateError). Here the accept happens in
    this coroutine, after the wake-up, so a cancelled wait has accepted nothing.
    """
    while True:
        try:
            return listener.accept()
        except (BlockingIOError, InterruptedError):
            pass
        readable = loop.create_future()
        loop.add_reader(listener.fileno(), _wake, readable)
        try:
            await readable
        finally:
            loop.remove_reader(listener.fileno())


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)

"""Receiving: bind, the accept loop, connection slots and eviction, and the first-byte sniff
that tells a seed frame from a stream, as the module doc of :mod:`dcounter_protocol._tcp`
describes.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import select
import socket
from typing import TYPE_CHECKING

from dcounter_protocol._address import format_address
from dcounter_protocol._errors import BindError, FrameError
from dcounter_protocol._framing import Frame, FrameDecoder
from dcounter_protocol._stream import STREAM_MARKER
from dcounter_protocol._tcp._boundary import error_text, os_errors
from dcounter_protocol._tcp._bytestream import SockAddr, numeric_family, sockaddr, wait_readable
from dcounter_protocol._tcp._deadlines import Reaper
from dcounter_protocol._tcp._instream import InboundStream
from dcounter_protocol._tcp._options import (
    ACCEPT_RETRY_DELAY,
    RESUME_FRAMES,
    SLOT_CHECK_INTERVAL,
    log,
)

if TYPE_CHECKING:
    from dcounter_protocol._tcp._bytestream import Backend, ByteStream
    from dcounter_protocol._tcp._options import Counters, TCPOptions
    from dcounter_protocol._transport import HandleNow, Handler

__all__ = ["Inbound", "bind", "received_capabilities"]

#: The capabilities negotiated on the connection whose message the handler is handling.
_RECEIVED_CAPABILITIES: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "dcounter_received_capabilities", default=None
)


def received_capabilities() -> int | None:
    """Inside a transport handler: the capability bits both ends of the stream that carried
    the message offered (0 for a seed frame or a version 1 stream). None outside a TCP
    transport's handler, e.g. in an in-process network's, which negotiates nothing.

    A payload that only a capability allows (a membership message) is accepted only when
    this says the capability was negotiated on its connection.
    """
    return _RECEIVED_CAPABILITIES.get()


async def bind(address: str, host: str, port: int, backlog: int) -> socket.socket:
    """A non-blocking socket listening on ``host:port``; :class:`BindError` if it cannot."""
    loop = asyncio.get_running_loop()
    family = numeric_family(host)
    if family is not None:
        target = sockaddr(family, host, port)
    else:
        with os_errors(
            f"resolve {address}", failed=f"cannot resolve listen address {address}", error=BindError
        ):
            infos = await loop.getaddrinfo(
                host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
        if not infos:
            raise BindError(f"listen address {address} resolved to nothing")
        family, target = infos[0][0], infos[0][4]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        with os_errors(
            f"listen on {address}", failed=f"cannot listen on {address}", error=BindError
        ):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(target)
            sock.listen(backlog)
            sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class _Accepted:
    """An accepted connection, and the stream protocol that owns it once handed over."""

    __slots__ = ("evicted", "handed", "received", "stream", "task")

    def __init__(self, stream: ByteStream) -> None:
        self.stream = stream
        self.handed: InboundStream | None = None
        self.task: asyncio.Task[None] | None = None
        self.received = 0
        #: Closed while silent to make room for a waiting connection.
        self.evicted = False


class Inbound:
    """The listening side: at most ``max_connections`` connections read or handled at once."""

    def __init__(
        self, address: str, options: TCPOptions, counters: Counters, *, backend: Backend
    ) -> None:
        #: Our listen address, for log lines.
        self.address = address
        self._options = options
        self._counters = counters
        self._backend = backend
        self._read_deadlines = Reaper(options.read_timeout)
        # Only when shorter than the read timeout, which bounds the first byte too.
        self._first_byte_deadlines = (
            Reaper(options.first_byte_timeout)
            if options.first_byte_timeout < options.read_timeout
            else None
        )
        self._slots = asyncio.Semaphore(options.max_connections)
        self._handler: Handler | None = None
        self._handle_now: HandleNow | None = None
        self.connections: set[asyncio.Task[None]] = set()
        self.streams: set[InboundStream] = set()
        #: Connections that have not sent a byte yet, oldest first.
        self._silent: dict[_Accepted, None] = {}

    def serve(
        self, listener: socket.socket, handler: Handler, handle_now: HandleNow | None = None
    ) -> asyncio.Task[None]:
        """Start accepting on ``listener``; returns the accept loop's task."""
        self._handler = handler
        self._handle_now = handle_now
        return asyncio.get_running_loop().create_task(self._accept_loop(listener))

    async def close(self) -> None:
        """Cancel every connection being read or handled (the accept loop is stopped first)."""
        connections = list(self.connections)
        for task in connections:
            task.cancel()
        if connections:
            await asyncio.gather(*connections, return_exceptions=True)
        self._read_deadlines.close()
        if self._first_byte_deadlines is not None:
            self._first_byte_deadlines.close()

    # -- accepting --------------------------------------------------------------------------

    async def _accept_loop(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        slots = self._slots
        while True:
            if slots.locked():
                await self._acquire_slot_under_pressure(listener, slots)
            else:
                await slots.acquire()
            try:
                conn, peer = await _accept(loop, listener)
            except OSError as exc:
                slots.release()
                log.error("accept failed on %s: %s", self.address, exc)
                await asyncio.sleep(ACCEPT_RETRY_DELAY)
                continue
            except BaseException:
                slots.release()
                raise
            accepted = _Accepted(self._backend.accepted(loop, conn))
            task = loop.create_task(self._serve(accepted, peer))
            accepted.task = task
            self.connections.add(task)
            # A task cancelled before its first step never runs its body's finally blocks,
            # so the socket and slot are released here, whatever happened.
            task.add_done_callback(functools.partial(self._connection_done, accepted))

    async def _acquire_slot_under_pressure(
        self, listener: socket.socket, slots: asyncio.Semaphore
    ) -> None:
        """Take a slot when all are taken: wait, and while a connection is waiting in the
        listen queue, close a connection that only holds its slot to make room: the oldest
        that has sent nothing yet, else the least recently active idle stream (its dialer
        reconnects on its next send). So neither silent connections nor persistent streams
        starve newcomers."""
        while True:
            if _connection_waiting(listener):
                self._evict_one()
            try:
                async with asyncio.timeout(SLOT_CHECK_INTERVAL):
                    await slots.acquire()
                return
            except TimeoutError:
                continue

    def _evict_one(self) -> None:
        for victim in self._silent:
            del self._silent[victim]
            if victim.task is not None:
                victim.evicted = True
                self._counters.silent_evicted += 1
                victim.task.cancel()
            return
        idle = [stream for stream in self.streams if stream.idle]
        if not idle:
            return
        stream = min(idle, key=lambda stream: stream.last_activity)
        self._counters.evicted += 1
        log.info(
            "closing the idle stream from %s on %s to make room: all %d connection slots taken",
            stream.sender,
            self.address,
            self._options.max_connections,
        )
        stream.close_idle("evicted to make room for a waiting connection")

    def _connection_done(self, accepted: _Accepted, task: asyncio.Task[None]) -> None:
        self._silent.pop(accepted, None)
        if accepted.handed is None:
            accepted.stream.close()
        else:
            # The stream's transport owns the socket: closing it under the transport could
            # close a reused descriptor. The transport closes it (normally already has).
            accepted.handed.abort()
        self.connections.discard(task)
        self._slots.release()

    # -- one connection ---------------------------------------------------------------------

    async def _serve(self, accepted: _Accepted, peer: object) -> None:
        """Read the first bytes: a stream's marker hands over, anything else is a seed frame."""
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - asyncio always runs coroutines in tasks
            return
        started = loop.time()
        read_deadline = self._read_deadlines.start(loop, task)
        first_reaper = self._first_byte_deadlines
        first_deadline = None if first_reaper is None else first_reaper.start(loop, task)
        self._silent[accepted] = None
        try:
            try:
                chunk = await accepted.stream.receive_some()
            finally:
                self._silent.pop(accepted, None)
                if first_deadline is not None:
                    first_deadline.clear()
            if chunk and chunk[0] == STREAM_MARKER:
                read_deadline.clear()
                await self._serve_stream(accepted, peer, chunk, started)
                return
            frame = await self._read_seed_frame(accepted, chunk)
        except asyncio.CancelledError:
            if first_deadline is not None and first_deadline.fired():
                reason = f"no data within {first_deadline.timeout:g}s"
            elif read_deadline.fired():
                reason = f"no complete frame within {read_deadline.timeout:g}s"
            elif accepted.evicted and task.uncancel() == 0:
                reason = "sent nothing; closed to make room for a waiting connection"
            else:
                raise
            self._log_drop(peer, reason, accepted.received)
            return
        except (FrameError, OSError) as exc:
            self._log_drop(peer, error_text(exc), accepted.received)
            return
        finally:
            read_deadline.clear()
            if accepted.handed is None:
                accepted.stream.close()
        if frame is None:
            # Port probes and health checks connect and leave: not worth a warning.
            log.debug("connection from %s closed without data", _peer_text(peer))
            return
        await self._handle(frame.sender, frame.payload, capabilities=0)

    async def _read_seed_frame(self, accepted: _Accepted, chunk: bytes) -> Frame | None:
        """The frame the connection carries up to EOF; None if it carried nothing."""
        decoder = FrameDecoder(max_size=self._options.max_message_size)
        while chunk:
            accepted.received += len(chunk)
            decoder.feed(chunk)
            chunk = await accepted.stream.receive_some()
        if accepted.received == 0:
            return None
        return decoder.end_of_stream()

    async def _handle(
        self, sender: str, payload: bytes, *, capabilities: int, stream: bool = False
    ) -> None:
        handler = self._handler
        if handler is None:  # pragma: no cover - connections exist only after serve()
            return
        if stream:
            self._counters.stream_received += 1
        else:
            self._counters.seed_received += 1
        # Each connection's task handles its own messages, so the variable is its own.
        token = _RECEIVED_CAPABILITIES.set(capabilities)
        try:
            await handler(sender, payload)
        except Exception:
            log.exception("handler failed for a message from %s", sender)
        finally:
            _RECEIVED_CAPABILITIES.reset(token)

    async def _serve_stream(
        self, accepted: _Accepted, peer: object, first: bytes, started: float
    ) -> None:
        """Run one inbound stream: hand its socket to a protocol, handle its frames in order."""
        loop = asyncio.get_running_loop()
        stream = InboundStream(loop, self._options, first, started)
        if self._handle_now is not None:
            stream.handle_now = functools.partial(self._try_now, self._handle_now, stream)
        accepted.handed = stream
        established = False
        try:
            try:
                await self._backend.start_server(loop, accepted.stream, lambda: stream)
            except OSError as exc:
                self._log_drop(peer, error_text(exc), len(first))
                return
            established = True
            self.streams.add(stream)
            try:
                await self._handle_stream(stream)
            finally:
                self.streams.discard(stream)
        finally:
            stream.abort()
            # Interrupted before it was established (cancelled by close()), uvloop closes the
            # transport without calling connection_lost: nothing to wait for then.
            if established:
                await stream.wait_closed()
        if stream.failure is not None:
            self._log_drop(peer, stream.failure, stream.received)
        else:
            log.debug(
                "stream from %s (%s) ended: %s", _peer_text(peer), stream.sender, stream.ending
            )

    def _try_now(self, handle_now: HandleNow, stream: InboundStream, payload: bytes) -> bool:
        """Offer a stream's message to the synchronous fast path; True if it took it."""
        token = _RECEIVED_CAPABILITIES.set(stream.capabilities)
        try:
            if not handle_now(stream.sender, payload):
                return False
        except Exception:
            log.exception("handler failed for a message from %s", stream.sender)
        finally:
            _RECEIVED_CAPABILITIES.reset(token)
        self._counters.stream_received += 1
        return True

    async def _handle_stream(self, stream: InboundStream) -> None:
        frames = stream.frames
        while True:
            while frames:
                await self._handle(
                    stream.sender, frames.popleft(), capabilities=stream.capabilities, stream=True
                )
                if stream.reading_paused and len(frames) <= RESUME_FRAMES:
                    stream.resume_reading()
            if stream.ended:
                return
            await stream.wait_frames()

    def _log_drop(self, peer: object, reason: str, received: int) -> None:
        # The one line a misbehaving peer costs us; the connection is closed right after.
        self._counters.inbound_dropped += 1
        log.warning(
            "dropped connection from %s to %s: %s (%d bytes received)",
            _peer_text(peer),
            self.address,
            reason,
            received,
        )


def _peer_text(peer: object) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return format_address(str(peer[0]), int(peer[1]))
    return str(peer)


def _connection_waiting(listener: socket.socket) -> bool:
    """Whether a connection waits in ``listener``'s accept queue (never blocks)."""
    try:
        readable, _, _ = select.select([listener], [], [], 0)
    except (OSError, ValueError):  # closed meanwhile
        return False
    return bool(readable)


async def _accept(
    loop: asyncio.AbstractEventLoop, listener: socket.socket
) -> tuple[socket.socket, SockAddr]:
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
        await wait_readable(loop, listener)

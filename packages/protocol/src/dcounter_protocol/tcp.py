"""TCP transport, wire-compatible with the reference: one seed frame per connection.

Sending dials the target, writes ``[len(addr)][addr][payload]`` (see
:mod:`dcounter_protocol.framing`) and closes; the receiver reads until EOF, feeding the bytes
to a :class:`~dcounter_protocol.framing.FrameDecoder`, so frames up to the maximum size
arrive whole (the reference reads once into 16 KiB and truncates larger ones).

Both directions use the event loop's non-blocking socket calls (``sock_connect``,
``sock_sendall``, ``sock_accept``, ``sock_recv``) instead of streams: a message is a single
short-lived connection, and on the default asyncio loop the transport/protocol/stream objects
cost more than the work (``benchmarks/bench_transport.py``; under uvloop its native protocols
are the cheaper path). Timeouts use one small reaper per kind (dial, write, read) instead of
an ``asyncio.timeout()`` per operation, for the same reason.

Limits on the receiving side:

* **Connection cap** (``max_connections``): a slot is held from accept until the handler has
  returned. When all slots are taken the transport stops accepting; further connections wait
  in the kernel's listen queue (``backlog``), and once that is full the kernel ignores new
  connection attempts, so senders hit their dial timeout. Nothing grows without bound.
* **Read timeout** (``read_timeout``): a deadline for the whole frame, from accept to EOF
  (not per read, so a peer cannot dribble a byte at a time forever). A peer that stalls,
  sends half a frame or garbage is dropped with one warning log line; it only ever holds its
  own slot. A connection closed without any data (a port probe) is logged at debug level.
* **Size**: the decoder rejects a frame as soon as it passes ``max_message_size`` plus the
  largest header, without buffering more.

The handler runs in the connection's task, after the socket is closed; its exceptions are
logged and never reach the sender. :meth:`TCPTransport.close` stops
accepting, cancels connections being read or handled and waits for them, and makes sends in
progress fail with :class:`~dcounter_protocol.errors.TransportClosedError`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import socket
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dcounter_protocol.errors import (
    ConnectError,
    FrameError,
    TransportClosedError,
    TransportError,
    TransportTimeoutError,
)
from dcounter_protocol.framing import MAX_ADDRESS_LENGTH, FrameDecoder, encode_frame
from dcounter_protocol.message import DEFAULT_MAX_MESSAGE_SIZE

if TYPE_CHECKING:
    from dcounter_protocol.transport import Handler

__all__ = ["TCPOptions", "TCPTransport"]

_log = logging.getLogger(__name__)

#: Bytes asked of the kernel per read; seed frames are usually far smaller.
_RECV_SIZE = 64 * 1024
#: Pause after an accept() failure such as EMFILE, so the loop does not spin on it.
_ACCEPT_RETRY_DELAY = 0.1
#: Bound on cached parsed target addresses (peer addresses come from the network).
_TARGET_CACHE_SIZE = 1024

_SockAddr = tuple[Any, ...]
#: (address family, socket address) of one way to reach a target.
_Target = tuple[int, _SockAddr]


@dataclass(frozen=True, slots=True)
class TCPOptions:
    """Timeouts (seconds) and limits of a :class:`TCPTransport`."""

    dial_timeout: float = 5.0
    read_timeout: float = 5.0
    write_timeout: float = 5.0
    #: Inbound connections read or handled at once; more wait in the listen queue.
    max_connections: int = 256
    #: Largest payload accepted from a peer (the frame may add up to 256 header bytes).
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    #: Length of the kernel's queue of connections not yet accepted.
    backlog: int = 128

    def __post_init__(self) -> None:
        for name in ("dial_timeout", "read_timeout", "write_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a number, got {value!r}")
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be finite and > 0, got {value!r}")
        for name in ("max_connections", "max_message_size", "backlog"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")


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


class TCPTransport:
    """Seed-framed TCP: one connection per message; implements :class:`Transport`."""

    def __init__(self, address: str = "127.0.0.1:0", *, options: TCPOptions | None = None):
        """Configure (nothing is bound until :meth:`listen`); ValueError on a bad address."""
        if not isinstance(address, str):
            raise ValueError(f"address must be a str, got {address!r}")
        self._host, self._port = _split_address(address)
        if not 1 <= len(address.encode("utf-8")) <= MAX_ADDRESS_LENGTH:
            raise ValueError(f"address must be 1..{MAX_ADDRESS_LENGTH} bytes: {address!r}")
        self._address = address
        self._options = options if options is not None else TCPOptions()
        self._frame_limit = self._options.max_message_size + 1 + MAX_ADDRESS_LENGTH
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
        self._closed = False
        self._close_done: asyncio.Event | None = None

    # -- public API -----------------------------------------------------------------------

    @property
    def address(self) -> str:
        """The configured ``"host:port"``; once listening, with the real bound port."""
        return self._address

    @property
    def options(self) -> TCPOptions:
        """The timeouts and limits in force."""
        return self._options

    @property
    def active_connections(self) -> int:
        """Inbound connections currently holding a slot (being read or handled)."""
        return len(self._connections)

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
        """Dial ``address``, write one seed frame with :attr:`address` as sender, close.

        Raises ConnectError (refused, unreachable, unresolvable, reset), TransportTimeoutError
        (dial or write took too long) or TransportClosedError (after or during close()).
        """
        if self._closed:
            raise TransportClosedError(f"transport {self._address} is closed")
        frame = encode_frame(self._address, data)
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - asyncio always runs coroutines in tasks
            raise RuntimeError("TCPTransport.send() must run in an asyncio task")
        self._sends.add(task)
        try:
            await self._send_seed_frame(task, address, frame)
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
        return f"<TCPTransport {self._address} {state}>"

    # -- sending --------------------------------------------------------------------------

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

    async def _send_seed_frame(self, task: asyncio.Task[Any], address: str, frame: bytes) -> None:
        # The seam for the stream mode of issue 8: a negotiated persistent connection would be
        # tried here first, falling back to this one-connection-per-frame path.
        loop = asyncio.get_running_loop()
        phase, limit = "dial", self._options.dial_timeout
        deadline = self._dial_deadlines.start(loop, task)
        try:
            sock = await self._connect(loop, address)
            try:
                deadline.clear()
                phase, limit = "write", self._options.write_timeout
                # Most frames fit the socket buffer: one send() and no deadline at all.
                try:
                    sent = sock.send(frame)
                except (BlockingIOError, InterruptedError):
                    sent = 0
                if sent < len(frame):
                    deadline = self._write_deadlines.start(loop, task)
                    await loop.sock_sendall(sock, memoryview(frame)[sent:])
            finally:
                # The kernel still delivers what is buffered, then sends FIN: the EOF that
                # ends the frame on the receiving side.
                sock.close()
        except asyncio.CancelledError:
            if deadline.expired and task.uncancel() == 0:
                raise TransportTimeoutError(
                    f"{phase} to {address} timed out after {limit:g}s"
                ) from None
            raise
        except TimeoutError as exc:  # the kernel's own (ETIMEDOUT)
            raise TransportTimeoutError(f"{phase} to {address} timed out: {exc}") from exc
        except OSError as exc:
            raise ConnectError(f"{phase} to {address} failed: {type(exc).__name__}: {exc}") from exc
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
            await slots.acquire()
            try:
                conn, peer = await loop.sock_accept(listener)
            except OSError as exc:
                slots.release()
                _log.error("accept failed on %s: %s", self._address, exc)
                await asyncio.sleep(_ACCEPT_RETRY_DELAY)
                continue
            except BaseException:
                slots.release()
                raise
            conn.setblocking(False)
            task = loop.create_task(self._serve(conn, peer))
            self._connections.add(task)
            # A task cancelled before its first step never runs its body's finally blocks,
            # so the socket and slot are released here, whatever happened.
            task.add_done_callback(functools.partial(self._connection_done, conn))

    def _connection_done(self, conn: socket.socket, task: asyncio.Task[None]) -> None:
        conn.close()
        self._connections.discard(task)
        if self._slots is not None:
            self._slots.release()

    async def _serve(self, conn: socket.socket, peer: object) -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - asyncio always runs coroutines in tasks
            return
        decoder = FrameDecoder(max_size=self._frame_limit)
        received = 0
        deadline = self._read_deadlines.start(loop, task)
        try:
            while chunk := await loop.sock_recv(conn, _RECV_SIZE):
                received += len(chunk)
                decoder.feed(chunk)
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
            self._log_drop(peer, f"{type(exc).__name__}: {exc}", received)
            return
        finally:
            deadline.clear()
            conn.close()
        handler = self._handler
        if handler is None:  # pragma: no cover - connections exist only after listen()
            return
        try:
            await handler(frame.sender, frame.payload)
        except Exception:
            _log.exception("handler failed for a message from %s", frame.sender)

    def _log_drop(self, peer: object, reason: str, received: int) -> None:
        # The one line a misbehaving peer costs us; the connection is closed right after.
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

"""Byte streams: the narrow interface the framing code reads and writes, and its backend.

:class:`ByteStream` (send all, receive some, close; plus ``try_send``, the write that
needs no waiting, which most seed frames take) is all that the seed framing needs of a
connection. :class:`PlainBackend` makes them from plain TCP sockets on the running loop, and
hands a connection over to an asyncio protocol for the stream mode (``start_client`` /
``start_server``). :class:`~dcounter_protocol._tcp._tls.TLSBackend` is the same four calls
with TLS inside; nothing above the :class:`Backend` interface knows which one it talks to.
:class:`Dialer` resolves and connects within the dial timeout, through the one error
boundary (:func:`~dcounter_protocol._tcp._boundary.os_errors`).
"""

from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING, Any, Protocol

from dcounter_protocol._address import parse_address
from dcounter_protocol._errors import ConnectError, MalformedAddressError
from dcounter_protocol._tcp._boundary import os_errors
from dcounter_protocol._tcp._options import RECV_SIZE, TARGET_CACHE_SIZE

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from dcounter_protocol._tcp._deadlines import Reaper

__all__ = [
    "Backend",
    "ByteStream",
    "Dialer",
    "PlainBackend",
    "SocketStream",
    "numeric_family",
    "sockaddr",
    "wait_readable",
]

SockAddr = tuple[Any, ...]
#: (address family, socket address) of one way to reach a target.
Target = tuple[int, SockAddr]


class ByteStream(Protocol):
    """A connected, reliable, ordered byte stream."""

    def try_send(self, data: bytes) -> int:
        """Write what can be written now without waiting; returns how many bytes (maybe 0)."""
        ...

    async def send_all(self, data: bytes | memoryview) -> None:
        """Write all of ``data`` (the caller bounds the wait with a deadline)."""
        ...

    def receive_some(self, max_bytes: int = RECV_SIZE) -> Awaitable[bytes]:
        """The next bytes that arrived, at most ``max_bytes``; ``b""`` at the end of stream."""
        ...

    def close(self) -> None:
        """Release the connection; bytes already written are still delivered, then EOF."""
        ...


class Backend(Protocol):
    """Makes :class:`ByteStream` connections and hands them over to asyncio protocols."""

    async def connect(self, loop: asyncio.AbstractEventLoop, target: Target) -> ByteStream:
        """A stream connected to ``target``; OSError if it cannot be reached (or refused)."""
        ...

    def accepted(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> ByteStream:
        """The stream of a connection a listener accepted (any handshake runs on first use)."""
        ...

    async def start_client(
        self,
        loop: asyncio.AbstractEventLoop,
        stream: ByteStream,
        factory: Callable[[], asyncio.Protocol],
    ) -> None:
        """Hand a dialled stream to a protocol (which then owns the connection)."""
        ...

    async def start_server(
        self,
        loop: asyncio.AbstractEventLoop,
        stream: ByteStream,
        factory: Callable[[], asyncio.Protocol],
    ) -> None:
        """Hand an accepted stream to a protocol (which then owns the connection)."""
        ...


def _socket_of(stream: ByteStream) -> socket.socket:
    if not isinstance(stream, SocketStream):
        raise TypeError(f"not a plain socket stream: {stream!r}")
    return stream.sock


class SocketStream:
    """A :class:`ByteStream` over a non-blocking socket, driven by the loop's socket calls."""

    __slots__ = ("_loop", "sock")

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        self._loop = loop
        self.sock = sock

    def try_send(self, data: bytes) -> int:
        try:
            return self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            return 0

    async def send_all(self, data: bytes | memoryview) -> None:
        await self._loop.sock_sendall(self.sock, data)

    def receive_some(self, max_bytes: int = RECV_SIZE) -> Awaitable[bytes]:
        # The loop's own awaitable, not a coroutine around it: one per read, kept cheap.
        return self._loop.sock_recv(self.sock, max_bytes)

    def close(self) -> None:
        self.sock.close()


class PlainBackend:
    """Plain TCP: sockets as byte streams, and asyncio protocols on the same sockets."""

    async def connect(self, loop: asyncio.AbstractEventLoop, target: Target) -> SocketStream:
        """A stream connected to ``target``; OSError if it cannot be reached."""
        family, address = target
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, address)
        except BaseException:
            sock.close()
            raise
        return SocketStream(loop, sock)

    def accepted(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> SocketStream:
        """The stream of a connection a listener accepted."""
        sock.setblocking(False)
        return SocketStream(loop, sock)

    async def start_client(
        self,
        loop: asyncio.AbstractEventLoop,
        stream: ByteStream,
        factory: Callable[[], asyncio.Protocol],
    ) -> None:
        """Hand a dialled stream to a protocol (which then owns the connection)."""
        await loop.create_connection(factory, sock=_socket_of(stream))

    async def start_server(
        self,
        loop: asyncio.AbstractEventLoop,
        stream: ByteStream,
        factory: Callable[[], asyncio.Protocol],
    ) -> None:
        """Hand an accepted stream to a protocol (which then owns the connection)."""
        await loop.connect_accepted_socket(factory, _socket_of(stream))


async def wait_readable(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    """Return once ``sock`` is readable (data, a connection to accept, or EOF)."""
    readable = loop.create_future()
    loop.add_reader(sock.fileno(), _wake, readable)
    try:
        await readable
    finally:
        loop.remove_reader(sock.fileno())


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def numeric_family(host: str) -> int | None:
    """The address family of a numeric IP literal, None for names."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        return family
    return None


def sockaddr(family: int, host: str, port: int) -> SockAddr:
    return (host, port) if family == socket.AF_INET else (host, port, 0, 0)


class Dialer:
    """Resolves ``host:port`` targets (numeric ones cached) and connects within a timeout."""

    __slots__ = ("_backend", "_deadlines", "_targets")

    def __init__(self, backend: Backend, deadlines: Reaper) -> None:
        self._backend = backend
        self._deadlines = deadlines
        self._targets: dict[str, Target] = {}

    async def dial(self, task: asyncio.Task[Any], address: str) -> ByteStream:
        """A stream connected to ``address``; ConnectError or TransportTimeoutError if not."""
        loop = asyncio.get_running_loop()
        deadline = self._deadlines.start(loop, task)
        with os_errors(f"dial to {address}", deadline=deadline):
            error: OSError | None = None
            for target in await self._resolve(loop, address):
                try:
                    return await self._backend.connect(loop, target)
                except OSError as exc:
                    error = exc
            if error is None:
                raise ConnectError(f"{address} resolved to no address")
            raise error

    async def _resolve(self, loop: asyncio.AbstractEventLoop, address: str) -> list[Target]:
        cached = self._targets.get(address)
        if cached is not None:
            return [cached]
        try:
            host, port = parse_address(address)
        except MalformedAddressError as exc:
            raise ConnectError(f"malformed address {address!r}: {exc.reason}") from None
        family = numeric_family(host)
        if family is not None:
            target: Target = (family, sockaddr(family, host, port))
            if len(self._targets) >= TARGET_CACHE_SIZE:
                self._targets.clear()
            self._targets[address] = target
            return [target]
        with os_errors(f"resolve {address}", failed=f"cannot resolve {address}"):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        return [(info[0], info[4]) for info in infos]

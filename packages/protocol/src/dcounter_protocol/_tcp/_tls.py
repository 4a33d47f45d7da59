"""The TLS backend: the :class:`~dcounter_protocol._tcp._bytestream.Backend` calls with
mutual TLS inside, so the seed framing and the stream mode run unchanged over it.

A connection is an asyncio TLS transport (``ssl=`` on ``create_connection`` and
``connect_accepted_socket``, whose handshake is bounded by the dial deadline or the
listener's first-byte and read deadlines). Until the stream mode takes it over, a small
protocol (:class:`TLSStream`) buffers what arrives and serves it as a
:class:`~dcounter_protocol._tcp._bytestream.ByteStream`; the hand-over swaps in the stream
protocol with ``transport.set_protocol`` and feeds it what was buffered.

Inbound, the handshake runs on the connection's first read: nothing a peer sends reaches a
decoder before the handshake succeeded. A failed handshake (plaintext, no certificate, one
from another CA, an expired one) is an OSError there, counted as ``tls_refused``. From the
source IP of a plaintext peer the first two bytes decide: a TLS handshake record
(``16 03``) is TLS, anything else is taken as plain (the seed framing or a stream hello).
Dialling a plaintext peer's exact address is plain TCP.
"""

from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING, cast

from dcounter_protocol._tcp._bytestream import (
    ByteStream,
    PlainBackend,
    SocketStream,
    wait_readable,
)
from dcounter_protocol._tcp._options import RECV_SIZE
from dcounter_protocol._tcp._tlsoptions import normalize_ip

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from dcounter_protocol._tcp._bytestream import Target
    from dcounter_protocol._tcp._options import Counters, TCPOptions
    from dcounter_protocol._tcp._tlsoptions import TLSOptions

__all__ = ["TLSBackend", "TLSStream"]

#: The first bytes of a TLS handshake record (content type 22, major version 3).
_TLS_RECORD = b"\x16\x03"
#: Bytes buffered before reading pauses (a seed frame is read as it arrives).
_PAUSE_BYTES = 4 * RECV_SIZE


class TLSStream(asyncio.Protocol):
    """A :class:`ByteStream` over an asyncio TLS transport, until :meth:`hand_over`."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._eof = False
        self._lost = False
        self._error: Exception | None = None
        self._reading_paused = False
        self._writing_paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) >= _PAUSE_BYTES and not self._reading_paused:
            self._reading_paused = True
            if self.transport is not None:
                self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool | None:
        self._eof = True
        self._wake()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = self._lost = True
        self._error = exc
        self._wake()
        self._wake_drained()

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._wake_drained()

    # -- ByteStream -------------------------------------------------------------------------

    def try_send(self, data: bytes) -> int:
        # The transport buffers and encrypts all of it; close() flushes it (within
        # ssl_shutdown_timeout, the write timeout) before it sends close_notify.
        self._writable().write(data)
        return len(data)

    async def send_all(self, data: bytes | memoryview) -> None:
        self._writable().write(data)
        while self._writing_paused and not self._lost:
            self._drained = self._loop.create_future()
            try:
                await self._drained
            finally:
                self._drained = None
        if self._lost:
            raise self._lost_error()

    def receive_some(self, max_bytes: int = RECV_SIZE) -> Awaitable[bytes]:
        return self._receive(max_bytes)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    # -- the hand-over ----------------------------------------------------------------------

    def hand_over(self, protocol: asyncio.Protocol) -> None:
        """Make ``protocol`` the transport's protocol, as if it had been there all along."""
        transport = self.transport
        if transport is None:  # pragma: no cover - streams exist only once connected
            raise ConnectionResetError("not connected")
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if self._writing_paused:
            protocol.pause_writing()
        if self._buffer:
            data = bytes(self._buffer)
            self._buffer.clear()
            protocol.data_received(data)
        if self._reading_paused and not self._lost:
            self._reading_paused = False
            transport.resume_reading()
        if self._lost:
            protocol.connection_lost(self._error)
        elif self._eof:
            protocol.eof_received()

    # -- internals --------------------------------------------------------------------------

    async def _receive(self, max_bytes: int) -> bytes:
        while not self._buffer and not self._eof:
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if self._buffer:
            data = bytes(self._buffer[:max_bytes])
            del self._buffer[:max_bytes]
            if self._reading_paused and len(self._buffer) < RECV_SIZE and not self._lost:
                self._reading_paused = False
                if self.transport is not None:
                    self.transport.resume_reading()
            return data
        if self._error is not None:
            raise self._lost_error()
        return b""

    def _writable(self) -> asyncio.Transport:
        transport = self.transport
        if transport is None or transport.is_closing():
            raise self._lost_error()
        return transport

    def _lost_error(self) -> OSError:
        error = self._error
        if isinstance(error, OSError):
            return error
        return ConnectionResetError(f"connection lost: {error}" if error else "connection lost")

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake_drained(self) -> None:
        drained = self._drained
        if drained is not None and not drained.done():
            drained.set_result(None)


class _AcceptedStream:
    """An accepted connection whose first read sniffs (from plaintext peers) and handshakes."""

    __slots__ = ("_backend", "_loop", "_sock", "inner")

    def __init__(
        self, backend: TLSBackend, loop: asyncio.AbstractEventLoop, sock: socket.socket
    ) -> None:
        self._backend = backend
        self._loop = loop
        self._sock = sock
        #: The stream once negotiated: TLS, or plain from a plaintext peer.
        self.inner: ByteStream | None = None

    def try_send(self, data: bytes) -> int:
        return self._started().try_send(data)

    async def send_all(self, data: bytes | memoryview) -> None:
        await self._started().send_all(data)

    def receive_some(self, max_bytes: int = RECV_SIZE) -> Awaitable[bytes]:
        if self.inner is not None:
            return self.inner.receive_some(max_bytes)
        return self._first_receive(max_bytes)

    def close(self) -> None:
        if self.inner is not None:
            self.inner.close()
        else:
            # No handshake, or a failed one (asyncio has already closed the transport).
            self._sock.close()

    def _started(self) -> ByteStream:
        if self.inner is None:
            raise ConnectionResetError("the TLS handshake has not run")
        return self.inner

    async def _first_receive(self, max_bytes: int) -> bytes:
        first = await _peek(self._loop, self._sock)
        if not first:
            return b""  # closed without data: a port probe, not a refused handshake
        plain_ok = _source_ip(self._sock) in self._backend.tls.plaintext_ips
        if plain_ok and not first.startswith(_TLS_RECORD[: len(first)]):
            self.inner = SocketStream(self._loop, self._sock)
        else:
            self.inner = await self._backend.handshake_server(self._loop, self._sock)
        return await self.inner.receive_some(max_bytes)


class TLSBackend:
    """Mutual TLS on every connection, except plain TCP to and from plaintext peers."""

    def __init__(self, tls: TLSOptions, options: TCPOptions, counters: Counters) -> None:
        #: The contexts in force; replaced by :meth:`TCPTransport.set_tls`, used by every
        #: connection made after that (open ones keep theirs).
        self.tls = tls
        self._options = options
        self._counters = counters
        self._plain = PlainBackend()

    async def connect(self, loop: asyncio.AbstractEventLoop, target: Target) -> ByteStream:
        address = target[1]
        if (normalize_ip(str(address[0])), address[1]) in self.tls.plaintext_targets:
            return await self._plain.connect(loop, target)
        plain = await self._plain.connect(loop, target)
        # Our own instance, not the returned protocol: uvloop returns its SSL protocol there.
        stream = TLSStream(loop)
        try:
            await loop.create_connection(
                lambda: stream,
                sock=plain.sock,
                ssl=self.tls.client_context,
                # No SNI and no host-name check: peers are IP:port (see TLSOptions).
                server_hostname="",
                ssl_handshake_timeout=self._options.dial_timeout,
                ssl_shutdown_timeout=self._options.write_timeout,
            )
        except OSError:
            self._counters.tls_dial_failures += 1
            plain.close()
            raise
        except BaseException:
            plain.close()
            raise
        return stream

    def accepted(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> ByteStream:
        sock.setblocking(False)
        return _AcceptedStream(self, loop, sock)

    async def handshake_server(
        self, loop: asyncio.AbstractEventLoop, sock: socket.socket
    ) -> TLSStream:
        """The server side of the handshake on ``sock``; counts and re-raises a refusal."""
        stream = TLSStream(loop)
        try:
            await loop.connect_accepted_socket(
                lambda: stream,
                sock,
                ssl=self.tls.server_context,
                ssl_handshake_timeout=self._options.read_timeout,
                ssl_shutdown_timeout=self._options.write_timeout,
            )
        except OSError:
            self._counters.tls_refused += 1
            raise
        return stream

    async def start_client(
        self,
        loop: asyncio.AbstractEventLoop,
        stream: ByteStream,
        factory: Callable[[], asyncio.Protocol],
    ) -> None:
        await self._start(loop, stream, factory, server=False)

    async def start_server(
        self,
        loop: asyncio.AbstractEventLoop,
        stream: ByteStream,
        factory: Callable[[], asyncio.Protocol],
    ) -> None:
        await self._start(loop, stream, factory, server=True)

    async def _start(
        self,
        loop: asyncio.AbstractEventLoop,
        stream: ByteStream,
        factory: Callable[[], asyncio.Protocol],
        *,
        server: bool,
    ) -> None:
        if isinstance(stream, _AcceptedStream):
            stream = stream._started()
        if isinstance(stream, TLSStream):
            stream.hand_over(factory())
        elif server:
            await self._plain.start_server(loop, stream, factory)
        else:
            await self._plain.start_client(loop, stream, factory)


def _source_ip(sock: socket.socket) -> str | None:
    try:
        peer = sock.getpeername()
    except OSError:
        return None
    return normalize_ip(str(peer[0])) if isinstance(peer, tuple) else None


async def _peek(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> bytes:
    """Up to the first two bytes of ``sock``, left unread; b"" at EOF. OSError on a reset."""
    while True:
        try:
            return sock.recv(len(_TLS_RECORD), socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            pass
        await wait_readable(loop, sock)

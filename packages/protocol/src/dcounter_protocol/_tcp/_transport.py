"""The facade: :class:`TCPTransport` wires options, the dialer, outbound and inbound sides."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from dcounter_protocol._address import MAX_ADDRESS_LENGTH, format_address, parse_address
from dcounter_protocol._errors import (
    InvalidOptionError,
    MalformedAddressError,
    TransportClosedError,
    TransportError,
)
from dcounter_protocol._tcp._bytestream import Backend, Dialer, PlainBackend
from dcounter_protocol._tcp._deadlines import Reaper
from dcounter_protocol._tcp._inbound import Inbound, bind
from dcounter_protocol._tcp._options import Counters, TCPOptions, TransportStats
from dcounter_protocol._tcp._outbound import Outbound
from dcounter_protocol._tcp._tls import TLSBackend
from dcounter_protocol._tcp._tlsoptions import TLSOptions

if TYPE_CHECKING:
    import socket
    from collections.abc import Iterator

    from dcounter_protocol._transport import HandleNow, Handler

__all__ = ["TCPTransport"]


class TCPTransport:
    """TCP with the seed's framing and the negotiated stream mode; implements Transport."""

    def __init__(
        self,
        address: str = "127.0.0.1:0",
        *,
        options: TCPOptions | None = None,
        advertise: str | None = None,
    ) -> None:
        """Configure (nothing is bound until listen()); InvalidOptionError on a bad address.

        ``advertise`` ("host:port", port not 0) is the address others dial, named as this
        transport's sender and reported by :attr:`address` once listening, instead of the
        bound one (which says nothing useful when bound to a wildcard such as 0.0.0.0).
        """
        if not isinstance(address, str):
            raise InvalidOptionError(f"address must be a str, got {address!r}")
        if advertise is not None:
            try:
                parse_address(advertise, allow_port_zero=False)
            except MalformedAddressError as exc:
                raise MalformedAddressError(f"advertise address: {exc.reason}") from None
        self._advertise = advertise
        try:
            self._host, self._port = parse_address(address)
        except MalformedAddressError as exc:
            raise MalformedAddressError(
                f"listen address must be 1..{MAX_ADDRESS_LENGTH} bytes of HOST:PORT: {exc.reason}"
            ) from None
        self._address = address
        self._options = options if options is not None else TCPOptions()
        self._counters = Counters()
        tls = self._options.tls
        backend: Backend = (
            PlainBackend() if tls is None else TLSBackend(tls, self._options, self._counters)
        )
        self._deadlines = (Reaper(self._options.dial_timeout), Reaper(self._options.write_timeout))
        self._outbound = Outbound(
            address,
            self._options,
            self._counters,
            backend=backend,
            dialer=Dialer(backend, self._deadlines[0]),
            write_deadlines=self._deadlines[1],
        )
        self._inbound: Inbound | None = None
        self._backend = backend
        self._listener: socket.socket | None = None
        self._accept_task: asyncio.Task[None] | None = None
        self._sends: set[asyncio.Task[object]] = set()
        self._cancelled_sends: set[asyncio.Task[object]] = set()
        self._sends_drained: asyncio.Future[None] | None = None
        self._closed = False
        self._close_done: asyncio.Event | None = None

    # -- public API -----------------------------------------------------------------------

    @property
    def address(self) -> str:
        """The configured ``"host:port"``; once listening, the advertised address or the
        bound one (with the real port)."""
        return self._address

    @property
    def options(self) -> TCPOptions:
        """The timeouts, limits and wire choice in force."""
        return self._options

    @property
    def tls(self) -> TLSOptions | None:
        """The TLS contexts new connections use (None: plain TCP)."""
        backend = self._backend
        return backend.tls if isinstance(backend, TLSBackend) else None

    def set_tls(self, tls: TLSOptions) -> None:
        """Use ``tls`` for every connection made from now on; open ones keep their own.

        For certificate rotation. Raises InvalidOptionError on a transport made without TLS
        (turning TLS on needs a restart: peers would otherwise see both at once).
        """
        backend = self._backend
        if not isinstance(backend, TLSBackend):
            raise InvalidOptionError(f"transport {self._address} was made without TLS")
        if not isinstance(tls, TLSOptions):
            raise InvalidOptionError(f"tls must be a TLSOptions, got {tls!r}")
        backend.tls = tls

    @property
    def active_connections(self) -> int:
        """Inbound connections currently holding a slot (being read or handled)."""
        return 0 if self._inbound is None else len(self._inbound.connections)

    def streaming(self, address: str) -> bool:
        """True while a confirmed stream to ``address`` is open (it takes full-size frames)."""
        return self._outbound.streaming(address)

    def stats(self) -> TransportStats:
        """The counters since creation and the current gauges."""
        open_in = 0 if self._inbound is None else len(self._inbound.streams)
        return self._counters.snapshot(open_in=open_in, queued=self._outbound.queued())

    async def listen(self, handler: Handler, *, handle_now: HandleNow | None = None) -> None:
        """Bind (port 0 picks a free port, reported by :attr:`address`) and start serving.

        ``handle_now``: see :data:`~dcounter_protocol._transport.HandleNow` (stream messages
        only; seed frames always go to ``handler``). Raises :class:`BindError` when the
        address cannot be resolved or bound.
        """
        if self._closed:
            raise TransportClosedError(f"transport {self._address} is closed")
        if self._listener is not None:
            raise TransportError(f"transport {self._address} is already listening")
        listener = await bind(self._address, self._host, self._port, self._options.backlog)
        self._listener = listener
        self._address = self._advertise or format_address(self._host, listener.getsockname()[1])
        self._outbound.sender = self._address
        self._inbound = Inbound(self._address, self._options, self._counters, backend=self._backend)
        self._accept_task = self._inbound.serve(listener, handler, handle_now)

    async def send(self, address: str, data: bytes) -> None:
        """Send one message to ``address`` with :attr:`address` as sender (see the module doc).

        Raises ConnectError (refused, unreachable, unresolvable, reset), TransportTimeoutError
        (dial or write took too long) or TransportClosedError (after or during close()) when
        this send has to open a connection; never once the peer has a stream. EncodeError
        for an empty payload.
        """
        if self.send_nowait(address, data):
            return
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - asyncio always runs coroutines in tasks
            raise RuntimeError("TCPTransport.send() must run in an asyncio task")
        self._sends.add(task)
        try:
            if self._options.wire == "auto" and 0 < len(data) <= self._options.max_message_size:
                await self._outbound.send_auto(task, address, data)
            else:
                await self._outbound.send_seed(task, address, data)
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
        return self._outbound.try_queue(address, data)

    @contextlib.contextmanager
    def corked(self) -> Iterator[None]:
        """Hold the stream writes of :meth:`send_nowait` until the block ends, then write
        what each peer got in one go: several messages of one event to one peer cost one
        system call here and one wake-up there, not one each. Blocks nest; must run in the
        event loop.
        """
        self._outbound.cork()
        try:
            yield
        finally:
            self._outbound.uncork()

    def capabilities(self, address: str) -> int | None:
        """The capability bits ``address`` confirmed for its stream (0 for a version 1 one);
        None while it has no stream (see :meth:`open_stream`)."""
        return self._outbound.capabilities(address)

    async def open_stream(self, address: str) -> bool:
        """Make sure a stream to ``address`` is open, dialling and offering one if needed.

        True once the peer confirmed one (then :meth:`capabilities` says what it offers and
        :meth:`send_nowait` queues on it); False with ``wire="seed"``, for a peer that does
        not confirm streams (it is re-probed later) or one that did not confirm in time.
        Raises ConnectError or TransportTimeoutError if the dial fails, TransportClosedError
        after close().
        """
        if self._closed:
            raise TransportClosedError(f"transport {self._address} is closed")
        if self._options.wire != "auto":
            return False
        return await self._outbound.open_stream(address)

    async def close(self) -> None:
        """Stop accepting, cancel inbound work and sends in progress; idempotent."""
        if self._closed:
            if self._close_done is not None:
                await self._close_done.wait()
            return
        self._closed = True
        self._outbound.closed = True
        self._close_done = asyncio.Event()
        try:
            if self._accept_task is not None:
                self._accept_task.cancel()
                await asyncio.gather(self._accept_task, return_exceptions=True)
            if self._listener is not None:
                self._listener.close()
            if self._inbound is not None:
                await self._inbound.close()
            await self._cancel_sends()
            await self._outbound.close()
        finally:
            for reaper in self._deadlines:
                reaper.close()
            self._close_done.set()

    async def _cancel_sends(self) -> None:
        if not self._sends:
            return
        self._sends_drained = asyncio.get_running_loop().create_future()
        self._cancelled_sends.update(self._sends)
        for send_task in self._sends:
            send_task.cancel()
        await self._sends_drained
        self._cancelled_sends.clear()

    async def __aenter__(self) -> TCPTransport:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "listening" if self._listener else "idle"
        tls = "" if self._options.tls is None else " tls"
        return f"<TCPTransport {self._address} {state} wire={self._options.wire}{tls}>"

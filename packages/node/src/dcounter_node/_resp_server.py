"""Serving the Redis protocol (``dcounter-node --resp``): TCP or TLS, limits, group commit.

This module only moves bytes: each connection feeds what it reads to a
:class:`~dcounter_node._resp_wire.RequestReader`, runs the requests through its
:class:`~dcounter_node._resp_commands.RespSession` and writes the replies. Everything
read in one go is one batch: if it counted anything, its replies wait for one
``commit()`` (the node's store groups concurrent commits into one transaction), so a
pipeline of 1,000 INCRs costs one commit, and no client hears of a count before it is
durable. Requests arriving meanwhile wait behind it, so replies stay in order.

Limits (:class:`~dcounter_node._resp_limits.RespLimits`): connections over the cap are
answered Redis's ``-ERR max number of clients reached`` and closed; a malformed or
oversized request gets ``-ERR Protocol error: ...`` and its connection is closed (one
rate-limited log line); a request that stops arriving midway is closed after
``request_timeout``, an idle connection after ``idle_timeout``. A client that does not read
its replies stops being read once the send buffer is full.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, cast

from dcounter_node._errors import NodeClosedError, StorageError
from dcounter_node._ratelimit import RateLimitedLog
from dcounter_node._resp_commands import RespSession
from dcounter_node._resp_limits import RespLimits
from dcounter_node._resp_shared import RespShared
from dcounter_node._resp_wire import RequestReader, RespProtocolError, error_line
from dcounter_node._setting_values import format_address, parse_address

if TYPE_CHECKING:
    import ssl
    from collections.abc import Awaitable, Callable

    from dcounter_node._auth import ApiTokens, Scope
    from dcounter_node._resp_shared import CounterBackend, RespBatch, TokenCheck

__all__ = ["RespServer", "start_resp_server"]

_log = logging.getLogger(__name__)

_BUSY: Final = b"-ERR max number of clients reached\r\n"
#: How long shutdown waits for replies that wait for a commit.
_DRAIN_SECONDS: Final = 5.0


@dataclass(eq=False)
class RespServer:
    """A running Redis-protocol listener; :attr:`address` is the bound "host:port"."""

    address: str
    shared: RespShared
    _listener: asyncio.Server
    _state: _ServerState
    _closing: asyncio.Future[None] | None = None

    async def close(self) -> None:
        """Stop accepting, send the replies waiting for a commit, close every connection."""
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close())
        await asyncio.shield(self._closing)

    async def _close(self) -> None:
        self._listener.close()
        state = self._state
        if state.sweeper is not None:
            state.sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await state.sweeper
        pending = [c.task for c in state.connections if c.task is not None]
        if pending:
            await asyncio.wait(pending, timeout=_DRAIN_SECONDS)
        for connection in list(state.connections):
            connection.close()
        await self._listener.wait_closed()


@dataclass(eq=False)
class _ServerState:
    backend: CounterBackend
    commit: Callable[[], Awaitable[None]] | None
    limits: RespLimits
    shared: RespShared
    tokens: TokenCheck | None
    health: Callable[[], str | None] | None
    connections: set[_Connection] = field(default_factory=set)
    sweeper: asyncio.Task[None] | None = None
    warnings: RateLimitedLog = field(default_factory=lambda: RateLimitedLog(_log))

    def sweep(self) -> None:
        now = time.monotonic()
        for connection in list(self.connections):
            connection.check_deadlines(now)

    async def run_sweeper(self) -> None:
        interval = self.limits.sweep_interval()
        while True:
            await asyncio.sleep(interval)
            self.sweep()


class _Connection(asyncio.Protocol):
    """One client: read, run, (commit,) reply; in order, one batch at a time."""

    def __init__(self, state: _ServerState) -> None:
        self._state = state
        self._transport: asyncio.Transport | None = None
        self._reader = RequestReader(state.limits)
        self._session: RespSession | None = None
        self._peer = "unknown"
        self._active = time.monotonic()
        self._request_started: float | None = None
        #: The commit a batch's replies wait for; input arriving meanwhile is kept here.
        self.task: asyncio.Task[None] | None = None
        self._backlog = bytearray()
        self._write_paused = False
        self._read_paused = False

    # -- asyncio callbacks -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream server's transport (uvloop's does not subclass asyncio.Transport).
        transport = cast("asyncio.Transport", transport)
        state = self._state
        shared = state.shared
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self._peer = format_address(peer[0], peer[1])
        if len(state.connections) >= state.limits.max_connections:
            shared.rejected_connections += 1
            state.warnings.warning(
                "busy",
                "Redis-protocol connection from %s refused: %d connections are open (the limit)",
                self._peer,
                len(state.connections),
            )
            transport.write(_BUSY)
            transport.close()
            return
        self._transport = transport
        state.connections.add(self)
        shared.connected += 1
        shared.connections_received += 1
        self._session = RespSession(
            state.backend, shared, tokens=state.tokens, health=state.health, peer=self._peer
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._transport = None
            self._state.connections.discard(self)
            self._state.shared.connected -= 1

    def data_received(self, data: bytes) -> None:
        if self._transport is None:
            return
        if self.task is not None:
            self._backlog += data
            self._update_reading()
            return
        self._process(data)

    def pause_writing(self) -> None:
        self._write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._update_reading()

    # -- the work ------------------------------------------------------------------------------

    def _process(self, data: bytes) -> None:
        session = self._session
        if session is None:  # pragma: no cover - set whenever the transport is
            return
        now = time.monotonic()
        self._active = now
        try:
            requests = self._reader.feed(data)
        except RespProtocolError as exc:
            self._refuse(f"ERR Protocol error: {exc}", f"a malformed request ({exc})")
            return
        if self._reader.in_request:
            if self._request_started is None or requests:
                self._request_started = now
        else:
            self._request_started = None
        if not requests:
            return
        batch = session.run(requests)
        if batch.writes and self._state.commit is not None:
            self.task = asyncio.get_running_loop().create_task(self._commit_then_reply(batch))
        else:
            self._reply(batch)

    async def _commit_then_reply(self, batch: RespBatch) -> None:
        commit = self._state.commit
        assert commit is not None  # only called with one
        try:
            await commit()
        except StorageError as exc:
            self._state.warnings.warning("commit", "commit failed: %s", exc)
            _unacknowledge(batch, f"ERR change not persisted: {exc}")
        except NodeClosedError:
            _unacknowledge(batch, "ERR node is shutting down: change not persisted")
        self.task = None
        if self._transport is None:
            return
        self._reply(batch)
        if self._backlog and self._transport is not None:
            data = bytes(self._backlog)
            self._backlog.clear()
            self._update_reading()
            self._process(data)

    def _reply(self, batch: RespBatch) -> None:
        transport = self._transport
        if transport is None:
            return
        replies = batch.replies
        transport.write(replies[0] if len(replies) == 1 else b"".join(replies))
        self._active = time.monotonic()
        if batch.quit:
            self.close()

    def _update_reading(self) -> None:
        transport = self._transport
        if transport is None:
            return
        pause = self._write_paused or len(self._backlog) > self._state.limits.max_request_bytes
        if pause != self._read_paused:
            self._read_paused = pause
            if pause:
                transport.pause_reading()
            else:
                transport.resume_reading()

    def _refuse(self, reply: str, why: str) -> None:
        self._state.warnings.warning(
            "refused", "Redis-protocol client %s closed: %s", self._peer, why
        )
        if self._transport is not None:
            self._transport.write(error_line(reply))
        self.close()

    def check_deadlines(self, now: float) -> None:
        """Close the connection if a request stalled, or if it stayed idle too long."""
        if self.task is not None or self._transport is None:
            return
        limits = self._state.limits
        started = self._request_started
        if started is not None and now - started > limits.request_timeout:
            self._refuse(
                "ERR request incomplete for too long",
                f"a request still incomplete after {limits.request_timeout:g} s",
            )
        elif started is None and now - self._active > limits.idle_timeout:
            _log.debug("Redis-protocol client %s idle: closed", self._peer)
            self.close()

    def close(self) -> None:
        transport = self._transport
        if transport is not None:
            transport.close()
            self.connection_lost(None)


def _unacknowledge(batch: RespBatch, message: str) -> None:
    """Replace the replies that would acknowledge counts with an error."""
    refused = error_line(message)
    for index in batch.writes:
        batch.replies[index] = refused


def _token_check(tokens: ApiTokens) -> TokenCheck:
    def scope_of(token: str) -> Scope | None:
        # The HTTP header's form, so both front ends share one comparison.
        return tokens.scope_of(f"Bearer {token}") if token and " " not in token else None

    return scope_of


async def start_resp_server(
    backend: CounterBackend,
    commit: Callable[[], Awaitable[None]] | None,
    address: str,
    *,
    limits: RespLimits | None = None,
    tokens: ApiTokens | None = None,
    health: Callable[[], str | None] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    backlog: int = 1024,
) -> RespServer:
    """Bind ``address`` ("host:port", port 0 allowed) and answer Redis clients on it.

    ``backend`` is the node's :class:`~dcounter_node._counters.Counters` and ``commit`` its
    :meth:`~dcounter_node.Node.commit` (None for a node without a store, whose commit has
    nothing to wait for: replies then leave at once, without a task per batch). With
    ``tokens`` clients must ``AUTH`` with an API token; ``health`` says why writes are
    refused (storage failing) or None; with ``ssl_context`` the protocol runs over TLS.
    Raises OSError if ``address`` cannot be bound.
    """
    limits = limits if limits is not None else RespLimits()
    host, port = parse_address(address)
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, sockaddr = infos[0]
    sock = socket.create_server(sockaddr, family=family, backlog=backlog)
    bound_host, bound_port = sock.getsockname()[:2]
    shared = RespShared(port=bound_port)
    state = _ServerState(
        backend,
        commit,
        limits,
        shared,
        _token_check(tokens) if tokens is not None else None,
        health,
    )
    try:
        listener = await loop.create_server(
            lambda: _Connection(state), sock=sock, backlog=backlog, ssl=ssl_context
        )
    except BaseException:
        sock.close()
        raise
    state.sweeper = loop.create_task(state.run_sweeper(), name="resp-deadlines")
    return RespServer(format_address(bound_host, bound_port), shared, listener, state)

"""Connection limits of the HTTP API: a cap at accept, slow and idle clients closed.

aiohttp has knobs for part of this (``keepalive_timeout`` closes a keep-alive connection
that sends no new request; ``max_line_size``/``max_field_size``/``max_headers`` bound a
request head's size), but nothing bounds how many connections are open, or how long a
client may take to send a request head or body. :class:`ConnectionGuard` adds that around
aiohttp, without touching its internals:

* Each accepted connection is wrapped in :class:`_GuardedConnection`, an asyncio protocol
  that passes every event on to aiohttp's own protocol. Over ``max_connections`` it first
  evicts the oldest connection that never sent a byte; if there is none, the new one is
  answered ``503`` and closed before aiohttp sees it, so connections never run the process
  out of file descriptors.
* A wrapped request factory (``web.Server.request_factory``, public in aiohttp) tells the
  guard when a request's head is complete; its body is complete once the request's payload
  stream is at EOF.
* One sweep every fraction of a timeout closes connections past their deadline: no byte
  within ``idle_timeout`` of connecting, a head still incomplete ``header_timeout`` after its
  first byte, or a body still incomplete ``header_timeout`` after its head. Deadlines are
  kept as timestamps (one attribute write per request), not as timers per request.

:class:`ServerLog` is the logger handed to aiohttp: a malformed request becomes one warning
line without a traceback, and repeated lines of one kind are rate limited
(:class:`LogLimiter`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Final, cast

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from dcounter_node._ticker import Ticker

if TYPE_CHECKING:
    from aiohttp import StreamReader
    from prometheus_client.core import Metric

    from dcounter_node._http_limits import HTTPLimits

__all__ = [
    "GUARD_STATS_KEY",
    "ConnectionGuard",
    "GuardCollector",
    "GuardStats",
    "LogLimiter",
    "ServerLog",
]

_log = logging.getLogger(__name__)

#: Sent to a connection over the cap, then closed; clients see an ordinary HTTP answer.
_BUSY_BODY: Final = b'{"error": "too many connections; retry shortly"}'
_BUSY_RESPONSE: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: %d\r\n"
    b"Retry-After: 1\r\n"
    b"Connection: close\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY)
)
#: Longest piece of a client's bad input quoted in a log line.
_MAX_QUOTED: Final = 160


class LogLimiter:
    """At most ``burst`` log lines of one kind per ``interval`` seconds; counts the rest."""

    def __init__(
        self,
        *,
        burst: int = 5,
        interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._burst = burst
        self._interval = interval
        self._clock = clock
        # kind -> (window start, lines logged in it, lines suppressed since the last one)
        self._windows: dict[str, tuple[float, int, int]] = {}

    def allow(self, kind: str) -> int | None:
        """None to suppress this line; else how many of its kind were suppressed before it."""
        now = self._clock()
        start, logged, suppressed = self._windows.get(kind, (now, 0, 0))
        if now - start >= self._interval:
            start, logged = now, 0
        if logged >= self._burst:
            self._windows[kind] = (start, logged, suppressed + 1)
            return None
        self._windows[kind] = (start, logged + 1, 0)
        return suppressed


def _quote(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _MAX_QUOTED else flat[: _MAX_QUOTED - 3] + "..."


class GuardStats:
    """What the guard counted; read by :class:`GuardCollector` at scrape time."""

    def __init__(self) -> None:
        self.open = 0
        self.rejected = 0
        self.evicted = 0
        #: reason ("idle", "header", "body") -> connections closed past their deadline.
        self.timed_out: dict[str, int] = {"idle": 0, "header": 0, "body": 0}
        self.bad_requests = 0


class ServerLog(logging.LoggerAdapter[logging.Logger]):
    """The logger aiohttp's server uses: bad requests as one rate-limited line.

    aiohttp logs a request it cannot parse with ``logger.exception(...)`` (a traceback per
    request); here that becomes a single warning naming the client and the problem. Other
    records (a bug in a handler, say) pass through unchanged.
    """

    def __init__(self, logger: logging.Logger, limiter: LogLimiter, stats: GuardStats) -> None:
        super().__init__(logger, {})
        self._limiter = limiter
        self._stats = stats

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info")
        if exc is True:
            exc = None  # aiohttp always passes the exception itself
        if not isinstance(exc, HttpProcessingError):
            super().log(level, msg, *args, **kwargs)
            return
        self._stats.bad_requests += 1
        client = args[0] if args else "?"
        if level < logging.WARNING:  # aiohttp's choice for likely non-HTTP traffic
            if self.isEnabledFor(level):
                self.logger.log(level, "bad HTTP request from %s: %s", client, _quote(str(exc)))
            return
        suppressed = self._limiter.allow("bad request")
        if suppressed is None:
            return
        self.logger.warning(
            "bad HTTP request from %s: %d %s%s",
            client,
            exc.code,
            _quote(exc.message),
            f" ({suppressed} more since the last such line)" if suppressed else "",
        )


_AWAITING: Final = 0  # connected, nothing received yet
_HEAD: Final = 1  # a request head is arriving
_BODY: Final = 2  # head complete, body still arriving
_SERVED: Final = 3  # request received (being answered, or idle under aiohttp's keep-alive)
_CLOSED: Final = 4  # closed by the guard


class _GuardedConnection(asyncio.Protocol):
    """An accepted connection: aiohttp's protocol inside, phase and deadline outside."""

    __slots__ = ("_guard", "inner", "payload", "phase", "since", "transport")

    def __init__(self, guard: ConnectionGuard) -> None:
        self._guard = guard
        self.inner: asyncio.Protocol | None = None
        self.transport: asyncio.Transport | None = None
        self.payload: StreamReader | None = None
        self.phase = _AWAITING
        self.since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = cast("asyncio.Transport", transport)
        self.since = self._guard.now()
        self.inner = self._guard.admit(self)
        if self.inner is None:
            self.transport.write(_BUSY_RESPONSE)
            self.transport.close()
            return
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        inner = self.inner
        if inner is None:
            return
        phase = self.phase
        if phase == _AWAITING:
            self._guard.started(self)
            self.phase, self.since = _HEAD, self._guard.now()
        elif phase == _SERVED and (self.payload is None or self.payload.is_eof()):
            self.phase, self.since = _HEAD, self._guard.now()
        inner.data_received(data)

    def head_complete(self, payload: StreamReader) -> None:
        self.payload = payload
        if payload.is_eof():
            self.phase = _SERVED
        else:
            self.phase, self.since = _BODY, self._guard.now()

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.inner is not None:
            self._guard.forget(self)
            self.inner.connection_lost(exc)
            if self.phase == _AWAITING:
                self._guard.ended_unused(self)

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    def peer(self) -> str:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "?"


_RequestFactory = Callable[..., Any]


class ConnectionGuard:
    """Wraps an aiohttp ``web.Server``: see the module docstring.

    :meth:`server_log` goes to the runner as its ``logger``; :meth:`attach` takes the
    server once set up; :meth:`protocol_factory` goes to ``loop.create_server``;
    :meth:`start` and :meth:`close` bracket the deadline sweeps.
    """

    def __init__(
        self,
        limits: HTTPLimits,
        *,
        stats: GuardStats | None = None,
        limiter: LogLimiter | None = None,
    ) -> None:
        self.limits = limits
        self.stats = stats if stats is not None else GuardStats()
        self._factory: Callable[[], asyncio.Protocol] | None = None
        self._limiter = limiter if limiter is not None else LogLimiter()
        self._loop = asyncio.get_running_loop()
        self.now = self._loop.time
        self._open: dict[asyncio.Protocol, _GuardedConnection] = {}
        # Never-used connections, oldest first: the ones evicted when the cap is reached.
        self._awaiting: dict[_GuardedConnection, None] = {}
        # Sweeps run on the loop's timer heap while connections are open, and only then:
        # an idle node (no HTTP client) is not woken for them.
        self._started = False
        self._sweeper: Ticker | None = None

    def protocol_factory(self) -> asyncio.Protocol:
        """A new connection's protocol (pass this method to ``loop.create_server``)."""
        return _GuardedConnection(self)

    def attach(self, server: web.Server) -> None:
        """Serve ``server``'s connections through this guard (before it serves any)."""
        self._factory = server
        server.request_factory = self._wrap_request_factory(server.request_factory)

    def _wrap_request_factory(self, original: _RequestFactory) -> _RequestFactory:
        """``original`` (aiohttp's request factory) also telling the guard of each head."""
        lookup = self._open.get

        def make_request(
            message: Any, payload: StreamReader, protocol: asyncio.Protocol, *args: Any
        ) -> Any:
            connection = lookup(protocol)
            if connection is not None:
                connection.head_complete(payload)
            return original(message, payload, protocol, *args)

        return make_request

    def server_log(self) -> ServerLog:
        """The logger to give aiohttp's server (``logger=`` of the runner)."""
        return ServerLog(_log, self._limiter, self.stats)

    def start(self) -> None:
        """Begin checking deadlines (every sweep interval while a connection is open)."""
        self._started = True
        self._arm()

    async def close(self) -> None:
        """Stop checking deadlines (connections are closed by the server's shutdown)."""
        self._started = False
        self._disarm()

    def _arm(self) -> None:
        if self._started and self._sweeper is None and self._open:
            interval = self.limits.sweep_interval()
            self._sweeper = Ticker(
                self._loop, interval, self.sweep, first_delay=interval, what="HTTP deadlines"
            )

    def _disarm(self) -> None:
        if self._sweeper is not None:
            self._sweeper.stop()
            self._sweeper = None

    # -- connection bookkeeping ----------------------------------------------------------

    def admit(self, connection: _GuardedConnection) -> asyncio.Protocol | None:
        """aiohttp's protocol for a new connection, or None when it must be refused."""
        if len(self._open) >= self.limits.max_connections:
            oldest = next(iter(self._awaiting), None)
            if oldest is None:
                self.stats.rejected += 1
                self._warn(
                    "over cap",
                    "refused HTTP connection from %s: %d connections open (the maximum)",
                    connection.peer(),
                    len(self._open),
                )
                return None
            self.stats.evicted += 1
            self._close(oldest)
        if self._factory is None:
            raise RuntimeError("ConnectionGuard.attach() was not called")
        inner = self._factory()
        self._open[inner] = connection
        self._awaiting[connection] = None
        self.stats.open = len(self._open)
        self._arm()
        return inner

    def started(self, connection: _GuardedConnection) -> None:
        """``connection`` sent its first byte: no longer a candidate for eviction."""
        self._awaiting.pop(connection, None)

    def forget(self, connection: _GuardedConnection) -> None:
        """``connection`` is closed."""
        self._awaiting.pop(connection, None)
        if connection.inner is not None:
            self._open.pop(connection.inner, None)
        self.stats.open = len(self._open)
        if not self._open:
            self._disarm()

    def ended_unused(self, connection: _GuardedConnection) -> None:
        """``connection`` ended without sending a byte (closed by aiohttp, or the client)."""
        # aiohttp's keep-alive timer closes never-used connections at the idle timeout too,
        # usually just before the sweep would: count those as the guard's own.
        if self.now() - connection.since >= self.limits.idle_timeout:
            self.stats.timed_out["idle"] += 1

    def _close(self, connection: _GuardedConnection) -> None:
        connection.phase = _CLOSED
        self.forget(connection)
        if connection.transport is not None:
            connection.transport.abort()

    # -- deadlines -------------------------------------------------------------------------

    def sweep(self) -> None:
        """Close every connection past its deadline."""
        now = self.now()
        limits = self.limits
        for connection in list(self._open.values()):
            phase, age = connection.phase, now - connection.since
            if phase == _AWAITING and age > limits.idle_timeout:
                reason = "idle"
            elif phase == _HEAD and age > limits.header_timeout:
                reason = "header"
            elif phase == _BODY:
                if connection.payload is not None and connection.payload.is_eof():
                    connection.phase = _SERVED
                    continue
                if age <= limits.header_timeout:
                    continue
                reason = "body"
            else:
                continue
            self.stats.timed_out[reason] += 1
            if reason == "idle":
                _log.debug("closed HTTP connection from %s: no request", connection.peer())
            else:
                self._warn(
                    f"slow {reason}",
                    "closed HTTP connection from %s: request %s incomplete after %.3g s",
                    connection.peer(),
                    "head" if reason == "header" else "body",
                    age,
                )
            self._close(connection)

    def _warn(self, kind: str, message: str, *args: object) -> None:
        suppressed = self._limiter.allow(kind)
        if suppressed is None:
            return
        if suppressed:
            message += f" ({suppressed} more since the last such line)"
        _log.warning(message, *args)


GUARD_STATS_KEY: Final = web.AppKey("guard_stats", GuardStats)


class GuardCollector(Collector):
    """The ``dcounter_http_connections*`` series of one guard's :class:`GuardStats`."""

    def __init__(self, stats: GuardStats) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        """Read the counters now."""
        stats = self._stats
        yield GaugeMetricFamily(
            "dcounter_http_connections_open", "HTTP connections open now.", value=stats.open
        )
        yield CounterMetricFamily(
            "dcounter_http_connections_rejected",
            "HTTP connections answered 503 and closed: the connection cap was reached.",
            value=stats.rejected,
        )
        yield CounterMetricFamily(
            "dcounter_http_connections_evicted",
            "Never-used HTTP connections closed to make room under the connection cap.",
            value=stats.evicted,
        )
        timed_out = CounterMetricFamily(
            "dcounter_http_connections_timed_out",
            "HTTP connections closed past a deadline: idle (no request after connecting),"
            " header or body (request too slow).",
            labels=["reason"],
        )
        for reason, count in stats.timed_out.items():
            timed_out.add_metric([reason], count)
        yield timed_out
        yield CounterMetricFamily(
            "dcounter_http_bad_requests",
            "HTTP requests that could not be parsed (answered 400).",
            value=stats.bad_requests,
        )

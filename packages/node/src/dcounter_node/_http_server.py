"""Serving an HTTP application: bind, the connection guard in front, TLS, clean shutdown.

:func:`start_http_server` serves any aiohttp application (the node's API from
:func:`dcounter_node._http.create_app`) behind :class:`dcounter_node._http_guard.ConnectionGuard`.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from dcounter_node._http_guard import GUARD_STATS_KEY, ConnectionGuard
from dcounter_node._http_limits import HTTPLimits
from dcounter_node._setting_values import format_address, parse_address

if TYPE_CHECKING:
    import logging
    import ssl

__all__ = ["HTTPServer", "start_http_server"]


@dataclass(eq=False)
class HTTPServer:
    """A running aiohttp server; :attr:`address` is the real bound "host:port"."""

    address: str
    _runner: web.AppRunner
    _listener: asyncio.Server
    _guard: ConnectionGuard
    _closing: asyncio.Future[None] | None = None

    async def close(self) -> None:
        """Stop accepting, end open streams, wait for requests in flight; idempotent."""
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close())
        await asyncio.shield(self._closing)

    async def _close(self) -> None:
        self._listener.close()
        await self._guard.close()
        await self._runner.cleanup()


async def start_http_server(
    app: web.Application,
    address: str,
    *,
    access_log: logging.Logger | None = None,
    shutdown_timeout: float = 5.0,
    backlog: int = 1024,
    limits: HTTPLimits | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> HTTPServer:
    """Bind ``address`` ("host:port", port 0 allowed) and serve ``app`` on it.

    Raises OSError when the address cannot be bound (in use, not local, unresolvable).
    Access logging is off unless ``access_log`` is given. ``limits`` caps connections and
    bounds how long clients may take (see :mod:`dcounter_node._http_guard`). With
    ``ssl_context``: HTTPS.
    """
    limits = limits if limits is not None else HTTPLimits()
    host, port = parse_address(address)
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, sockaddr = infos[0]
    sock = socket.create_server(sockaddr, family=family, backlog=backlog)
    guard = ConnectionGuard(limits, stats=app.get(GUARD_STATS_KEY))
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=access_log,
        shutdown_timeout=shutdown_timeout,
        keepalive_timeout=limits.idle_timeout,
        logger=guard.server_log(),
    )
    try:
        await runner.setup()
        assert runner.server is not None  # set by setup()
        guard.attach(runner.server)
        # Our own listener rather than a web.SockSite: the guard's protocol goes in front.
        listener = await loop.create_server(
            guard.protocol_factory, sock=sock, backlog=backlog, ssl=ssl_context
        )
    except BaseException:
        sock.close()
        await runner.cleanup()
        raise
    guard.start()
    bound_host, bound_port = sock.getsockname()[:2]
    return HTTPServer(format_address(bound_host, bound_port), runner, listener, guard)

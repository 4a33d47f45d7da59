"""The node's HTTP API (aiohttp), served on the node's own event loop.

Routes (JSON in and out; every error is ``{"error": "..."}``):

* ``GET /counter``: value, this replica's id and the per-replica counts.
* ``GET /counter/value``: the value alone, as a decimal integer in text/plain.
* ``POST /increment``, ``POST /decrement``: optional body ``{"by": n}`` with an integer
  ``1 <= n < 2**64`` (empty body or ``{}``: 1); answers ``{"value": new value}`` once the
  change is committed (:meth:`Node.commit`). An ``Idempotency-Key`` header makes retries
  count once: a key seen before (within ``idempotency_ttl`` seconds and the last
  ``idempotency_keys`` keys) gets the first answer again, with ``Idempotent-Replayed: true``;
  the same key with another operation or amount is a 422.
* ``GET /peers``, ``POST /peers`` ``{"addr": "host:port"}`` (201 if new, 200 if known or
  this node itself), ``DELETE /peers/{addr}`` (404 if unknown).
* ``GET /health``: 200 ``{"status": "ok"}`` (503 while shutting down, and 503
  ``{"status": "storage failing", "reason": ...}`` while commits fail).
* ``GET /metrics``: Prometheus text format.
* ``GET /members`` (with membership): ``{"members": [{"address", "replica", "state",
  "incarnation", "since"}]}``, see :mod:`dcounter_node._membership_service`.
* ``GET /`` (the dashboard), ``GET /dashboard/{file}``, ``GET /cluster``: see
  :mod:`dcounter_node._dashboard`.
* ``GET /counter/watch``: server-sent events, ``data: {"value": n}`` now and on every change,
  a comment line every ``keepalive`` seconds, ended cleanly when the server shuts down.

Statuses: 400 malformed body, amount or address; 403 sent from a foreign browser origin
(:mod:`dcounter_node._http_origin`); 404 unknown route or peer; 405 wrong method; 408 the
request body stopped arriving; 409 the change would overflow this replica's count; 413 body
over ``client_max_size``; 421 a ``Host`` the node does not answer to
(:mod:`dcounter_node._host_policy`); 422 idempotency key reused for a different request;
503 node closed or the change could not be committed. With API tokens (``tokens``): 401
without a valid token, 403 when its scope is too low (see :mod:`dcounter_node._auth`).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web
from prometheus_client.exposition import choose_encoder

from dcounter_crdt import DEFAULT_KEY, CRDTError
from dcounter_node._auth import UNMATCHED_ROUTE, RefusalLog, require_token
from dcounter_node._committed_view import shown_state
from dcounter_node._dashboard import dashboard_routes
from dcounter_node._errors import (
    ConfigError,
    InvalidPeerAddressError,
    NodeClosedError,
    NodeError,
    StorageError,
)
from dcounter_node._http_answers import APIError as _APIError
from dcounter_node._http_answers import error_response as _error
from dcounter_node._http_answers import json_response as _json
from dcounter_node._http_answers import value_response as _value_response
from dcounter_node._http_counters import counter_routes, write_error
from dcounter_node._http_guard import GUARD_STATS_KEY, GuardCollector, GuardStats
from dcounter_node._http_host import HostGuard
from dcounter_node._http_origin import OriginGuard
from dcounter_node._http_server import HTTPServer, start_http_server
from dcounter_node._http_watch import event_stream, watched_values
from dcounter_node._idempotency import IdempotencyCache, KeyJournal
from dcounter_node._membership_service import MembershipCollector, members_route
from dcounter_node._metrics import ServiceStats, create_registry
from dcounter_node._node import Node
from dcounter_node._pruning_service import PruningCollector
from dcounter_node._resp_metrics import RespCollector
from dcounter_node._settings import parse_address

if TYPE_CHECKING:
    import ssl

    from prometheus_client import CollectorRegistry

    from dcounter_node._auth import ApiTokens
    from dcounter_node._membership_service import MembershipService
    from dcounter_node._pruning_service import PruningService
    from dcounter_node._resp_shared import RespShared
    from dcounter_node._storage import StorageHealth

__all__ = [
    "DEFAULT_MAX_BODY",
    "GUARD_STATS_KEY",
    "NODE_KEY",
    "SERVICE_STATS_KEY",
    "HTTPServer",
    "create_app",
    "start_http_server",
]

_log = logging.getLogger(__name__)

#: Largest request body accepted (413 beyond).
DEFAULT_MAX_BODY: Final = 64 * 1024
#: Amounts must fit the wire's uint64 counts.
_MAX_AMOUNT: Final = 2**64 - 1
#: Longest Idempotency-Key accepted.
_MAX_KEY_LENGTH: Final = 255
_COUNT_FIELDS: Final = frozenset({"by"})
_PEER_FIELDS: Final = frozenset({"addr"})

NODE_KEY: Final = web.AppKey("node", Node)
SERVICE_STATS_KEY: Final = web.AppKey("service_stats", ServiceStats)

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _guarded(
    handler: _Handler, stats: ServiceStats, route: str, origins: OriginGuard, hosts: HostGuard
) -> _Handler:
    """``handler`` answering every failure as a JSON error, and counting its responses.

    Requests from foreign browser origins are refused first (``origins``), then requests
    for hosts not served here (``hosts``), in this one wrapper. A wrapper per
    route rather than a middleware: aiohttp's middleware chain costs a noticeable share of
    a write's time, and unmatched paths and methods get their own routes (see
    :func:`_add_routes`), so nothing needs to sit in front of the router.
    """

    # Screened here rather than by a wrapper of their own: every coroutine layer costs a
    # measurable share of a write (issue 19).
    screen_host = hosts.screen if hosts.active else None

    async def guarded(request: web.Request) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        try:
            refusal = None if origin is None else origins.screen(request, origin)
            if refusal is None and screen_host is not None:
                refusal = screen_host(request)
            response = await handler(request) if refusal is None else refusal
        except _APIError as exc:
            response = _error(exc.status, exc.message, exc.headers)
        except ConnectionError:
            # The client left, or was cut off as too slow (see _http_guard), mid-request:
            # this answer reaches nobody (aiohttp drops it quietly) but is counted.
            response = _error(408, "the request did not arrive completely")
        except web.HTTPException as exc:  # e.g. 413 from request.read()
            if exc.status < 400:
                raise
            default = f"{exc.status}: {exc.reason}"
            message = exc.text if exc.text and exc.text != default else exc.reason
            response = _error(exc.status, message)
        except Exception:
            _log.exception("unexpected error serving %s %s", request.method, request.path)
            response = _error(500, "internal error")
        stats.record_response(request.method, route, response.status)
        return response

    return guarded


async def _not_found(request: web.Request) -> web.StreamResponse:
    raise _APIError(404, f"not found: {request.method} {request.path}")


def _method_not_allowed(allowed: str) -> _Handler:
    async def method_not_allowed(request: web.Request) -> web.StreamResponse:
        raise _APIError(
            405,
            f"method {request.method} not allowed on {request.path} (allowed: {allowed})",
            {"Allow": allowed},
        )

    return method_not_allowed


async def _read_json_object(request: web.Request, allowed: frozenset[str]) -> dict[str, Any]:
    """The body as a JSON object holding only ``allowed`` keys ({} for an empty body)."""
    body = await request.read()
    if not body.strip():
        return {}
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        raise _APIError(400, "body is not valid JSON") from None
    if not isinstance(document, dict):
        raise _APIError(400, "body must be a JSON object")
    unknown = document.keys() - allowed
    if unknown:
        raise _APIError(400, f"unknown field(s) in body: {', '.join(sorted(unknown))}")
    return document


def _amount(document: dict[str, Any]) -> int:
    by = document.get("by", 1)
    if type(by) is not int or not 1 <= by <= _MAX_AMOUNT:
        shown = json.dumps(by)
        if len(shown) > 40:
            shown = shown[:37] + "..."
        raise _APIError(400, f'"by" must be an integer from 1 to 2**64-1, got {shown}')
    return by


def _idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not 1 <= len(key) <= _MAX_KEY_LENGTH or not key.isprintable() or not key.isascii():
        raise _APIError(
            400, f"Idempotency-Key must be 1 to {_MAX_KEY_LENGTH} printable ASCII characters"
        )
    return key


@dataclass(eq=False)
class _API:
    node: Node
    stats: ServiceStats
    keys: IdempotencyCache
    keepalive: float
    registry: CollectorRegistry
    storage: StorageHealth | None = None
    closing: asyncio.Event = field(default_factory=asyncio.Event)

    # -- counter ------------------------------------------------------------------------

    def _storage_failing(self) -> bool:
        return self.storage is not None and self.storage.problem is not None

    def _shown_value(self, name: str = DEFAULT_KEY, live: int | None = None) -> int:
        """Counter ``name``'s value to show: ``live`` (default: the node's), or the committed
        value while storage fails."""
        storage = self.storage
        if storage is not None and storage.problem is not None:
            return storage.committed_counter(name).value
        return self.node.counters.value(name) if live is None else live

    async def counter(self, request: web.Request) -> web.Response:
        state = shown_state(self.storage, self.node.state)  # never uncommitted counts
        return _json(
            {
                "value": state.value,
                "replica": self.node.replica_id,
                "increments": dict(state.increments),
                "decrements": dict(state.decrements),
            }
        )

    async def value(self, request: web.Request) -> web.Response:
        # Exact at any size, unlike the float of /metrics and JSON parsers that use doubles.
        return web.Response(text=f"{self._shown_value()}\n")

    async def count(self, request: web.Request, op: str, name: str = DEFAULT_KEY) -> web.Response:
        """Count ``op`` on counter ``name`` as the request asks (body, Idempotency-Key)."""
        key = _idempotency_key(request)
        # Most writes carry no body: skip reading and parsing one.
        by = _amount(await _read_json_object(request, _COUNT_FIELDS)) if request.body_exists else 1
        if key is None:
            value = self._apply(op, by, name)
            await self._commit()
            return _value_response(value)
        entry = self.keys.get(key)
        if entry is None:
            self.keys.begin(key, (op, by, name))
            try:
                value = self._apply(op, by, name)
            except BaseException as exc:
                self.keys.abandon(key, exc)
                raise
            self.keys.complete(key, value)
            replayed = False
        else:
            if entry.fingerprint != (op, by, name):
                raise _APIError(422, "Idempotency-Key was already used for a different request")
            # shield: a duplicate giving up must not cancel the first request's outcome.
            value = await asyncio.shield(entry.result)
            self.stats.idempotent_replays += 1
            replayed = True
        # Every answer, a replay too, waits until the change is durable.
        await self._commit()
        response = _value_response(value)
        if replayed:
            response.headers["Idempotent-Replayed"] = "true"
        return response

    def _apply(self, op: str, by: int, name: str) -> int:
        if self.storage is not None and self.storage.problem is not None:
            raise _APIError(503, f"not counted: storage is failing: {self.storage.problem}")
        try:
            if name == DEFAULT_KEY:
                # The default counter's hot path: no lookup by name.
                node = self.node
                value = node.increment(by) if op == "increment" else node.decrement(by)
            elif op == "increment":
                value = self.node.counters.increment(name, by)
            else:
                value = self.node.counters.decrement(name, by)
        except CRDTError as exc:
            raise write_error(op, by, name, exc) from None
        except NodeError as exc:  # closed, or not started yet
            raise _APIError(503, f"node is not running: {exc}") from None
        self.stats.record_operation(op, by)
        return value

    async def _commit(self) -> None:
        try:
            await self.node.commit()
        except NodeClosedError:
            raise _APIError(503, "node is shutting down") from None
        except StorageError as exc:
            _log.error("commit failed: %s", exc)
            raise _APIError(503, f"change not persisted: {exc}") from None

    # -- peers --------------------------------------------------------------------------

    def _peers_response(self, status: int = 200) -> web.Response:
        return _json({"peers": self.node.peers.peers()}, status)

    async def list_peers(self, request: web.Request) -> web.Response:
        return self._peers_response()

    async def add_peer(self, request: web.Request) -> web.Response:
        document = await _read_json_object(request, _PEER_FIELDS)
        address = _peer_address(document.get("addr"))
        try:
            added = self.node.peers.add(address)
        except InvalidPeerAddressError as exc:
            raise _APIError(400, str(exc)) from None
        if added:
            _log.info("peer %s added through the API", address)
        return self._peers_response(201 if added else 200)

    async def remove_peer(self, request: web.Request) -> web.Response:
        address = _peer_address(request.match_info["addr"])
        if not self.node.peers.remove(address):
            raise _APIError(404, f"unknown peer {address}")
        _log.info("peer %s removed through the API", address)
        return self._peers_response()

    # -- operations ---------------------------------------------------------------------

    async def health(self, request: web.Request) -> web.Response:
        if self.closing.is_set():
            return _json({"status": "shutting down"}, 503)
        if self.storage is not None and self.storage.problem is not None:
            return _json({"status": "storage failing", "reason": self.storage.problem}, 503)
        return _json({"status": "ok"})

    async def metrics(self, request: web.Request) -> web.Response:
        # The client library's own negotiation: Prometheus text 0.0.4 unless the scraper
        # asks for OpenMetrics.
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encode(self.registry), headers={"Content-Type": content_type})

    async def watch(self, request: web.Request) -> web.StreamResponse:
        return await self.stream(request, DEFAULT_KEY)

    async def stream(self, request: web.Request, name: str) -> web.StreamResponse:
        """Server-sent events of counter ``name``'s value (see the module docstring)."""
        values = watched_values(
            self.node.counters.watch(name, initial=False),
            functools.partial(self._shown_value, name),
            failing=self._storage_failing,
            closing=self.closing,
            keepalive=self.keepalive,
        )
        return await event_stream(request, values)


def _peer_address(value: object) -> str:
    if not isinstance(value, str):
        raise _APIError(400, '"addr" must be a "host:port" string')
    try:
        parse_address(value, allow_port_zero=False)
    except ConfigError as exc:
        raise _APIError(400, f"bad peer address: {exc}") from None
    return value


def create_app(
    node: Node,
    *,
    client_max_size: int = DEFAULT_MAX_BODY,
    idempotency_keys: int = 100_000,
    idempotency_ttl: float = 24 * 3600.0,
    keepalive: float = 15.0,
    peer_http: Mapping[str, str] | None = None,
    storage: StorageHealth | None = None,
    key_journal: KeyJournal | None = None,
    allowed_origins: Iterable[str] = (),
    allowed_hosts: Iterable[str] = (),
    listen_host: str | None = None,
    tokens: ApiTokens | None = None,
    peer_ssl: ssl.SSLContext | None = None,
    members: MembershipService | None = None,
    pruning: PruningService | None = None,
    resp: RespShared | None = None,
) -> web.Application:
    """The HTTP API of ``node`` as an aiohttp application (see the module docstring).

    ``peer_http`` maps peers' gossip addresses to their HTTP addresses (for ``/cluster``).
    ``storage`` (the node's store) makes writes, ``/health`` and ``/counter`` follow its
    health; ``key_journal`` keeps Idempotency-Keys durably (both: the node's SQLiteStore).
    Requests from browser pages of other origins than the node's own and
    ``allowed_origins`` are refused with 403 (:mod:`dcounter_node._http_origin`), and
    requests naming other hosts than ``allowed_hosts`` with 421; without ``allowed_hosts``,
    an API listening on the loopback host ``listen_host`` serves only loopback names
    (:mod:`dcounter_node._host_policy`).
    With ``tokens``, requests need a token of the route's scope (:mod:`dcounter_node._auth`);
    with ``peer_ssl`` (a client context), ``/cluster`` asks peers over HTTPS.

    ``members`` (the node's membership) adds ``GET /members`` and its metrics; ``pruning``
    the pruning metrics; ``resp`` (the Redis-protocol server's counts) its metrics.

    ``app[SERVICE_STATS_KEY]`` holds the service's counters; ``app[NODE_KEY]`` the node.
    """
    stats = ServiceStats()
    api = _API(
        node,
        stats,
        IdempotencyCache(max_keys=idempotency_keys, ttl=idempotency_ttl, journal=key_journal),
        keepalive,
        create_registry(node, stats, storage),
        storage,
    )
    app = web.Application(client_max_size=client_max_size)
    origins = OriginGuard(app, allowed_origins)
    hosts = HostGuard(allowed_hosts, listen_host)
    app[NODE_KEY] = node
    app[SERVICE_STATS_KEY] = stats
    app[GUARD_STATS_KEY] = GuardStats()
    api.registry.register(GuardCollector(app[GUARD_STATS_KEY]))
    routes: dict[str, dict[str, _Handler]] = {
        "/counter": {"GET": api.counter},
        "/counter/value": {"GET": api.value},
        "/counter/watch": {"GET": api.watch},
        # Partials, not methods that await count(): one coroutine less per write (issue 19).
        "/increment": {"POST": functools.partial(api.count, op="increment")},
        "/decrement": {"POST": functools.partial(api.count, op="decrement")},
        "/peers": {"GET": api.list_peers, "POST": api.add_peer},
        "/peers/{addr}": {"DELETE": api.remove_peer},
        "/health": {"GET": api.health},
        "/metrics": {"GET": api.metrics},
    }
    routes.update(counter_routes(api))
    routes.update(dashboard_routes(app, node, stats, peer_http or {}, peer_ssl, storage))

    if members is not None:
        api.registry.register(MembershipCollector(members))
        routes["/members"] = {"GET": members_route(members)}
    if pruning is not None:
        api.registry.register(PruningCollector(pruning))
    if resp is not None:
        api.registry.register(RespCollector(resp))
    _add_routes(app, routes, stats, checks=_Checks(hosts, origins, tokens))

    async def begin_shutdown(app: web.Application) -> None:
        api.closing.set()

    app.on_shutdown.append(begin_shutdown)
    return app


@dataclass(frozen=True)
class _Checks:
    """What every request passes before its handler: its Host, its origin, its token."""

    hosts: HostGuard
    origins: OriginGuard
    tokens: ApiTokens | None
    refusals: RefusalLog = field(default_factory=RefusalLog)

    def wrap(self, handler: _Handler, stats: ServiceStats, method: str, path: str) -> _Handler:
        route = "unmatched" if path == UNMATCHED_ROUTE else path
        if self.tokens is not None:
            handler = require_token(self.tokens, method, path, handler, self.refusals)
        return _guarded(handler, stats, route, self.origins, self.hosts)


def _add_routes(
    app: web.Application,
    routes: Mapping[str, Mapping[str, _Handler]],
    stats: ServiceStats,
    *,
    checks: _Checks,
) -> None:
    """Route every path's methods (GET also answers HEAD), 405 for its other methods, and
    404 for every other path, each behind ``checks``."""
    for path, methods in routes.items():
        resource = app.router.add_resource(path)
        handlers = dict(methods)
        if "GET" in handlers and not path.endswith("/watch"):  # a stream has no HEAD
            handlers["HEAD"] = handlers["GET"]
        for method, handler in handlers.items():
            resource.add_route(method, checks.wrap(handler, stats, method, path))
        allowed = ", ".join(sorted(handlers))
        # Explicit methods win over "*" in aiohttp's resolution: this one answers the rest.
        not_allowed = checks.wrap(_method_not_allowed(allowed), stats, "*", path)
        resource.add_route("*", not_allowed)
    not_found = checks.wrap(_not_found, stats, "*", UNMATCHED_ROUTE)
    app.router.add_route("*", "/{tail:.*}", not_found)

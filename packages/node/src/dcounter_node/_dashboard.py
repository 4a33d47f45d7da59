"""The live dashboard: the page at ``GET /``, its assets, and ``GET /cluster``.

The page is static (``dashboard/`` beside this module, package data: no build step, no
CDN) and served under a strict Content-Security-Policy; its script reads
``/counter/watch`` and polls ``/cluster``, which asks each peer whose HTTP address this
node was given (``--peer-http``) for its counts. What those answers mean is decided in
:mod:`dcounter_node._cluster`. Peers are asked with the ``Authorization`` header of the
request that started the round (nodes of a cluster share their API tokens), and over HTTPS
when this node was given a client context for it (``peer_ssl``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import TYPE_CHECKING, Any, Final

import aiohttp
from aiohttp import web

from dcounter_crdt import CounterState, CRDTError
from dcounter_node._cluster import PeerReport, cluster_document
from dcounter_node._committed_view import shown_state

if TYPE_CHECKING:
    import ssl
    from collections.abc import Mapping

    from dcounter_node._metrics import ServiceStats
    from dcounter_node._node import Node
    from dcounter_node._storage import StorageHealth

__all__ = ["CONTENT_SECURITY_POLICY", "dashboard_routes"]


#: Everything the page needs comes from the node itself; nothing inline, nothing framed.
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self';"
    " connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_ASSETS: Final = {
    "dashboard.js": "text/javascript",
    "dashboard.css": "text/css",
    "favicon.svg": "image/svg+xml",
}
#: How long one peer may take to answer ``GET /counter``.
_PEER_TIMEOUT: Final = 2.0
#: Largest ``GET /counter`` answer read from a peer.
_MAX_PEER_BODY: Final = 4 * 1024 * 1024
#: Dashboards polling at once share one round of peer requests this fresh.
_REUSE_FOR: Final = 0.5
#: Peers asked at once.
_CONCURRENT_PEERS: Final = 16

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _asset(name: str) -> bytes:
    return resources.files("dcounter_node").joinpath("dashboard", name).read_bytes()


def _static(body: bytes, content_type: str) -> web.Response:
    return web.Response(
        body=body,
        headers={
            "Content-Type": f"{content_type}; charset=utf-8",
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            # Small files: always revalidated, so an upgraded node serves its own page.
            "Cache-Control": "no-cache",
        },
    )


class _ClusterView:
    """Answers ``GET /cluster``; one round of peer requests serves concurrent pollers."""

    def __init__(
        self,
        node: Node,
        stats: ServiceStats,
        peer_http: Mapping[str, str],
        peer_ssl: ssl.SSLContext | None = None,
        storage: StorageHealth | None = None,
    ) -> None:
        self._node = node
        self._storage = storage
        self._stats = stats
        self._peer_http = dict(peer_http)
        self._scheme = "http" if peer_ssl is None else "https"
        self._ssl: ssl.SSLContext | bool = True if peer_ssl is None else peer_ssl
        self._session: aiohttp.ClientSession | None = None
        self._round: asyncio.Task[dict[str, Any]] | None = None
        self._round_ended = -_REUSE_FOR

    async def handle(self, request: web.Request) -> web.Response:
        loop = asyncio.get_running_loop()
        if self._round is None or (
            self._round.done() and loop.time() - self._round_ended > _REUSE_FOR
        ):
            self._round = asyncio.ensure_future(self._gather(request.headers.get("Authorization")))
            self._round.add_done_callback(self._ended)
        # shield: one poller going away must not cancel the round the others wait for.
        document = await asyncio.shield(self._round)
        return web.Response(
            body=json.dumps(document).encode(),
            content_type="application/json",
            headers={"Cache-Control": "no-store"},
        )

    def _ended(self, task: asyncio.Task[dict[str, Any]]) -> None:
        self._round_ended = asyncio.get_running_loop().time()

    async def _gather(self, authorization: str | None) -> dict[str, Any]:
        node = self._node
        peers = node.peers.peers()
        contacts = node.stats.snapshot().last_contact
        now = time.time()
        limit = asyncio.Semaphore(_CONCURRENT_PEERS)

        async def report(gossip: str) -> PeerReport:
            contact = contacts.get(gossip)
            last_contact = None if contact is None else max(0.0, now - contact)
            http = self._peer_http.get(gossip)
            if http is None:
                return PeerReport(gossip, last_contact=last_contact)
            async with limit:
                state, error = await self._ask(http, authorization)
            return PeerReport(gossip, http, state, error, last_contact)

        reports = await asyncio.gather(*(report(gossip) for gossip in peers))
        sync_interval = node.config.sync_interval
        return cluster_document(
            gossip=node.address,
            replica=node.replica_id,
            own=shown_state(self._storage, node.state),
            writes=sum(self._stats.operations.values()),
            reports=reports,
            silent_after=max(5.0, 5 * sync_interval),
        )

    async def _ask(
        self, http: str, authorization: str | None
    ) -> tuple[CounterState | None, str | None]:
        """The counts a peer's API reports, or None and why not."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=_PEER_TIMEOUT)
            )
        try:
            headers = {"Authorization": authorization} if authorization else None
            async with self._session.get(
                f"{self._scheme}://{http}/counter", headers=headers, ssl=self._ssl
            ) as response:
                if response.status != 200:
                    return None, f"HTTP {response.status}"
                body = await _read_at_most(response, _MAX_PEER_BODY)
        except TimeoutError:
            return None, f"no answer within {_PEER_TIMEOUT:g} s"
        except aiohttp.ClientConnectorError as exc:
            return None, f"unreachable: {exc.os_error.strerror or exc.os_error}"
        except (aiohttp.ClientError, OSError) as exc:
            return None, f"unreachable: {type(exc).__name__}"
        if body is None:
            return None, f"answer over {_MAX_PEER_BODY} bytes"
        try:
            document = json.loads(body)
            return CounterState.from_maps(document["increments"], document["decrements"]), None
        except (ValueError, RecursionError, KeyError, TypeError, CRDTError):
            return None, "answer is not a counter"

    async def close(self) -> None:
        if self._round is not None and not self._round.done():
            self._round.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._round
        if self._session is not None:
            await self._session.close()


async def _read_at_most(response: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The body, or None once it grows past ``limit`` bytes (without reading further)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_any():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def dashboard_routes(
    app: web.Application,
    node: Node,
    stats: ServiceStats,
    peer_http: Mapping[str, str],
    peer_ssl: ssl.SSLContext | None = None,
    storage: StorageHealth | None = None,
) -> dict[str, dict[str, _Handler]]:
    """The dashboard's routes (path -> method -> handler) for ``app``'s route table.

    ``peer_http`` maps peers' gossip addresses to their HTTP API addresses; with
    ``peer_ssl`` they are asked over HTTPS, verified with that client context. With
    ``storage``, this node's own counts are the committed ones while commits fail.
    """
    page = _asset("index.html")
    assets = {name: (_asset(name), kind) for name, kind in _ASSETS.items()}
    view = _ClusterView(node, stats, peer_http, peer_ssl, storage)

    async def index(request: web.Request) -> web.StreamResponse:
        return _static(page, "text/html")

    async def asset(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in assets:
            raise web.HTTPNotFound(text=f"no dashboard file {name!r}")
        return _static(*assets[name])

    async def close_view(app: web.Application) -> None:
        await view.close()

    app.on_cleanup.append(close_view)
    return {
        "/": {"GET": index},
        "/dashboard/{name}": {"GET": asset},
        "/cluster": {"GET": view.handle},
    }

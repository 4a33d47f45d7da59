"""The dashboard's routes over HTTP, in process: the page, its assets, GET /cluster."""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp import web

from dcounter_node._dashboard import CONTENT_SECURITY_POLICY
from dcounter_node._http import start_http_server

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from tests.conftest import WaitUntil
    from tests.service.conftest import Api, ApiFactory

    Serve = Callable[[web.Application], Awaitable[str]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Serve a stand-in peer's aiohttp app on a free port; stopped after the test."""
    servers = []

    async def start(app: web.Application) -> str:
        server = await start_http_server(app, "127.0.0.1:0")
        servers.append(server)
        return server.address

    yield start
    for server in servers:
        await server.close()


def _peer_answering(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> web.Application:
    app = web.Application()
    app.router.add_get("/counter", handler)
    return app


async def _cluster(api: Api) -> Any:
    status, body, _ = await api.request("GET", "/cluster")
    assert status == 200
    assert isinstance(body, dict)
    return body


# -- the page ------------------------------------------------------------------------------


async def test_the_page_is_served_under_a_strict_content_security_policy(api: Api) -> None:
    async with api.session.get(api.url + "/") as response:
        assert response.status == 200
        assert response.content_type == "text/html"
        assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        html = await response.text()
    assert "script-src 'self';" in CONTENT_SECURITY_POLICY
    assert "unsafe" not in CONTENT_SECURITY_POLICY
    # Nothing inline that the policy would block: scripts by src only, no handlers, no styles.
    assert re.findall(r"<script(?![^>]*\bsrc=)", html) == []
    assert re.findall(r"\s(?:on\w+|style)=", html) == []
    for testid in ("counter-value", "replicas", "peers", "convergence"):
        assert f'data-testid="{testid}"' in html


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("dashboard.js", "text/javascript"),
        ("dashboard.css", "text/css"),
        ("favicon.svg", "image/svg+xml"),
    ],
)
async def test_assets_are_package_data(api: Api, name: str, content_type: str) -> None:
    async with api.session.get(f"{api.url}/dashboard/{name}") as response:
        assert response.status == 200
        assert response.content_type == content_type
        assert len(await response.read()) > 100


async def test_unknown_assets_and_methods_are_json_errors(api: Api) -> None:
    status, body, _ = await api.request("GET", "/dashboard/secrets.txt")
    assert (status, body) == (404, {"error": "no dashboard file 'secrets.txt'"})
    status, body, response = await api.request("POST", "/")
    assert status == 405
    assert response.headers["Allow"] == "GET, HEAD"
    status, _, _ = await api.request("HEAD", "/")
    assert status == 200


# -- GET /cluster --------------------------------------------------------------------------


async def test_cluster_compares_this_node_with_peers_over_their_http_apis(
    make_api: ApiFactory, wait_until: WaitUntil
) -> None:
    b = await make_api()
    a = await make_api(peer_http={b.node.address: b.server.address})
    a.node.peers.add(b.node.address)
    b.node.peers.add(a.node.address)
    status, _, _ = await b.request("POST", "/increment", json={"by": 4})
    assert status == 200

    async def converged() -> bool:
        return bool((await _cluster(a))["convergence"]["status"] == "converged")

    await wait_until(converged, what="A's /cluster to say converged")
    document = await _cluster(a)
    assert document["node"] == {
        "gossip": a.node.address,
        "replica": a.node.replica_id,
        "value": 4,
        "contribution": 0,
        "increments": {b.node.replica_id: 4},
        "decrements": {},
        "writes": 0,
    }
    [peer] = document["peers"]
    assert peer["gossip"] == b.node.address
    assert peer["http"] == b.server.address
    assert (peer["status"], peer["value"], peer["in_sync"], peer["error"]) == ("up", 4, True, None)
    assert (await _cluster(b))["node"]["writes"] == 1


async def test_cluster_says_by_how_much_a_peer_diverged(make_api: ApiFactory) -> None:
    b = await make_api()
    # A reaches B's API but not its gossip (port 9 answers nothing): B's write stays on B.
    a = await make_api(peer_http={"127.0.0.1:9": b.server.address})
    a.node.peers.add("127.0.0.1:9")
    status, _, _ = await b.request("POST", "/increment", json={"by": 5})
    assert status == 200
    document = await _cluster(a)
    assert document["convergence"]["label"] == "diverged by 5"
    [peer] = document["peers"]
    assert (peer["status"], peer["value"], peer["in_sync"]) == ("up", 5, False)


async def test_a_peer_that_stopped_is_down(make_api: ApiFactory) -> None:
    b = await make_api()
    a = await make_api(peer_http={b.node.address: b.server.address})
    a.node.peers.add(b.node.address)
    await b.server.close()
    [peer] = (await _cluster(a))["peers"]
    assert peer["status"] == "down"
    assert peer["error"].startswith("unreachable: ")
    assert (await _cluster(a))["convergence"]["label"] == "unknown: 0 of 1 peers answered"


async def test_peers_without_an_http_address_are_judged_by_gossip(api: Api) -> None:
    api.node.peers.add("127.0.0.1:9")
    [peer] = (await _cluster(api))["peers"]
    assert (peer["http"], peer["status"], peer["value"], peer["last_contact"]) == (
        None,
        "unknown",
        None,
        None,
    )


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (web.json_response({"value": 1}), "answer is not a counter"),
        (web.json_response({"increments": {"x": -1}, "decrements": {}}), "answer is not a counter"),
        (web.Response(text="[[[", content_type="application/json"), "answer is not a counter"),
        (web.json_response({"error": "boom"}, status=500), "HTTP 500"),
    ],
)
async def test_a_peer_answering_garbage_is_down_with_the_reason(
    make_api: ApiFactory, serve: Serve, answer: web.Response, error: str
) -> None:
    async def counter(request: web.Request) -> web.Response:
        return answer

    peer = await serve(_peer_answering(counter))
    api = await make_api(peer_http={"127.0.0.1:9": peer})
    api.node.peers.add("127.0.0.1:9")
    [report] = (await _cluster(api))["peers"]
    assert (report["status"], report["error"]) == ("down", error)


async def test_a_peer_that_never_answers_costs_one_timeout(
    make_api: ApiFactory, serve: Serve
) -> None:
    release = asyncio.Event()

    async def counter(request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response({"increments": {}, "decrements": {}})

    peer = await serve(_peer_answering(counter))
    api = await make_api(peer_http={"127.0.0.1:9": peer})
    api.node.peers.add("127.0.0.1:9")
    try:
        [report] = (await _cluster(api))["peers"]
    finally:
        release.set()
    assert (report["status"], report["error"]) == ("down", "no answer within 2 s")

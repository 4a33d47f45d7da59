"""The API with tokens and over HTTPS, served in-process."""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

import aiohttp
import httpx
import pytest
import trustme

from dcounter_node import ConfigError, Node
from dcounter_node._auth import ApiTokens, Scope
from dcounter_node._http import SERVICE_STATS_KEY, create_app, start_http_server
from dcounter_node._security import HTTPSecurity, HTTPSFiles, server_ssl_context
from dcounter_protocol._tcp import TCPTransport

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable
    from pathlib import Path

    from tests.service.conftest import Api, ApiFactory, ServerCert

    from dcounter_node._http import HTTPServer

    ServeHTTPS = Callable[[HTTPSFiles], Awaitable[tuple[str, Node]]]

READ = "read-6c1f0e9a2b7d"
WRITE = "write-0d4a8e2c9f1b"
ADMIN = "admin-5e7b3a1f8c2d"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def api(make_api: ApiFactory) -> Api:
    tokens = ApiTokens([(Scope.READ, READ), (Scope.WRITE, WRITE), (Scope.ADMIN, ADMIN)])
    return await make_api(tokens=tokens)


@pytest.mark.parametrize("header", [None, "Bearer not-a-token", f"Basic {ADMIN}", "Bearer "])
async def test_a_missing_or_unknown_token_gets_401_with_a_bearer_challenge(
    api: Api, header: str | None
) -> None:
    headers = {"Authorization": header} if header is not None else {}
    status, body, response = await api.request("GET", "/counter", headers=headers)
    assert status == 401
    assert "API token" in body["error"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_a_read_token_reads_but_may_not_write(api: Api) -> None:
    status, body, _ = await api.request("GET", "/counter", headers=_bearer(READ))
    assert (status, body["value"]) == (200, 0)
    status, body, response = await api.request("POST", "/increment", headers=_bearer(READ))
    assert status == 403
    assert "write scope" in body["error"]
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
    assert api.node.value == 0


async def test_a_write_token_writes_but_may_not_change_peers(api: Api) -> None:
    status, body, _ = await api.request(
        "POST", "/increment", json={"by": 5}, headers=_bearer(WRITE)
    )
    assert (status, body) == (200, {"value": 5})
    status, body, _ = await api.request("POST", "/decrement", headers=_bearer(WRITE))
    assert (status, body) == (200, {"value": 4})
    status, _, _ = await api.request(
        "POST", "/peers", json={"addr": "127.0.0.1:9"}, headers=_bearer(WRITE)
    )
    assert status == 403
    assert api.node.peers.peers() == []


async def test_an_admin_token_manages_peers(api: Api) -> None:
    status, body, _ = await api.request(
        "POST", "/peers", json={"addr": "127.0.0.1:9"}, headers=_bearer(ADMIN)
    )
    assert (status, body) == (201, {"peers": ["127.0.0.1:9"]})
    status, _, _ = await api.request("DELETE", "/peers/127.0.0.1:9", headers=_bearer(WRITE))
    assert status == 403
    status, body, _ = await api.request("DELETE", "/peers/127.0.0.1:9", headers=_bearer(ADMIN))
    assert (status, body) == (200, {"peers": []})


async def test_health_and_the_dashboard_page_stay_open(api: Api) -> None:
    for path in ("/health", "/", "/dashboard/dashboard.js"):
        status, _, _ = await api.request("GET", path)
        assert status == 200, path


@pytest.mark.parametrize("path", ["/metrics", "/cluster", "/peers", "/counter/watch"])
async def test_read_views_need_a_token(api: Api, path: str) -> None:
    status, _, _ = await api.request("GET", path)
    assert status == 401
    if path != "/counter/watch":  # a stream that would not end by itself
        status, _, _ = await api.request("GET", path, headers=_bearer(READ))
        assert status == 200


async def test_a_valid_token_learns_404_and_405_but_no_token_learns_nothing(api: Api) -> None:
    assert (await api.request("GET", "/nowhere"))[0] == 401
    assert (await api.request("GET", "/nowhere", headers=_bearer(READ)))[0] == 404
    assert (await api.request("PUT", "/counter"))[0] == 401
    assert (await api.request("PUT", "/counter", headers=_bearer(READ)))[0] == 405


async def test_refusals_are_counted_like_other_responses(api: Api) -> None:
    await api.request("POST", "/increment", headers=_bearer(READ))
    await api.request("GET", "/counter")
    responses = api.server._runner.app[SERVICE_STATS_KEY].responses
    assert responses["POST", "/increment", 403] == 1
    assert responses["GET", "/counter", 401] == 1


async def test_without_tokens_the_api_stays_open(make_api: ApiFactory) -> None:
    api = await make_api()
    status, body, _ = await api.request("POST", "/increment")
    assert (status, body) == (200, {"value": 1})


# -- HTTPS ------------------------------------------------------------------------------------


@pytest.fixture
async def serve_https() -> AsyncIterator[Callable[[HTTPSFiles], Awaitable[tuple[str, Node]]]]:
    """``await serve_https(files)``: a node whose API takes a write token, over HTTPS."""
    started: list[tuple[Node, HTTPServer]] = []

    async def serve(files: HTTPSFiles) -> tuple[str, Node]:
        node = Node(TCPTransport("127.0.0.1:0"))
        await node.start()
        server = await start_http_server(
            create_app(node, tokens=ApiTokens([(Scope.WRITE, WRITE)])),
            "127.0.0.1:0",
            ssl_context=server_ssl_context(files),
        )
        started.append((node, server))
        return f"https://{server.address}", node

    yield serve
    for node, server in started:
        await server.close()
        await node.close()


async def test_https_serves_the_api_to_a_client_trusting_the_ca(
    server_cert: ServerCert, serve_https: ServeHTTPS
) -> None:
    url, node = await serve_https(HTTPSFiles(str(server_cert.cert), str(server_cert.key)))
    verify = server_cert.client_context()
    async with httpx.AsyncClient(verify=verify, headers=_bearer(WRITE)) as client:
        response = await client.post(url + "/increment", json={"by": 3})
        assert (response.status_code, response.json()) == (200, {"value": 3})
        response = await client.get(url + "/counter")
        assert response.json()["value"] == 3
    assert node.value == 3


async def test_https_is_refused_by_a_client_that_does_not_trust_the_ca(
    server_cert: ServerCert, serve_https: ServeHTTPS
) -> None:
    url, node = await serve_https(HTTPSFiles(str(server_cert.cert), str(server_cert.key)))
    other = ssl.create_default_context()
    trustme.CA().configure_trust(other)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await session.post(url + "/increment", headers=_bearer(WRITE), ssl=other)
    assert node.value == 0


async def test_plain_http_to_the_https_port_gets_no_answer(
    server_cert: ServerCert, serve_https: ServeHTTPS
) -> None:
    url, node = await serve_https(HTTPSFiles(str(server_cert.cert), str(server_cert.key)))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        with pytest.raises(aiohttp.ClientError):
            await session.post(url.replace("https", "http") + "/increment", headers=_bearer(WRITE))
    assert node.value == 0


async def test_client_certificates_are_optional_but_must_be_the_cas_when_presented(
    server_cert: ServerCert, serve_https: ServeHTTPS, tmp_path: Path
) -> None:
    files = HTTPSFiles(str(server_cert.cert), str(server_cert.key), str(server_cert.ca_cert))
    url, node = await serve_https(files)

    def client(ca: trustme.CA | None) -> httpx.AsyncClient:
        context = server_cert.client_context()
        if ca is not None:
            ca.issue_cert("client@example.com").configure_cert(context)
        return httpx.AsyncClient(verify=context, headers=_bearer(WRITE))

    async with client(None) as anonymous, client(server_cert.ca) as member:
        assert (await anonymous.post(url + "/increment")).status_code == 200
        assert (await member.post(url + "/increment")).status_code == 200
    async with client(trustme.CA()) as stranger:
        with pytest.raises(httpx.TransportError):
            await stranger.post(url + "/increment")
    assert node.value == 2


def test_an_unusable_certificate_is_a_config_error(server_cert: ServerCert, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the HTTPS certificate"):
        server_ssl_context(HTTPSFiles(str(tmp_path / "missing.pem"), str(server_cert.key)))
    other_key = tmp_path / "other-key.pem"
    trustme.CA().issue_cert("localhost").private_key_pem.write_to_path(other_key)
    with pytest.raises(ConfigError, match="the key does not match"):
        server_ssl_context(HTTPSFiles(str(server_cert.cert), str(other_key)))


async def test_reload_serves_a_rotated_certificate_to_new_connections(
    server_cert: ServerCert, tmp_path: Path
) -> None:
    files = HTTPSFiles(str(server_cert.cert), str(server_cert.key))
    security = HTTPSecurity(server_ssl_context(files), None, files)
    node = Node(TCPTransport("127.0.0.1:0"))
    await node.start()
    server = await start_http_server(
        create_app(node), "127.0.0.1:0", ssl_context=security.ssl_context
    )
    try:
        url = f"https://{server.address}/health"
        new_ca = trustme.CA()
        issued = new_ca.issue_cert("127.0.0.1")
        server_cert.cert.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
        issued.private_key_pem.write_to_path(server_cert.key)
        trusts_new = ssl.create_default_context()
        new_ca.configure_trust(trusts_new)
        async with httpx.AsyncClient(verify=trusts_new) as client:
            with pytest.raises(httpx.ConnectError):
                await client.get(url)
        security.reload()
        async with httpx.AsyncClient(verify=trusts_new) as client:
            assert (await client.get(url)).status_code == 200
    finally:
        await server.close()
        await node.close()


async def test_cluster_asks_https_peers_with_the_callers_token(
    server_cert: ServerCert, serve_https: ServeHTTPS, make_api: ApiFactory
) -> None:
    url, peer = await serve_https(HTTPSFiles(str(server_cert.cert), str(server_cert.key)))
    peer.increment(4)
    api = await make_api(
        tokens=ApiTokens([(Scope.WRITE, WRITE)]),
        peer_http={peer.address: url.removeprefix("https://")},
        peer_ssl=server_cert.client_context(),
    )
    api.node.peers.add(peer.address)
    status, body, _ = await api.request("GET", "/cluster", headers=_bearer(WRITE))
    assert status == 200
    (report,) = body["peers"]
    assert (report["value"], report["error"]) == (4, None)

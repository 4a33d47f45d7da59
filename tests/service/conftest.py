"""Fixtures for the node service: an in-process API server (node processes: tests/conftest.py)."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
import trustme

from dcounter_node import Node
from dcounter_node._http import HTTPServer, create_app, start_http_server
from dcounter_protocol._tcp import TCPTransport

if TYPE_CHECKING:
    from pathlib import Path

    from dcounter_node import NodeConfig
    from dcounter_node._http_limits import HTTPLimits
    from dcounter_node._storage import StateStore

#: Upper bound for any single wait in these tests; real waits end far sooner.
DEADLINE = 10.0


@dataclass
class Api:
    """A node with its HTTP API on a free loopback port, and a client session."""

    node: Node
    server: HTTPServer
    session: aiohttp.ClientSession

    @property
    def url(self) -> str:
        return f"http://{self.server.address}"

    async def request(
        self, method: str, path: str, **kwargs: Any
    ) -> tuple[int, Any, aiohttp.ClientResponse]:
        """Send a request; return (status, JSON body or None, response)."""
        async with self.session.request(method, self.url + path, **kwargs) as response:
            body = await response.read()
            try:
                document = await response.json(content_type=None) if body else None
            except ValueError:
                document = None
            return response.status, document, response

    async def value(self) -> int:
        status, body, _ = await self.request("GET", "/counter")
        assert status == 200
        value = body["value"]
        assert isinstance(value, int)
        return value


ApiFactory = Callable[..., Awaitable[Api]]


@pytest.fixture
async def make_api() -> AsyncIterator[ApiFactory]:
    """Start nodes with their API (``await make_api(**create_app_options)``); all stopped after."""
    started: list[Api] = []

    async def make(
        *,
        store: StateStore | None = None,
        limits: HTTPLimits | None = None,
        config: NodeConfig | None = None,
        **options: Any,
    ) -> Api:
        node = Node(TCPTransport("127.0.0.1:0"), config, store=store)
        await node.start()
        server = await start_http_server(create_app(node, **options), "127.0.0.1:0", limits=limits)
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=DEADLINE))
        api = Api(node, server, session)
        started.append(api)
        return api

    yield make
    for api in started:
        await api.session.close()
        await api.server.close()
        await api.node.close()


@pytest.fixture
async def api(make_api: ApiFactory) -> Api:
    """One node with its API and default options."""
    return await make_api()


# -- certificates (issue 13) ------------------------------------------------------------------


@dataclass(frozen=True)
class ServerCert:
    """A throwaway CA and a certificate it issued for 127.0.0.1 and localhost, as PEM files."""

    ca: trustme.CA
    cert: Path
    key: Path
    ca_cert: Path

    def client_context(self) -> ssl.SSLContext:
        """A client-side context trusting only this CA."""
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context


@pytest.fixture
def server_cert(tmp_path: Path) -> ServerCert:
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1", "localhost")
    cert, key, ca_cert = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    issued.private_key_pem.write_to_path(key)
    ca.cert_pem.write_to_path(ca_cert)
    return ServerCert(ca, cert, key, ca_cert)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session for the tests' own requests to node processes."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session

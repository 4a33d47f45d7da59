"""Fixtures for the client tests: node processes, a scripted fake node, and each client.

Every client test runs twice, once per flavor: the async client as is, and the sync client
driven from worker threads (so both face the same table of tests).
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import pytest
from aiohttp import web

from dcounter_client import AsyncClient, Client

if TYPE_CHECKING:
    from tests.conftest import SpawnNode

    from dcounter_client import CounterPage, CounterSnapshot, Member, NodeHealth
    from dcounter_node.testing import NodeProcess

#: The name of the nodes' original single counter.
DEFAULT = "default"
#: A node on free loopback ports, keeping nothing on disk.
FREE = ("--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--in-memory")


class AnyClient(Protocol):
    """What the tests use: the async client's interface (the sync one gets adapted)."""

    @property
    def urls(self) -> tuple[str, ...]: ...
    async def increment(self, by: int = 1, *, key: str | None = None, name: str = ...) -> int: ...
    async def decrement(self, by: int = 1, *, key: str | None = None, name: str = ...) -> int: ...
    async def value(self, name: str = ...) -> int: ...
    async def counter(self, name: str = ...) -> CounterSnapshot: ...
    async def counters(
        self, prefix: str = "", *, after: str | None = None, limit: int = 100
    ) -> CounterPage: ...
    async def health(self) -> list[NodeHealth]: ...
    async def peers(self) -> list[str]: ...
    async def members(self) -> list[Member]: ...
    async def add_peer(self, address: str) -> bool: ...
    async def remove_peer(self, address: str) -> bool: ...
    def watch(self, name: str = ..., *, idle_timeout: float = ...) -> AsyncGenerator[int, None]: ...
    async def aclose(self) -> None: ...


class ThreadedClient:
    """A sync :class:`Client`, each call made in a worker thread."""

    def __init__(self, client: Client) -> None:
        self._client = client

    @property
    def urls(self) -> tuple[str, ...]:
        return self._client.urls

    async def increment(self, by: int = 1, *, key: str | None = None, name: str = DEFAULT) -> int:
        return await asyncio.to_thread(self._client.increment, by, key=key, name=name)

    async def decrement(self, by: int = 1, *, key: str | None = None, name: str = DEFAULT) -> int:
        return await asyncio.to_thread(self._client.decrement, by, key=key, name=name)

    async def value(self, name: str = DEFAULT) -> int:
        return await asyncio.to_thread(self._client.value, name)

    async def counter(self, name: str = DEFAULT) -> CounterSnapshot:
        return await asyncio.to_thread(self._client.counter, name)

    async def counters(
        self, prefix: str = "", *, after: str | None = None, limit: int = 100
    ) -> CounterPage:
        return await asyncio.to_thread(self._client.counters, prefix, after=after, limit=limit)

    async def health(self) -> list[NodeHealth]:
        return await asyncio.to_thread(self._client.health)

    async def peers(self) -> list[str]:
        return await asyncio.to_thread(self._client.peers)

    async def members(self) -> list[Member]:
        return await asyncio.to_thread(self._client.members)

    async def add_peer(self, address: str) -> bool:
        return await asyncio.to_thread(self._client.add_peer, address)

    async def remove_peer(self, address: str) -> bool:
        return await asyncio.to_thread(self._client.remove_peer, address)

    async def watch(
        self, name: str = DEFAULT, *, idle_timeout: float = 60.0
    ) -> AsyncGenerator[int, None]:
        values = self._client.watch(name, idle_timeout=idle_timeout)
        try:
            while True:
                yield await asyncio.to_thread(next, values)
        finally:
            values.close()

    async def aclose(self) -> None:
        await asyncio.to_thread(self._client.close)


MakeClient = Callable[..., AnyClient]


@pytest.fixture(params=["async", "sync"])
async def make_client(request: pytest.FixtureRequest) -> AsyncIterator[MakeClient]:
    """``make_client(urls, **options)``: a client of the test's flavor, closed after."""
    made: list[AnyClient] = []

    def make(urls: str | list[str], **options: Any) -> AnyClient:
        client: AnyClient
        if request.param == "async":
            client = AsyncClient(urls, **options)
        else:
            client = ThreadedClient(Client(urls, **options))
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


StartNode = Callable[..., Awaitable["NodeProcess"]]


@pytest.fixture
def start_node(spawn_node: SpawnNode) -> StartNode:
    """``await start_node(*args)``: a ready node process (FREE unless ``args`` are given)."""

    async def start(*args: str) -> NodeProcess:
        node = await spawn_node(*(args or FREE))
        await node.wait_ready()
        return node

    return start


@dataclass
class FakeNode:
    """An HTTP server that records requests and answers from a script.

    ``answers`` is a list of (status, JSON document) consumed one per request; when it runs
    out, every request gets ``{"value": 1}``.
    """

    url: str = ""
    answers: list[tuple[int, Any]] = field(default_factory=list)
    requests: list[web.Request] = field(default_factory=list)
    #: Claim a gzip body that is not gzip (an answer no client can decode).
    garble: bool = False

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.requests.append(request)
        status, document = self.answers.pop(0) if self.answers else (200, {"value": 1})
        response = web.Response(
            status=status, body=json.dumps(document).encode(), content_type="application/json"
        )
        if self.garble:
            response.headers["Content-Encoding"] = "gzip"
        return response


@pytest.fixture
async def fake_node() -> AsyncIterator[FakeNode]:
    """A scripted fake node on a free loopback port (see :class:`FakeNode`)."""
    fake = FakeNode()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    sock = socket.create_server(("127.0.0.1", 0))
    try:
        await web.SockSite(runner, sock).start()
        fake.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        yield fake
    finally:
        await runner.cleanup()
        sock.close()


@pytest.fixture
def refused_url() -> Iterator[str]:
    """A loopback URL that refuses connections (its port bound, never listening)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"

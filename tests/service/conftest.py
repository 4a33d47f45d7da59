"""Fixtures for the node service: an in-process API server and real node processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from dcounter_node import Node
from dcounter_node._http import HTTPServer, create_app, start_http_server
from dcounter_protocol._tcp import TCPTransport

if TYPE_CHECKING:
    import signal
    from pathlib import Path

    from dcounter_node._http_guard import HTTPLimits
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
        *, store: StateStore | None = None, limits: HTTPLimits | None = None, **options: Any
    ) -> Api:
        node = Node(TCPTransport("127.0.0.1:0"), store=store)
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


# -- node processes ---------------------------------------------------------------------------


@dataclass
class NodeProcess:
    """A ``python -m dcounter_node`` child process and what its ready line said."""

    process: asyncio.subprocess.Process
    stderr_path: Path
    ready: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def http(self) -> str:
        return f"http://{self.ready['http']}"

    @property
    def gossip(self) -> str:
        return self.ready["gossip"]

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    async def wait_ready(self, seconds: float = DEADLINE) -> dict[str, str]:
        """Read and parse the ready line (fails the test if the process exits first)."""
        assert self.process.stdout is not None
        try:
            line = await asyncio.wait_for(self.process.stdout.readline(), seconds)
        except TimeoutError:
            pytest.fail(f"node did not become ready in {seconds} s; stderr:\n{self.stderr()}")
        words = line.decode().split()
        if words[:2] != ["dcounter-node", "ready"]:
            await self.wait_exit()
            pytest.fail(f"no ready line (got {line!r}); stderr:\n{self.stderr()}")
        self.ready = dict(word.split("=", 1) for word in words[2:])
        return self.ready

    async def wait_exit(self, seconds: float = DEADLINE) -> int:
        """Wait for the process to exit and return its status."""
        try:
            return await asyncio.wait_for(self.process.wait(), seconds)
        except TimeoutError:
            pytest.fail(f"node {self.pid} did not exit in {seconds} s; stderr:\n{self.stderr()}")

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)


SpawnNode = Callable[..., Awaitable[NodeProcess]]


@pytest.fixture
async def spawn_node(tmp_path: Path) -> AsyncIterator[SpawnNode]:
    """Start ``python -m dcounter_node *args``; every process is killed after the test."""
    processes: list[NodeProcess] = []

    async def spawn(*args: str) -> NodeProcess:
        stderr_path = tmp_path / f"node-{len(processes)}.stderr"
        with stderr_path.open("wb") as stderr:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "dcounter_node",
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        node = NodeProcess(process, stderr_path)
        processes.append(node)
        return node

    yield spawn
    for node in processes:
        if node.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                node.process.kill()
            await node.process.wait()

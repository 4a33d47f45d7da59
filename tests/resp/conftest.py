"""Shared pieces of the Redis-protocol tests: a counters stand-in, the redis binaries."""

from __future__ import annotations

import asyncio
import bisect
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import hiredis
import pytest

from dcounter_crdt import MAX_COUNT, CountOverflowError
from dcounter_node import Node
from dcounter_node._resp_server import RespServer, start_resp_server
from dcounter_protocol._tcp import TCPTransport

if TYPE_CHECKING:
    from dcounter_node._auth import ApiTokens
    from dcounter_node._resp_limits import RespLimits

#: Upper bound for any single wait in these tests; real waits end far sooner.
DEADLINE = 10.0


class FakeCounters:
    """The part of :class:`dcounter_node.Counters` the commands use, over two dicts.

    For the sans-IO command tests; the server tests use a real node.
    """

    def __init__(self) -> None:
        self.ups: dict[str, int] = {}
        self.downs: dict[str, int] = {}

    def increment(self, name: str, by: int = 1) -> int:
        return self._count(self.ups, name, by)

    def decrement(self, name: str, by: int = 1) -> int:
        return self._count(self.downs, name, by)

    def add_within(self, name: str, delta: int, low: int, high: int) -> int | None:
        if not low <= self.value(name) + delta <= high:
            return None
        if delta > 0:
            return self.increment(name, delta)
        return self.decrement(name, -delta) if delta else self.value(name)

    def _count(self, side: dict[str, int], name: str, by: int) -> int:
        if side.get(name, 0) + by > MAX_COUNT:
            raise CountOverflowError(f"count would pass {MAX_COUNT}")
        side[name] = side.get(name, 0) + by
        self.ups.setdefault(name, 0)
        return self.value(name)

    def value(self, name: str = "default") -> int:
        return self.ups.get(name, 0) - self.downs.get(name, 0)

    def __contains__(self, name: object) -> bool:
        return name in self.ups

    def __len__(self) -> int:
        return len(self.ups)

    def names(self, prefix: str = "", *, after: str | None = None, limit: int = 100) -> list[str]:
        names = sorted(self.ups)
        start = bisect.bisect_left(names, prefix)
        if after is not None:
            start = max(start, bisect.bisect_right(names, after))
        return [n for n in names[start:] if n.startswith(prefix)][:limit]


def pack(*args: bytes) -> bytes:
    """A request as clients send it: an array of bulk strings."""
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%b\r\n" % (len(a), a) for a in args)


def parse_scan(reply: bytes) -> tuple[str, list[str]]:
    """A RESP2 SCAN reply's cursor and names (the shape SCAN always answers)."""
    parser = hiredis.Reader(encoding="utf-8")
    parser.feed(reply)
    cursor, names = parser.gets()
    assert isinstance(cursor, str)
    assert isinstance(names, list)
    return cursor, names


def redis_tool(name: str) -> str:
    """The path of Debian's ``redis-tools``/``redis-server`` binary ``name``, or skip."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(
            f"{name} is not installed: install Debian's redis-tools and redis-server (.ci/run does)"
        )
    return path


@dataclass
class Resp:
    """A running node with its Redis front end on a free loopback port."""

    node: Node
    server: RespServer

    @property
    def host(self) -> str:
        return self.server.address.rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.server.address.rsplit(":", 1)[1])

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A raw connection, for what no client library sends."""
        return await asyncio.open_connection(self.host, self.port)


RespFactory = Callable[..., Awaitable[Resp]]


@pytest.fixture
async def make_resp() -> AsyncIterator[RespFactory]:
    """Start nodes with a Redis front end (``await make_resp(**start_resp_server options)``,
    ``commit=`` replacing the node's); every one is stopped after."""
    started: list[Resp] = []

    async def make(
        *,
        commit: Callable[[], Awaitable[None]] | None = None,
        limits: RespLimits | None = None,
        tokens: ApiTokens | None = None,
        **options: Any,
    ) -> Resp:
        node = Node(TCPTransport("127.0.0.1:0"))
        await node.start()
        server = await start_resp_server(
            node.counters,
            commit if commit is not None else node.commit,
            "127.0.0.1:0",
            limits=limits,
            tokens=tokens,
            **options,
        )
        resp = Resp(node, server)
        started.append(resp)
        return resp

    yield make
    for resp in started:
        await resp.server.close()
        await resp.node.close()

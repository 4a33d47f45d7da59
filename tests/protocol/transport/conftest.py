"""Fixtures for the transport tests: transport factories and an inbox handler.

The conformance suite (:mod:`dcounter_protocol.testing`) runs through ``kit`` against five
transports: TCP sending with the seed's framing (``tcp-seed``), TCP in stream mode with
fallback (``tcp-auto``), both inside mutual TLS (``tls-seed``, ``tls-auto``) and the
in-memory network.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
from typing import TYPE_CHECKING, Any, Protocol

import pytest

from dcounter_protocol._memory import MemoryNetwork
from dcounter_protocol._tcp import TCPOptions, TCPTransport
from dcounter_protocol.testing import TransportKit

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from tests.conftest import IssueTLS
    from tests.conftest import WaitUntil as WaitUntil  # the shared ``wait_until`` fixture

    from dcounter_protocol._tcp import WireMode

#: Upper bound for any single wait in these tests: generous on a loaded 2-core machine, and
#: only ever reached when a test is about to fail.
DEADLINE = 5.0


class Inbox:
    """A transport handler that queues every (sender, payload) it is given."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()

    async def __call__(self, sender: str, payload: bytes) -> None:
        self.queue.put_nowait((sender, payload))

    async def get(self, *, within: float = DEADLINE) -> tuple[str, bytes]:
        """The next message; TimeoutError if none arrives in ``within`` seconds."""
        async with asyncio.timeout(within):
            return await self.queue.get()

    async def get_many(self, count: int, *, within: float = DEADLINE) -> list[tuple[str, bytes]]:
        """The next ``count`` messages, in arrival order, within one deadline."""
        async with asyncio.timeout(within):
            return [await self.queue.get() for _ in range(count)]


def free_tcp_address() -> str:
    """A loopback address nothing listens on: bind port 0, note the port, close."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"127.0.0.1:{port}"


@pytest.fixture(params=["tcp-seed", "tcp-auto", "tls-seed", "tls-auto", "memory"])
async def kit(request: pytest.FixtureRequest, issue_tls: IssueTLS) -> AsyncIterator[TransportKit]:
    """One factory per transport implementation; every transport it made is closed after."""
    made: TransportKit
    if request.param == "memory":
        network = MemoryNetwork(seed=1)
        names = itertools.count()
        made = TransportKit(lambda: network.transport(f"mem-{next(names)}"), lambda: "nowhere:1")
    else:
        kind, _, mode = request.param.partition("-")
        wire: WireMode = "seed" if mode == "seed" else "auto"
        tls = issue_tls("node").options() if kind == "tls" else None
        options = TCPOptions(
            dial_timeout=DEADLINE, read_timeout=DEADLINE, write_timeout=DEADLINE, wire=wire, tls=tls
        )
        made = TransportKit(lambda: TCPTransport("127.0.0.1:0", options=options), free_tcp_address)
    try:
        yield made
    finally:
        await made.aclose()


@pytest.fixture
def inbox() -> Inbox:
    """A fresh queueing handler."""
    return Inbox()


@pytest.fixture
def make_inbox() -> type[Inbox]:
    """The :class:`Inbox` class, for tests that need several handlers."""
    return Inbox


# -- TCP specifics ----------------------------------------------------------------------------


class MakeTCP(Protocol):
    """The type of the ``make_tcp`` fixture."""

    def __call__(self, address: str = ..., **options: Any) -> TCPTransport: ...


@pytest.fixture
async def make_tcp() -> AsyncIterator[MakeTCP]:
    """Builds TCPTransports (keyword arguments go to TCPOptions); closes them all after."""
    made: list[TCPTransport] = []

    def make(address: str = "127.0.0.1:0", **options: Any) -> TCPTransport:
        transport = TCPTransport(address, options=TCPOptions(**options))
        made.append(transport)
        return transport

    yield make
    for transport in made:
        await transport.close()


class RawClients:
    """Plain asyncio connections, playing hostile peers or the reference's sender."""

    def __init__(self) -> None:
        self.writers: list[asyncio.StreamWriter] = []

    async def connect(self, address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        host, _, port = address.rpartition(":")
        reader, writer = await asyncio.open_connection(host.strip("[]"), int(port))
        self.writers.append(writer)
        return reader, writer

    async def send_raw(self, address: str, data: bytes) -> None:
        """Write ``data``, half-close, and wait for the server to close its side."""
        reader, writer = await self.connect(address)
        writer.write(data)
        writer.write_eof()
        async with asyncio.timeout(DEADLINE):
            with contextlib.suppress(ConnectionResetError):
                await reader.read()

    async def aclose(self) -> None:
        for writer in self.writers:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


@pytest.fixture
async def raw() -> AsyncIterator[RawClients]:
    """Raw client connections, all closed after the test."""
    clients = RawClients()
    yield clients
    await clients.aclose()


@pytest.fixture
def free_address() -> str:
    """A loopback address nothing listens on."""
    return free_tcp_address()


def _open_sockets() -> int:
    """Sockets this process has open (other descriptors, e.g. the event loop's, ignored)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the directory's own descriptor is gone by now
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    return count


@pytest.fixture
def open_sockets() -> Callable[[], int]:
    """Counts this process's open sockets (skips the test where /proc is missing)."""
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("counts descriptors in /proc")
    return _open_sockets

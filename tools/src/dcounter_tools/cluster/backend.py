"""What the launcher drives: a cluster of nodes as OS processes (or, see inprocess.py, in
this process), behind one small interface so the run logic is written once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from dcounter_tools._address import join_address, split_address
from dcounter_tools.cluster.client import PLAIN, APIAccess, CounterView, NodeClient, OpResult
from dcounter_tools.cluster.processes import NodeProcess
from dcounter_tools.errors import ClusterError

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from dcounter_tools.cluster.spec import ClusterSpec

__all__ = [
    "ClusterBackend",
    "EventSink",
    "NodeInfo",
    "ProcessBackend",
    "pin_free_ports",
    "wire_mesh",
]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """A running node as the report shows it."""

    name: str
    gossip: str
    http: str | None
    replica: str
    pid: int | None
    #: 0 for the first process of this node, +1 per restart.
    incarnation: int = 0


class ClusterBackend(Protocol):
    """A started cluster: writes, reads, peer changes and crashes, by node index."""

    @property
    def mode(self) -> str:
        """How the nodes run, for the report ("processes", "in-process/memory"...)."""
        ...

    def nodes(self) -> Sequence[NodeInfo]:
        """Every node, in index order (current incarnation)."""
        ...

    async def start(self, on_event: EventSink) -> None:
        """Start every node and wire the peers each needs."""
        ...

    async def change(self, index: int, delta: int, key: str, name: str) -> OpResult:
        """One write attempt on node ``index``'s counter ``name`` under Idempotency-Key
        ``key``."""
        ...

    async def counter(self, index: int) -> CounterView:
        """Node ``index``'s counter; raises when unreachable."""
        ...

    async def values(self, index: int) -> dict[str, int]:
        """Every counter node ``index`` holds, by name; raises when unreachable."""
        ...

    async def peers(self, index: int) -> list[str]:
        """Node ``index``'s peer list."""
        ...

    async def add_peer(self, index: int, address: str) -> None:
        """Add ``address`` to node ``index``'s peers."""
        ...

    async def remove_peer(self, index: int, address: str) -> bool:
        """Remove ``address`` from node ``index``'s peers; False if it was not there."""
        ...

    async def kill(self, index: int) -> None:
        """Crash node ``index`` (kill -9 for a process)."""
        ...

    async def restart(self, index: int, peers: Sequence[str]) -> None:
        """Start node ``index`` again at the same addresses, with exactly ``peers``."""
        ...

    async def close(self) -> None:
        """Stop every node; never leaves a process or socket behind; idempotent."""
        ...


class EventSink(Protocol):
    """Where backends report what they are doing (a progress display)."""

    def __call__(self, text: str) -> None: ...


async def wire_mesh(backend: ClusterBackend, dynamic: Sequence[int]) -> None:
    """Mesh each node in ``dynamic`` with every other node, both ways, via the peers API."""
    nodes = backend.nodes()
    pairs: set[tuple[int, int]] = set()
    for i in dynamic:
        for j in range(len(nodes)):
            if i != j:
                pairs.add((i, j))
                pairs.add((j, i))
    await asyncio.gather(*(backend.add_peer(i, nodes[j].gossip) for i, j in sorted(pairs)))


def pin_free_ports(spec: ClusterSpec) -> ClusterSpec:
    """``spec`` with every port-0 address replaced by a port that is free now.

    All the ports are held open together while chosen, so no two nodes get the same one.
    The node binds its port a moment later; should another program take it meanwhile, the
    node fails to start with a clear "cannot listen" error.
    """
    with contextlib.ExitStack() as stack:

        def pinned(address: str) -> str:
            host, port = split_address(address)
            if port != 0:
                return address
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = stack.enter_context(socket.socket(family, socket.SOCK_STREAM))
            sock.bind((host, 0))
            return join_address(host, sock.getsockname()[1])

        nodes = tuple(
            dataclasses.replace(
                node,
                listen=pinned(node.listen),
                http=pinned(node.http),
                # Pass the pinned addresses as flags even if the spec came from a file.
                addresses_from_file=False,
            )
            for node in spec.nodes
        )
    return dataclasses.replace(spec, nodes=nodes)


class ProcessBackend:
    """Each node its own ``python -m dcounter_node`` process, driven over its HTTP API as
    ``access`` says (plain HTTP unless given; HTTPS with a token for ``--tls``)."""

    def __init__(
        self,
        spec: ClusterSpec,
        *,
        log_dir: Path | None,
        data_root: Path | None = None,
        startup_timeout: float = 30.0,
        request_timeout: float = 5.0,
        stop_grace: float = 5.0,
        access: APIAccess = PLAIN,
    ) -> None:
        # A durable node records its listen address and must come back at it after a
        # restart: a port 0 would be recorded as "host:0" and the real address refused.
        self._spec = spec if data_root is None else pin_free_ports(spec)
        self._log_dir = log_dir
        self._data_root = data_root
        self._startup_timeout = startup_timeout
        self._request_timeout = request_timeout
        self._stop_grace = stop_grace
        self._access = access
        self._processes: list[NodeProcess] = []
        self._clients: list[NodeClient] = []
        self._infos: list[NodeInfo] = []

    @property
    def mode(self) -> str:
        return "processes"

    def nodes(self) -> Sequence[NodeInfo]:
        return tuple(self._infos)

    def _data_dir(self, name: str) -> Path | None:
        return None if self._data_root is None else self._data_root / name

    def _log_path(self, name: str) -> Path | None:
        if self._log_dir is None:
            return None
        return self._log_dir / f"{name}.log"

    async def start(self, on_event: EventSink) -> None:
        started = time.monotonic()
        self._processes = [
            NodeProcess(
                node.name, node.argv(data_dir=self._data_dir(node.name)), self._log_path(node.name)
            )
            for node in self._spec.nodes
        ]

        async def start_one(process: NodeProcess) -> None:
            ready = await process.start(self._startup_timeout)
            on_event(
                f"{process.name} ready: gossip {ready.gossip}, http {ready.http}, pid {ready.pid}"
            )

        results = await asyncio.gather(
            *(start_one(p) for p in self._processes), return_exceptions=True
        )
        failed = [
            (p.name, r)
            for p, r in zip(self._processes, results, strict=True)
            if isinstance(r, BaseException)
        ]
        if failed:
            _, first = failed[0]
            others = ", ".join(name for name, _ in failed[1:])
            also = f"\n(also failed to start: {others})" if others else ""
            if isinstance(first, ClusterError):
                raise type(first)(f"{first}{also}") from first
            raise ClusterError(f"could not start the nodes: {first!r}{also}") from first
        for process in self._processes:
            ready = process.ready
            if ready is None:  # pragma: no cover - start() returned without error
                raise ClusterError(f"{process.name} is not ready")
            self._infos.append(
                NodeInfo(process.name, ready.gossip, ready.http, ready.replica, ready.pid)
            )
            self._clients.append(self._client(ready.http))
        dynamic = [i for i, node in enumerate(self._spec.nodes) if node.wire_after_start]
        if dynamic:
            await wire_mesh(self, dynamic)
        on_event(
            f"{len(self._processes)} nodes up in {time.monotonic() - started:.2f} s"
            + (" (peers added through POST /peers)" if dynamic else "")
        )

    def _client(self, http: str) -> NodeClient:
        return NodeClient(http, timeout=self._request_timeout, access=self._access)

    async def change(self, index: int, delta: int, key: str, name: str) -> OpResult:
        return await self._clients[index].change(delta, key=key, name=name)

    async def counter(self, index: int) -> CounterView:
        return await self._clients[index].counter()

    async def values(self, index: int) -> dict[str, int]:
        return await self._clients[index].values()

    async def peers(self, index: int) -> list[str]:
        return await self._clients[index].peers()

    async def add_peer(self, index: int, address: str) -> None:
        await self._clients[index].add_peer(address)

    async def remove_peer(self, index: int, address: str) -> bool:
        return await self._clients[index].remove_peer(address)

    async def kill(self, index: int) -> None:
        await self._processes[index].kill()
        await self._clients[index].close()

    async def restart(self, index: int, peers: Sequence[str]) -> None:
        old = self._infos[index]
        node = self._spec.nodes[index]
        argv = node.argv(
            listen=old.gossip,
            http=old.http,
            peers=tuple(peers),
            data_dir=self._data_dir(node.name),
        )
        process = NodeProcess(node.name, argv, self._log_path(node.name))
        self._processes[index] = process
        ready = await process.start(self._startup_timeout)
        if ready.gossip != old.gossip or ready.http != old.http:
            raise ClusterError(
                f"{node.name} came back at {ready.gossip}/{ready.http}, not {old.gossip}/{old.http}"
            )
        self._infos[index] = NodeInfo(
            node.name, ready.gossip, ready.http, ready.replica, ready.pid, old.incarnation + 1
        )
        await self._clients[index].close()
        self._clients[index] = self._client(ready.http)

    async def close(self) -> None:
        for client in self._clients:
            with contextlib.suppress(Exception):
                await client.close()
        results = await asyncio.gather(
            *(p.stop(self._stop_grace) for p in self._processes), return_exceptions=True
        )
        for process, result in zip(self._processes, results, strict=True):
            if isinstance(result, BaseException):
                _log.error("could not stop %s: %r", process.name, result)

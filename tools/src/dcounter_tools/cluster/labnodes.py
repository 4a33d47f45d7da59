"""The lab's nodes: one durable ``dcounter-node`` process per virtual host.

Each node runs inside its host's namespace (``ip netns exec``), listens on the host's own
address (gossip on :data:`GOSSIP_PORT`, HTTP on :data:`HTTP_PORT`), knows every other
node's gossip address from the start, and keeps its state in its own data directory, so a
node killed or stopped by the nemesis comes back with its replica id and its counts.
The launcher reaches every node's HTTP API from the root namespace through the bridge.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from typing import TYPE_CHECKING

from dcounter_tools.cluster.certs import cluster_access, write_node_tls
from dcounter_tools.cluster.client import PLAIN, NodeClient
from dcounter_tools.cluster.processes import NodeProcess

if TYPE_CHECKING:
    from pathlib import Path

    from dcounter_tools.cluster.backend import EventSink
    from dcounter_tools.cluster.netns import NetnsHosts
    from dcounter_tools.cluster.spec import ClusterSpec

__all__ = ["GOSSIP_PORT", "HTTP_PORT", "LabCluster"]

GOSSIP_PORT = 7946
HTTP_PORT = 8080


class LabCluster:
    """Node processes on :class:`~dcounter_tools.cluster.netns.NetnsHosts`, by index."""

    def __init__(
        self,
        spec: ClusterSpec,
        hosts: NetnsHosts,
        *,
        data_root: Path,
        log_dir: Path,
        startup_timeout: float = 30.0,
        request_timeout: float = 1.0,
        stop_grace: float = 5.0,
        tls_dir: Path | None = None,
    ) -> None:
        """With ``tls_dir``, a throwaway CA, a certificate per node for its host's address
        and API tokens are made there: the nodes gossip over mutual TLS and serve HTTPS,
        and the clients trust that CA only, with the admin token."""
        self.names = tuple(node.name for node in spec.nodes)
        self._hosts = hosts
        self._startup_timeout = startup_timeout
        self._request_timeout = request_timeout
        self._stop_grace = stop_grace
        self.gossip = [f"{h.address}:{GOSSIP_PORT}" for h in hosts.hosts]
        self.http = [f"{h.address}:{HTTP_PORT}" for h in hosts.hosts]
        self._argv = [
            node.argv(
                listen=self.gossip[i],
                http=self.http[i],
                peers=tuple(g for j, g in enumerate(self.gossip) if j != i),
                data_dir=data_root / node.name,
            )
            for i, node in enumerate(spec.nodes)
        ]
        self._access = PLAIN
        if tls_dir is not None:
            addresses = [h.address for h in hosts.hosts]
            flags = write_node_tls(tls_dir, list(zip(self.names, addresses, strict=True)))
            self._argv = [[*argv, *f] for argv, f in zip(self._argv, flags, strict=True)]
            self._access = cluster_access(tls_dir)
        self._logs = [log_dir / f"{name}.log" for name in self.names]
        self._processes: list[NodeProcess | None] = [None] * len(self.names)
        self.clients = [self._client(http) for http in self.http]
        self.paused: set[int] = set()
        self.down: set[int] = set()
        #: Each node's current pid (None while it is down).
        self.pids: list[int | None] = [None] * len(self.names)
        self.replicas: list[str] = [""] * len(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def _client(self, http: str) -> NodeClient:
        return NodeClient(http, timeout=self._request_timeout, access=self._access)

    async def _spawn(self, index: int) -> None:
        process = NodeProcess(
            self.names[index],
            self._argv[index],
            self._logs[index],
            prefix=self._hosts.exec_prefix(index),
        )
        self._processes[index] = process
        ready = await process.start(self._startup_timeout)
        self.pids[index] = ready.pid
        self.replicas[index] = ready.replica
        self.down.discard(index)

    async def start(self, on_event: EventSink) -> None:
        """Start every node and wait for all of them to be ready."""
        await asyncio.gather(*(self._spawn(i) for i in range(len(self))))
        for i, name in enumerate(self.names):
            on_event(
                f"{name} ready in {self._hosts.hosts[i].netns}: gossip {self.gossip[i]}, "
                f"http {self.http[i]}, pid {self.pids[i]}"
            )

    async def _fresh_client(self, index: int) -> None:
        # A new session, so no keep-alive connection of the old process is reused.
        old = self.clients[index]
        self.clients[index] = self._client(self.http[index])
        await old.close()

    async def kill(self, index: int) -> None:
        """SIGKILL node ``index`` (a crash); :meth:`revive` brings it back."""
        process = self._processes[index]
        if process is not None:
            await process.kill()
        self.down.add(index)
        self.paused.discard(index)
        self.pids[index] = None

    async def stop(self, index: int) -> None:
        """Stop node ``index`` gracefully (SIGTERM, then SIGKILL after the grace period)."""
        process = self._processes[index]
        if process is not None:
            await process.stop(self._stop_grace)
        self.down.add(index)
        self.pids[index] = None

    async def revive(self, index: int) -> None:
        """Start node ``index`` again on the same host, addresses and data directory."""
        await self._fresh_client(index)
        await self._spawn(index)

    def pause(self, index: int) -> None:
        """SIGSTOP node ``index``: it keeps its sockets but answers nothing."""
        pid = self.pids[index]
        if pid is not None:
            os.kill(pid, signal.SIGSTOP)
            self.paused.add(index)

    def resume(self, index: int) -> None:
        """SIGCONT node ``index``."""
        pid = self.pids[index]
        self.paused.discard(index)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    async def heal_all(self) -> None:
        """Resume every paused node and restart every node that is down."""
        for index in sorted(self.paused):
            self.resume(index)
        for index in sorted(self.down):
            await self.revive(index)

    async def close(self) -> None:
        """Stop every node and close every client; idempotent."""
        for index in sorted(self.paused):
            self.resume(index)
        for client in self.clients:
            with contextlib.suppress(Exception):
                await client.close()
        await asyncio.gather(
            *(p.stop(self._stop_grace) for p in self._processes if p is not None),
            return_exceptions=True,
        )

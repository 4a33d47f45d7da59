"""What the Redis commands work with: the node's counters, the server's shared state.

:class:`CounterBackend` is what commands need of a node (its
:class:`~dcounter_node._counters.Counters`), :class:`RespShared` what every connection of
one server shares (SCAN cursors, the counts ``INFO`` shows), :class:`RespBatch` what a batch
of requests answers.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Protocol

from dcounter_node.__about__ import __version__
from dcounter_node._auth import Scope
from dcounter_node._resp_scan import ScanCursors

__all__ = [
    "REDIS_VERSION",
    "CounterBackend",
    "RespBatch",
    "RespShared",
    "TokenCheck",
    "info_text",
]

#: The Redis version clients are told (``INFO``, ``HELLO``): the protocol level answered.
REDIS_VERSION: Final = "7.0.0"


class CounterBackend(Protocol):
    """What the commands need from a node: :class:`~dcounter_node._counters.Counters`."""

    def increment(self, name: str, by: int = 1) -> int: ...
    def decrement(self, name: str, by: int = 1) -> int: ...
    def add_within(self, name: str, delta: int, low: int, high: int) -> int | None: ...
    def value(self, name: str = ...) -> int: ...
    def __contains__(self, name: object) -> bool: ...
    def __len__(self) -> int: ...
    def names(
        self, prefix: str = "", *, after: str | None = None, limit: int = ...
    ) -> list[str]: ...


#: The scope of an API token (None: unknown token).
TokenCheck = Callable[[str], Scope | None]


@dataclass(eq=False)
class RespShared:
    """What every connection of one server shares: SCAN cursors and the INFO counts."""

    cursors: ScanCursors = field(default_factory=ScanCursors)
    #: The TCP port clients connect to (``INFO``).
    port: int = 0
    started: float = field(default_factory=time.monotonic)
    connected: int = 0
    connections_received: int = 0
    commands_processed: int = 0
    rejected_connections: int = 0
    next_client_id: int = 1

    def client_id(self) -> int:
        client = self.next_client_id
        self.next_client_id += 1
        return client


@dataclass(slots=True)
class RespBatch:
    """What a batch of requests answers: ``replies`` in order; the indexes in ``writes``
    acknowledge counts (send them once committed); ``quit``: close after sending."""

    replies: list[bytes]
    writes: list[int]
    quit: bool = False


def info_text(shared: RespShared, keys: int, wanted: set[str]) -> str:
    """``INFO``'s text: the sections in ``wanted`` (all of them when it is empty or says all)."""
    sections = {
        "server": {
            "redis_version": REDIS_VERSION,
            "dcounter_version": __version__,
            "redis_mode": "standalone",
            "arch_bits": "64",
            "process_id": str(os.getpid()),
            "tcp_port": str(shared.port),
            "uptime_in_seconds": str(int(time.monotonic() - shared.started)),
        },
        "clients": {"connected_clients": str(shared.connected)},
        "stats": {
            "total_connections_received": str(shared.connections_received),
            "total_commands_processed": str(shared.commands_processed),
            "rejected_connections": str(shared.rejected_connections),
        },
        "replication": {"role": "master", "connected_slaves": "0"},
        "keyspace": {"db0": f"keys={keys},expires=0,avg_ttl=0"},
    }
    if wanted & {"all", "everything", "default"}:
        wanted = set()
    lines: list[str] = []
    for section, fields in sections.items():
        if wanted and section not in wanted:
            continue
        lines.append(f"# {section.capitalize()}")
        lines += [f"{key}:{value}" for key, value in fields.items()]
        lines.append("")
    return "\r\n".join(lines)

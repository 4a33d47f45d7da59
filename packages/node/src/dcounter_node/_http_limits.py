"""The HTTP server's connection limits, as settings (no aiohttp, so settings load light)."""

from __future__ import annotations

from dataclasses import dataclass

from dcounter_node._config import check_count, check_seconds

__all__ = ["HTTPLimits"]


@dataclass(frozen=True, slots=True)
class HTTPLimits:
    """How many HTTP connections may be open, and how long a client may dawdle."""

    #: Connections open at once; beyond it, never-used ones are evicted, else 503.
    max_connections: int = 512
    #: Seconds from a request head's first byte to its end (and from its end to the body's).
    header_timeout: float = 10.0
    #: Seconds a connection may stay without a request: after connecting (closed by this
    #: guard) and after its last response (aiohttp's ``keepalive_timeout``).
    idle_timeout: float = 30.0

    def __post_init__(self) -> None:
        check_count("max_connections", self.max_connections)
        check_seconds("header_timeout", self.header_timeout)
        check_seconds("idle_timeout", self.idle_timeout)

    def sweep_interval(self) -> float:
        """How often deadlines are checked: a deadline is met within 25 % (at most 1 s)."""
        return min(1.0, max(0.01, min(self.header_timeout, self.idle_timeout) / 4))

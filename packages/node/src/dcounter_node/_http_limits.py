"""The HTTP server's connection limits, as settings (no aiohttp, so settings load light)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from dcounter_node._errors import ConfigError

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
        if isinstance(self.max_connections, bool) or not isinstance(self.max_connections, int):
            raise ConfigError(f"max_connections must be an int, not {self.max_connections!r}")
        if self.max_connections < 1:
            raise ConfigError(f"max_connections must be >= 1, not {self.max_connections}")
        for name in ("header_timeout", "idle_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{name} must be a number of seconds, not {value!r}")
            if not math.isfinite(value) or value <= 0:
                raise ConfigError(f"{name} must be a number of seconds > 0, not {value!r}")

    def sweep_interval(self) -> float:
        """How often deadlines are checked: a deadline is met within 25 % (at most 1 s)."""
        return min(1.0, max(0.01, min(self.header_timeout, self.idle_timeout) / 4))

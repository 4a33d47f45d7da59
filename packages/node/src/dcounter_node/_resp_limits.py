"""The Redis-protocol front end's limits, as settings (no hiredis, so settings load light)."""

from __future__ import annotations

from dataclasses import dataclass

from dcounter_node._config import check_count, check_seconds

__all__ = ["RespLimits"]


@dataclass(frozen=True, slots=True)
class RespLimits:
    """How big a request may be, how many connections may be open, how long they may dawdle.

    Over a limit, the client gets Redis's own answer (``-ERR Protocol error: ...`` or
    ``-ERR max number of clients reached``) and its connection is closed; others are served.
    """

    #: Connections open at once; the next one is answered an error and closed.
    max_connections: int = 512
    #: Bytes of one request (its array header, argument headers and arguments).
    max_request_bytes: int = 1024 * 1024
    #: Arguments of one request, the command's name included (MGET and EXISTS take many).
    max_arguments: int = 10_000
    #: Seconds a connection may stay open without sending a request (Redis's ``timeout``).
    idle_timeout: float = 300.0
    #: Seconds from a request's first byte to its last; slower clients are closed.
    request_timeout: float = 10.0

    def __post_init__(self) -> None:
        for name in ("max_connections", "max_request_bytes", "max_arguments"):
            check_count(name, getattr(self, name))
        check_seconds("idle_timeout", self.idle_timeout)
        check_seconds("request_timeout", self.request_timeout)

    def sweep_interval(self) -> float:
        """How often deadlines are checked: a deadline is met within 25 % (at most 1 s)."""
        return min(1.0, max(0.01, min(self.idle_timeout, self.request_timeout) / 4))

"""Requests naming a host the node does not answer to get 421 (DNS rebinding).

:class:`~dcounter_node._host_policy.HostPolicy` is the decision; :class:`HostGuard` applies
it to aiohttp requests, answers refusals as JSON and logs them, one line per minute at most.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

from aiohttp import web

from dcounter_node._host_policy import HostPolicy
from dcounter_node._ratelimit import RateLimitedLog

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["HostGuard"]

_log = logging.getLogger(__name__)

#: Seconds between two log lines about refused hosts.
_LOG_INTERVAL: Final = 60.0
#: Longest Host value repeated in an answer or log line.
_SHOWN: Final = 80


class HostGuard:
    """Screens each request's ``Host`` header against a :class:`HostPolicy`."""

    def __init__(self, allowed: Iterable[str] = (), listen_host: str | None = None) -> None:
        self.policy = HostPolicy(allowed, listen_host)
        self._log = RateLimitedLog(_log, _LOG_INTERVAL)

    @property
    def active(self) -> bool:
        """False when every host is served (nothing to screen)."""
        return self.policy.allowed is not None

    def screen(self, request: web.Request) -> web.Response | None:
        """The 421 answer to a request for a host not served here, or None to serve it."""
        host = request.headers.get("Host")
        if self.policy.allows(host):
            return None
        shown = repr(host if host is None or len(host) <= _SHOWN else host[: _SHOWN - 3] + "...")
        self._log.warning(
            "host",
            "refused %s %s for host %s from %s: not in allowed_hosts (--allowed-hosts)",
            request.method,
            request.path[:100],
            shown,
            request.remote or "unknown",
        )
        return web.json_response(
            {
                "error": f"host {shown} is not served here: requests must name one of this"
                " node's allowed hosts (--allowed-hosts)"
            },
            status=421,
        )

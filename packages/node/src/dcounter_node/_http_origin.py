"""Browsers: requests from other sites' pages are refused (issue 12.7).

A page on any site can make a visitor's browser send ``POST /increment`` (a text/plain
body needs no CORS preflight), so the API cannot rely on browsers to keep foreign pages
out. Browsers name the page's origin in an ``Origin`` header on such requests; a request
carrying one is served only when it is the node's own (the origin the request was sent to,
as its ``Host`` header says) or listed in ``allowed_origins``, and refused with 403
otherwise. Clients that are not browsers (curl, scripts, other services) send no
``Origin`` and are not affected.

Allowed foreign origins get the CORS headers a browser needs to read the answers, and
preflight (``OPTIONS``) requests are answered for them.

:class:`OriginPolicy` is the decision, without I/O; :class:`OriginGuard` applies it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from aiohttp import web

from dcounter_node._origin_policy import OriginPolicy, normalize_origin

if TYPE_CHECKING:
    from collections.abc import Iterable


__all__ = ["OriginGuard", "OriginPolicy", "normalize_origin"]

_PREFLIGHT_METHODS: Final = "GET, HEAD, POST, DELETE"
_PREFLIGHT_HEADERS: Final = "Content-Type, Idempotency-Key"
_EXPOSED_HEADERS: Final = "Idempotent-Replayed"
#: Seconds a browser may cache a preflight answer.
_PREFLIGHT_MAX_AGE: Final = "600"


class OriginGuard:
    """Applies an :class:`OriginPolicy` to the requests of one application.

    Every route's handler asks :meth:`screen` first (a per-route check rather than an
    aiohttp middleware, which would cost every request several microseconds).
    """

    def __init__(self, app: web.Application, allowed_origins: Iterable[str] = ()) -> None:
        self.policy = OriginPolicy(allowed_origins)
        if self.policy.allowed or self.policy.any:  # nothing to add otherwise
            # A signal, not in screen(): streamed responses send their headers early.
            app.on_response_prepare.append(self._add_cors_headers)

    def screen(self, request: web.Request, origin: str) -> web.StreamResponse | None:
        """The answer to a request carrying ``Origin: origin``, or None to serve it."""
        decision = self.policy.decide(origin, request.headers.get("Host"))
        if decision == "refused":
            shown = origin if len(origin) <= 80 else origin[:77] + "..."
            return web.json_response(
                {
                    "error": f"requests from pages of {shown} are refused (the node allows its"
                    " own origin and those in allowed_origins)"
                },
                status=403,
                headers={"Vary": "Origin"},
            )
        if (
            decision == "allowed"
            and request.method == "OPTIONS"
            and "Access-Control-Request-Method" in request.headers
        ):
            return web.Response(status=204, headers=_preflight_headers(origin))
        return None

    async def _add_cors_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        origin = request.headers.get("Origin")
        if origin is None or response.status == 204:  # preflights carry their own
            return
        if self.policy.decide(origin, request.headers.get("Host")) == "allowed":
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = _EXPOSED_HEADERS
            response.headers.add("Vary", "Origin")


def _preflight_headers(origin: str) -> dict[str, str]:
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Methods": _PREFLIGHT_METHODS,
        "Access-Control-Allow-Headers": _PREFLIGHT_HEADERS,
        "Access-Control-Max-Age": _PREFLIGHT_MAX_AGE,
        "Vary": "Origin",
    }

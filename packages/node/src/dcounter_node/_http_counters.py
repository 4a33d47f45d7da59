"""The HTTP routes of named counters (issue 20), registered by :func:`._http.create_app`.

* ``GET /counters/{name}``: ``{"name", "value", "replica", "increments", "decrements"}``,
  like ``GET /counter`` (a name never counted is 0 with no entries).
* ``POST /counters/{name}/increment``, ``POST /counters/{name}/decrement``: the body,
  ``Idempotency-Key`` handling, answer and errors of ``POST /increment``; a key is bound to
  the counter it first counted, so reusing it on another counter is a 422.
* ``GET /counters?prefix=&after=&limit=``: ``{"counters": [{"name", "value"}], "next"}``,
  names in code point order; ``next`` is the ``after`` of the next page, or null on the
  last one. ``limit`` is 1 to :data:`MAX_PAGE` (default 100).
* ``GET /counters/{name}/watch``: server-sent events of that counter, like
  ``GET /counter/watch``.

``/counter``, ``/increment`` and friends keep meaning the counter named ``default``, which
is also ``/counters/default``.

**Names in paths.** A name is one path segment, percent-encoded as UTF-8 (RFC 3986): a
``/`` in a name is sent as ``%2F``, ``%`` as ``%25``, ``?`` as ``%3F``, ``#`` as ``%23``,
a space as ``%20``; ``+`` is a plain plus. Percent-escapes that do not decode as UTF-8 are
a 400, so are names longer than the node's ``max_key_length`` (UTF-8 bytes). A write that
would take the node past ``max_keys`` names is a 409, like a count that would overflow.

While storage fails, every read shows the committed counts only (as ``/counter`` does).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final

from dcounter_crdt import (
    CounterState,
    CountOverflowError,
    CRDTError,
    InvalidKeyError,
    KeyTooLongError,
    TooManyKeysError,
)
from dcounter_node._counters import DEFAULT_PAGE
from dcounter_node._http_answers import APIError, json_response

if TYPE_CHECKING:
    from aiohttp import web

    from dcounter_node._http import _API

__all__ = ["MAX_PAGE", "counter_name", "counter_routes", "write_error"]

#: The largest ``limit`` a list request may ask for.
MAX_PAGE: Final = 1000
_LIST_PARAMETERS: Final = frozenset({"prefix", "after", "limit"})

_Handler = Callable[["web.Request"], Awaitable["web.StreamResponse"]]


def counter_name(request: web.Request, max_length: int) -> str:
    """The counter name addressed by ``/counters/{name}...`` (see the module docstring)."""
    # From the raw path: aiohttp leaves escapes that are not UTF-8 undecoded, which would
    # silently name another counter.
    segment = request.rel_url.raw_path.split("/")[2]
    try:
        name = urllib.parse.unquote(segment, errors="strict")
    except UnicodeDecodeError:
        raise APIError(
            400, "counter name must be percent-encoded UTF-8 (see the README's HTTP API)"
        ) from None
    size = len(name.encode())
    if size > max_length:
        raise APIError(
            400,
            f"counter name is {size} bytes long (UTF-8); this node allows at most {max_length}",
        )
    return name


def write_error(op: str, by: int, name: str, exc: CRDTError) -> APIError:
    """The answer to a write the counters refused with ``exc``."""
    if isinstance(exc, CountOverflowError):
        return APIError(409, f"cannot {op} by {by}: {exc}")
    if isinstance(exc, TooManyKeysError):
        return APIError(409, f"cannot count under a new name {name!r}: {exc}")
    if isinstance(exc, InvalidKeyError | KeyTooLongError):
        return APIError(400, f"bad counter name: {exc}")
    return APIError(400, f"cannot {op} by {by}: {exc}")


def _limit(text: str | None) -> int:
    if text is None:
        return DEFAULT_PAGE
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_PAGE):
        shown = text if len(text) <= 20 else text[:17] + "..."
        raise APIError(400, f"limit must be an integer from 1 to {MAX_PAGE}, got {shown!r}")
    return int(text)


class _CounterRoutes:
    """The handlers, over the API object the other routes share."""

    def __init__(self, api: _API) -> None:
        self._api = api

    def _name(self, request: web.Request) -> str:
        return counter_name(request, self._api.node.config.max_key_length)

    def _state(self, name: str) -> CounterState:
        storage = self._api.storage
        if storage is not None and storage.problem is not None:
            return storage.committed_counter(name)  # never counts that were not committed
        return self._api.node.counters.state(name)

    async def get(self, request: web.Request) -> web.Response:
        name = self._name(request)
        state = self._state(name)
        return json_response(
            {
                "name": name,
                "value": state.value,
                "replica": self._api.node.replica_id,
                "increments": dict(state.increments),
                "decrements": dict(state.decrements),
            }
        )

    async def list_counters(self, request: web.Request) -> web.Response:
        query = request.query
        unknown = query.keys() - _LIST_PARAMETERS
        if unknown:
            raise APIError(400, f"unknown query parameter(s): {', '.join(sorted(unknown))}")
        limit = _limit(query.get("limit"))
        prefix = query.get("prefix", "")
        names = self._api.node.counters.names(prefix, after=query.get("after"), limit=limit + 1)
        page = names[:limit]
        return json_response(
            {
                "counters": [{"name": name, "value": self._state(name).value} for name in page],
                "next": page[-1] if len(names) > limit else None,
            }
        )

    async def increment(self, request: web.Request) -> web.Response:
        return await self._api.count(request, "increment", self._name(request))

    async def decrement(self, request: web.Request) -> web.Response:
        return await self._api.count(request, "decrement", self._name(request))

    async def watch(self, request: web.Request) -> web.StreamResponse:
        return await self._api.stream(request, self._name(request))


def counter_routes(api: _API) -> dict[str, dict[str, _Handler]]:
    """Path -> method -> handler, for :func:`._http.create_app` to register."""
    routes = _CounterRoutes(api)
    return {
        "/counters": {"GET": routes.list_counters},
        "/counters/{name}": {"GET": routes.get},
        "/counters/{name}/increment": {"POST": routes.increment},
        "/counters/{name}/decrement": {"POST": routes.decrement},
        "/counters/{name}/watch": {"GET": routes.watch},
    }

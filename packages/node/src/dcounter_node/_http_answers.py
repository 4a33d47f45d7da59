"""What every route of the node's HTTP API answers with: JSON bodies and typed refusals.

Shared by :mod:`._http` and :mod:`._http_counters`; every error is ``{"error": "..."}``.
"""

from __future__ import annotations

import json

from aiohttp import web

__all__ = ["APIError", "error_response", "json_response", "value_response"]


class APIError(Exception):
    """A request this API refuses, with the status and message to answer."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def json_response(data: object, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(data).encode(), status=status, content_type="application/json"
    )


def value_response(value: int) -> web.Response:
    # Every write answers this: formatted directly, as json.dumps is a measurable share of it.
    return web.Response(body=b'{"value": %d}' % value, content_type="application/json")


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    response = json_response({"error": message}, status)
    if headers:
        response.headers.update(headers)
    return response

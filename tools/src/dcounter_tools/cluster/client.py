"""A small client of one node's HTTP API (aiohttp), classifying write outcomes.

A write's outcome is one of three (see :class:`Outcome`); the distinction matters because
the launcher's expected value is the sum of acknowledged writes only:

* ACKED: a 2xx answer, the write counted (exactly once, thanks to its Idempotency-Key);
* FAILED: certainly not counted: the connection was refused, or the node answered 4xx
  (it validates before it counts);
* UNKNOWN: the request may or may not have been applied: a timeout, a connection dropped
  after sending, or a 5xx (the node answers 503 when a change was applied but could not be
  committed). Only a retry with the same key can settle it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp

from dcounter_tools.errors import ClusterError

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["APIError", "CounterView", "NodeClient", "OpResult", "Outcome"]


class Outcome(enum.Enum):
    """What is known about one write attempt."""

    ACKED = "acked"
    FAILED = "failed"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class OpResult:
    """The outcome of one write attempt, the value it returned and why it failed."""

    outcome: Outcome
    value: int | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class CounterView:
    """A node's ``GET /counter`` answer."""

    value: int
    replica: str
    increments: Mapping[str, int]
    decrements: Mapping[str, int]


class APIError(ClusterError):
    """A node did not answer an API call, or answered something the API does not promise."""


def _reason(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class NodeClient:
    """Requests to one node's HTTP API at ``http`` ("host:port"), on its own session.

    One session per node keeps connection pools apart, so a killed node's stale
    keep-alive connections never affect its restarted incarnation (its client is
    replaced).
    """

    def __init__(self, http: str, *, timeout: float = 5.0) -> None:
        self._http_address = http
        self._base = f"http://{http}"
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout, 2.0))
        self._session: aiohttp.ClientSession | None = None

    @property
    def address(self) -> str:
        """The node's HTTP "host:port"."""
        return self._http_address

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        """Close the session (idempotent)."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def _request(self, method: str, path: str, json: Any = None) -> tuple[int, Any]:
        """(status, JSON body or None); APIError when the node cannot be reached."""
        url = self._base + path
        try:
            async with self._http().request(method, url, json=json) as response:
                try:
                    body = await response.json(content_type=None)
                except ValueError:
                    body = None
                return response.status, body
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise APIError(f"{method} {path} on {self.address}: {_reason(exc)}") from exc

    async def _get_json(self, path: str) -> Any:
        status, body = await self._request("GET", path)
        if status != 200:
            raise APIError(f"GET {path} on {self.address} answered {status}")
        return body

    async def counter(self) -> CounterView:
        """The node's value, replica id and per-replica counts."""
        data = await self._get_json("/counter")
        try:
            return CounterView(
                int(data["value"]),
                str(data["replica"]),
                {str(k): int(v) for k, v in data["increments"].items()},
                {str(k): int(v) for k, v in data["decrements"].items()},
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise APIError(f"GET /counter answered an unexpected document: {exc}") from None

    async def peers(self) -> list[str]:
        """The node's peer list."""
        data = await self._get_json("/peers")
        try:
            return [str(p) for p in data["peers"]]
        except (KeyError, TypeError) as exc:
            raise APIError(f"GET /peers answered an unexpected document: {exc!r}") from None

    async def add_peer(self, address: str) -> None:
        """``POST /peers``; APIError unless the node accepted it."""
        status, body = await self._request("POST", "/peers", {"addr": address})
        if status not in (200, 201):
            raise APIError(f"POST /peers {address} on {self.address} answered {status}: {body}")

    async def remove_peer(self, address: str) -> bool:
        """``DELETE /peers/{addr}``; False if the node did not have it."""
        status, body = await self._request("DELETE", f"/peers/{address}")
        if status == 404:
            return False
        if status != 200:
            raise APIError(f"DELETE /peers/{address} on {self.address} answered {status}: {body}")
        return True

    async def change(self, delta: int, *, key: str | None = None) -> OpResult:
        """Add ``delta`` (non-zero) through ``POST /increment`` or ``/decrement``."""
        path = "increment" if delta > 0 else "decrement"
        headers = {"Idempotency-Key": key} if key is not None else None
        try:
            async with self._http().post(
                f"{self._base}/{path}", json={"by": abs(delta)}, headers=headers
            ) as response:
                if 200 <= response.status < 300:
                    data = await response.json()
                    return OpResult(Outcome.ACKED, int(data["value"]))
                text = (await response.text())[:200]
                outcome = Outcome.FAILED if response.status < 500 else Outcome.UNKNOWN
                return OpResult(outcome, None, f"HTTP {response.status}: {text}")
        except aiohttp.ClientConnectorError as exc:
            # Nothing was sent: the node is down or not listening.
            return OpResult(Outcome.FAILED, None, _reason(exc))
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError) as exc:
            return OpResult(Outcome.UNKNOWN, None, _reason(exc))

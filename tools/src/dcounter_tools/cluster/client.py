"""The launcher's view of one node's HTTP API, through :mod:`dcounter_client`.

Each write attempt is one request (``retries=0``): the load driver runs its own retries,
because it records every attempt, and settles unknown writes later (``reconcile``). A
write's outcome is one of three (see :class:`Outcome`); the distinction matters because
the launcher's expected value is the sum of acknowledged writes only:

* ACKED: a 2xx answer, the write counted (exactly once, thanks to its Idempotency-Key);
* FAILED: certainly not counted: the connection was refused
  (:class:`~dcounter_client.UnavailableError`), or the node answered 4xx
  (:class:`~dcounter_client.RejectedError`: it validates before it counts);
* UNKNOWN: the request may or may not have been applied
  (:class:`~dcounter_client.IndeterminateError`: a timeout, a connection dropped after
  sending, or a 5xx). Only a retry with the same key can settle it.

:class:`APIAccess` says how the nodes' APIs are reached: plain HTTP, or (``--tls``) HTTPS
trusting the cluster's own CA, with an API token.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from dcounter_client import (
    AsyncClient,
    ClientError,
    CounterSnapshot,
    IndeterminateError,
    Member,
    RejectedError,
    ResponseError,
    UnavailableError,
)
from dcounter_tools.cluster.keys import DEFAULT_COUNTER
from dcounter_tools.errors import ClusterError

__all__ = ["APIAccess", "APIError", "CounterView", "NodeClient", "OpResult", "Outcome"]

#: A node's ``GET /counter`` answer.
CounterView = CounterSnapshot
#: Counters listed per request (the nodes' maximum).
_PAGE = 1000


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
class APIAccess:
    """How the launcher reaches every node's API.

    Plain HTTP by default; with ``ca`` (a CA bundle's path), HTTPS trusting that bundle
    only; with ``token``, every request carries ``Authorization: Bearer`` with it.
    """

    ca: str | None = None
    token: str | None = field(default=None, repr=False)

    @property
    def scheme(self) -> str:
        return "http" if self.ca is None else "https"

    def url(self, http: str) -> str:
        """The base URL of the API at ``http`` ("host:port")."""
        return f"{self.scheme}://{http}"


#: Plain HTTP, no token.
PLAIN = APIAccess()


class APIError(ClusterError):
    """A node did not answer an API call, or answered something the API does not promise."""


class NodeClient:
    """Requests to one node's HTTP API at ``http`` ("host:port"), one attempt each, reached
    as ``access`` says (plain HTTP unless given).

    One client (and connection pool) per node incarnation: a killed node's client is
    replaced, so its stale keep-alive connections never meet the restarted node.
    """

    def __init__(self, http: str, *, timeout: float = 5.0, access: APIAccess = PLAIN) -> None:
        self._http_address = http
        self._client = AsyncClient(
            access.url(http),
            token=access.token,
            verify=True if access.ca is None else access.ca,
            timeout=timeout,
            retries=0,
            deadline=timeout,
        )

    @property
    def address(self) -> str:
        """The node's HTTP "host:port"."""
        return self._http_address

    async def close(self) -> None:
        """Close the connection pool (idempotent)."""
        await self._client.aclose()

    async def counter(self) -> CounterView:
        """The node's value, replica id and per-replica counts."""
        try:
            return await self._client.counter()
        except ClientError as exc:
            raise APIError(f"GET /counter on {self.address}: {exc}") from exc

    async def peers(self) -> list[str]:
        """The node's peer list."""
        try:
            return await self._client.peers()
        except ClientError as exc:
            raise APIError(f"GET /peers on {self.address}: {exc}") from exc

    async def members(self) -> list[Member]:
        """The node's member list as it sees it (``GET /members``)."""
        try:
            return await self._client.members()
        except ClientError as exc:
            raise APIError(f"GET /members on {self.address}: {exc}") from exc

    async def add_peer(self, address: str) -> None:
        """``POST /peers``; APIError unless the node accepted it."""
        try:
            await self._client.add_peer(address)
        except ClientError as exc:
            raise APIError(f"POST /peers {address} on {self.address}: {exc}") from exc

    async def remove_peer(self, address: str) -> bool:
        """``DELETE /peers/{addr}``; False if the node did not have it."""
        try:
            return await self._client.remove_peer(address)
        except ClientError as exc:
            raise APIError(f"DELETE /peers/{address} on {self.address}: {exc}") from exc

    async def values(self) -> dict[str, int]:
        """Every counter the node holds, by name (``GET /counters``, page by page)."""
        values: dict[str, int] = {}
        after: str | None = None
        try:
            while True:
                page = await self._client.counters(after=after, limit=_PAGE)
                values.update(page.counters)
                if page.next is None:
                    return values
                after = page.next
        except ClientError as exc:
            raise APIError(f"GET /counters on {self.address}: {exc}") from exc

    async def change(self, delta: int, *, key: str, name: str = DEFAULT_COUNTER) -> OpResult:
        """Add ``delta`` (non-zero) to counter ``name`` through ``POST /increment`` or
        ``/decrement`` (``/counters/{name}/...`` for a named counter)."""
        write = self._client.increment if delta > 0 else self._client.decrement
        try:
            value = await write(abs(delta), key=key, name=name)
        except RejectedError as exc:
            return OpResult(Outcome.FAILED, None, f"HTTP {exc.status}: {exc.message[:200]}")
        except UnavailableError as exc:
            # Nothing was sent: the node is down or not listening.
            return OpResult(Outcome.FAILED, None, "; ".join(exc.errors.values()))
        except IndeterminateError as exc:
            return OpResult(Outcome.UNKNOWN, None, exc.reason)
        except ResponseError as exc:
            return OpResult(Outcome.UNKNOWN, None, str(exc))
        return OpResult(Outcome.ACKED, value)

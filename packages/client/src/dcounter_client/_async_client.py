"""The asyncio client, on one ``httpx.AsyncClient`` connection pool."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Final, TypeVar

import httpx

from dcounter_client._answers import (
    health_failed,
    health_of,
    parse_counter,
    parse_members,
    parse_peers,
    parse_value,
)
from dcounter_client._client import DEFAULT_TIMEOUT
from dcounter_client._core import (
    DEFAULT_NAME,
    ClientCore,
    Request,
    tls_verify,
)
from dcounter_client._errors import ResponseError
from dcounter_client._policy import Failure, RetryPolicy

if TYPE_CHECKING:
    import ssl
    from collections.abc import AsyncGenerator, Iterable
    from types import TracebackType
    from typing import Self

    from dcounter_client._types import CounterPage, CounterSnapshot, Member, NodeHealth

__all__ = ["AsyncClient"]

T = TypeVar("T")

_PEERS: Final = Request("GET", "/peers", parse_peers, anywhere=False)
_MEMBERS: Final = Request("GET", "/members", parse_members, anywhere=False)


class AsyncClient:
    """A dcounter client for asyncio code: :class:`Client`'s methods, awaitable.

    ``urls``: the nodes ("http://host:port" or "host:port"), tried in order and sticking
    to the one that answered last. ``token`` goes out as ``Authorization: Bearer``.
    ``verify``: how to check an https node's certificate: True (the system's CAs), an
    :class:`ssl.SSLContext`, the path of a CA bundle, or False (no check).
    ``timeout``: seconds per attempt. ``retries``, ``deadline``, ``backoff``: see
    :class:`RetryPolicy` (or pass ``policy``). Use it as a context manager, or call
    :meth:`aclose`, to release its connections. Owned by one event loop; any number of
    its tasks may share it.
    """

    def __init__(
        self,
        urls: str | Iterable[str],
        *,
        token: str | None = None,
        verify: ssl.SSLContext | str | bool = True,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = RetryPolicy.retries,
        deadline: float = RetryPolicy.deadline,
        backoff: float = RetryPolicy.backoff,
        policy: RetryPolicy | None = None,
    ) -> None:
        if policy is None:
            policy = RetryPolicy(retries=retries, deadline=deadline, backoff=backoff)
        self._core = ClientCore(urls, token=token, timeout=timeout, policy=policy)
        self._http = httpx.AsyncClient(
            headers=self._core.headers, timeout=timeout, verify=tls_verify(verify)
        )

    @property
    def urls(self) -> tuple[str, ...]:
        """The nodes' base URLs, as normalized."""
        return self._core.urls

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every pooled connection (idempotent)."""
        await self._http.aclose()

    async def increment(
        self, by: int = 1, *, key: str | None = None, name: str = DEFAULT_NAME
    ) -> int:
        """Add ``by`` (1 to 2**64-1) to counter ``name`` exactly once; its value just after.

        ``key``: the Idempotency-Key (default: a new random one), to settle an earlier
        :class:`IndeterminateError` on the node it names. ``name``: the counter (any
        non-empty text; ``"default"`` is the nodes' original single counter).
        """
        return await self._run(self._core.write("increment", by, key, name))

    async def decrement(
        self, by: int = 1, *, key: str | None = None, name: str = DEFAULT_NAME
    ) -> int:
        """Subtract ``by`` from counter ``name`` exactly once; see :meth:`increment`."""
        return await self._run(self._core.write("decrement", by, key, name))

    async def value(self, name: str = DEFAULT_NAME) -> int:
        """Counter ``name``'s value as one node sees it (0 for a name never counted)."""
        return await self._run(self._core.read(name, parse_value))

    async def counter(self, name: str = DEFAULT_NAME) -> CounterSnapshot:
        """One node's value, replica id and per-replica counts of counter ``name``."""
        return await self._run(self._core.read(name, parse_counter))

    async def counters(
        self, prefix: str = "", *, after: str | None = None, limit: int = 100
    ) -> CounterPage:
        """One page of one node's counters whose names start with ``prefix``, in order.

        Pass the page's ``next`` as ``after`` for the following page (``limit``: 1 to
        1000 names per page).
        """
        return await self._run(self._core.page(prefix, after, limit))

    async def peers(self) -> list[str]:
        """The first node's peers ("host:port" gossip addresses).

        Peer administration goes to the first URL only, never failing over: each node has
        its own peer list. Retries are harmless (adding or removing twice changes nothing).
        """
        return await self._run(_PEERS)

    async def members(self) -> list[Member]:
        """The first node's member list (``GET /members``), sorted by address.

        No failover: each node has its own view of the cluster.
        """
        return await self._run(_MEMBERS)

    async def add_peer(self, address: str) -> bool:
        """Add a gossip peer to the first node; True if it was new."""
        return await self._run(self._core.add_peer(address))

    async def remove_peer(self, address: str) -> bool:
        """Remove a gossip peer from the first node; False if it did not have it."""
        return await self._run(self._core.remove_peer(address))

    async def health(self) -> list[NodeHealth]:
        """Every node's ``GET /health`` (asked at once, one attempt each); never raises."""

        async def ask(node: str) -> NodeHealth:
            try:
                response = await self._http.get(node + "/health")
            except httpx.TransportError as exc:
                return health_failed(node, exc)
            return health_of(node, response.status_code, response.content)

        return list(await asyncio.gather(*(ask(node) for node in self._core.urls)))

    async def watch(
        self, name: str = DEFAULT_NAME, *, idle_timeout: float = 60.0
    ) -> AsyncGenerator[int, None]:
        """Counter ``name``'s value now, then each new value, reconnecting across restarts
        and failures.

        Gives up with :class:`UnavailableError` once no node has answered for the
        deadline. ``idle_timeout``: reconnect when not even a keepalive came for that long.
        ``aclose()`` the iterator (or leave the loop) to end the stream.
        """
        watch = self._core.watch(name)
        while True:
            try:
                timeout = watch.timeout(idle_timeout, time.monotonic())
                async with self._http.stream("GET", watch.url, timeout=timeout) as response:
                    if response.status_code != 200:
                        await response.aread()
                        failure = watch.refused(response.status_code, response.content)
                    else:
                        async for line in response.aiter_lines():
                            value = watch.line(line)
                            if value is not None:
                                yield value
                        failure = watch.ended()
            except httpx.TransportError as exc:
                failure = watch.transport_failed(exc)
            except httpx.HTTPError as exc:  # an undecodable stream
                raise ResponseError(f"{watch.url} answered garbage: {exc}") from exc
            await asyncio.sleep(watch.next(failure, time.monotonic()))

    async def _run(self, request: Request[T]) -> T:
        call = self._core.call(request, time.monotonic())
        while True:
            try:
                response = await self._http.request(
                    request.method,
                    call.url,
                    content=request.body,
                    headers=request.headers,
                    timeout=call.timeout(time.monotonic()),
                )
            except httpx.TransportError as exc:
                failure = call.transport_failed(exc)
            except httpx.HTTPError as exc:  # an undecodable answer
                raise ResponseError(f"{call.node} answered garbage: {exc}") from exc
            else:
                result = call.answered(response.status_code, response.content)
                if not isinstance(result, Failure):
                    return result
                failure = result
            await asyncio.sleep(call.next(failure, time.monotonic()))

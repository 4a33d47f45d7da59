"""The blocking client, on one ``httpx.Client`` connection pool."""

from __future__ import annotations

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
    from collections.abc import Generator, Iterable
    from types import TracebackType
    from typing import Self

    from dcounter_client._types import CounterPage, CounterSnapshot, Member, NodeHealth

__all__ = ["DEFAULT_TIMEOUT", "Client"]

T = TypeVar("T")

#: Seconds one attempt may wait for its answer.
DEFAULT_TIMEOUT: Final = 5.0
_PEERS: Final = Request("GET", "/peers", parse_peers, anywhere=False)
_MEMBERS: Final = Request("GET", "/members", parse_members, anywhere=False)


class Client:
    """A dcounter client for blocking code; see the package README for the semantics.

    ``urls``: the nodes ("http://host:port" or "host:port"), tried in order and sticking
    to the one that answered last. ``token`` goes out as ``Authorization: Bearer``.
    ``verify``: how to check an https node's certificate: True (the system's CAs), an
    :class:`ssl.SSLContext`, the path of a CA bundle, or False (no check).
    ``timeout``: seconds per attempt. ``retries``, ``deadline``, ``backoff``: see
    :class:`RetryPolicy` (or pass ``policy``). Use it as a context manager, or call
    :meth:`close`, to release its connections. Safe to share between threads.
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
        self._http = httpx.Client(
            headers=self._core.headers, timeout=timeout, verify=tls_verify(verify)
        )

    @property
    def urls(self) -> tuple[str, ...]:
        """The nodes' base URLs, as normalized."""
        return self._core.urls

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close every pooled connection (idempotent)."""
        self._http.close()

    def increment(self, by: int = 1, *, key: str | None = None, name: str = DEFAULT_NAME) -> int:
        """Add ``by`` (1 to 2**64-1) to counter ``name`` exactly once; its value just after.

        ``key``: the Idempotency-Key (default: a new random one), to settle an earlier
        :class:`IndeterminateError` on the node it names. ``name``: the counter (any
        non-empty text; ``"default"`` is the nodes' original single counter).
        """
        return self._run(self._core.write("increment", by, key, name))

    def decrement(self, by: int = 1, *, key: str | None = None, name: str = DEFAULT_NAME) -> int:
        """Subtract ``by`` from counter ``name`` exactly once; see :meth:`increment`."""
        return self._run(self._core.write("decrement", by, key, name))

    def value(self, name: str = DEFAULT_NAME) -> int:
        """Counter ``name``'s value as one node sees it (0 for a name never counted)."""
        return self._run(self._core.read(name, parse_value))

    def counter(self, name: str = DEFAULT_NAME) -> CounterSnapshot:
        """One node's value, replica id and per-replica counts of counter ``name``."""
        return self._run(self._core.read(name, parse_counter))

    def counters(
        self, prefix: str = "", *, after: str | None = None, limit: int = 100
    ) -> CounterPage:
        """One page of one node's counters whose names start with ``prefix``, in order.

        Pass the page's ``next`` as ``after`` for the following page (``limit``: 1 to
        1000 names per page).
        """
        return self._run(self._core.page(prefix, after, limit))

    def peers(self) -> list[str]:
        """The first node's peers ("host:port" gossip addresses).

        Peer administration goes to the first URL only, never failing over: each node has
        its own peer list. Retries are harmless (adding or removing twice changes nothing).
        """
        return self._run(_PEERS)

    def members(self) -> list[Member]:
        """The first node's member list (``GET /members``), sorted by address.

        No failover: each node has its own view of the cluster.
        """
        return self._run(_MEMBERS)

    def add_peer(self, address: str) -> bool:
        """Add a gossip peer to the first node; True if it was new."""
        return self._run(self._core.add_peer(address))

    def remove_peer(self, address: str) -> bool:
        """Remove a gossip peer from the first node; False if it did not have it."""
        return self._run(self._core.remove_peer(address))

    def health(self) -> list[NodeHealth]:
        """Every node's ``GET /health`` (one attempt each); never raises."""
        results = []
        for node in self._core.urls:
            try:
                response = self._http.get(node + "/health")
            except httpx.TransportError as exc:
                results.append(health_failed(node, exc))
            else:
                results.append(health_of(node, response.status_code, response.content))
        return results

    def watch(
        self, name: str = DEFAULT_NAME, *, idle_timeout: float = 60.0
    ) -> Generator[int, None, None]:
        """Counter ``name``'s value now, then each new value, reconnecting across restarts
        and failures.

        Gives up with :class:`UnavailableError` once no node has answered for the
        deadline. ``idle_timeout``: reconnect when not even a keepalive came for that long.
        Close the iterator (or leave the loop) to end the stream.
        """
        watch = self._core.watch(name)
        while True:
            try:
                timeout = watch.timeout(idle_timeout, time.monotonic())
                with self._http.stream("GET", watch.url, timeout=timeout) as response:
                    if response.status_code != 200:
                        response.read()
                        failure = watch.refused(response.status_code, response.content)
                    else:
                        for line in response.iter_lines():
                            value = watch.line(line)
                            if value is not None:
                                yield value
                        failure = watch.ended()
            except httpx.TransportError as exc:
                failure = watch.transport_failed(exc)
            except httpx.HTTPError as exc:  # an undecodable stream
                raise ResponseError(f"{watch.url} answered garbage: {exc}") from exc
            time.sleep(watch.next(failure, time.monotonic()))

    def _run(self, request: Request[T]) -> T:
        call = self._core.call(request, time.monotonic())
        while True:
            try:
                response = self._http.request(
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
            time.sleep(call.next(failure, time.monotonic()))

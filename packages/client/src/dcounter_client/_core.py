"""What the sync and async clients share: requests and retry bookkeeping.

Nothing here does I/O. A client builds a :class:`Request`, starts a :class:`Call` and runs
the loop: send to :attr:`Call.url`, hand the answer to :meth:`Call.answered` or the
transport error to :meth:`Call.transport_failed`, and sleep for :meth:`Call.next`, which
raises the right error when the policy gives up. httpx's exceptions are mapped to a
:class:`~dcounter_client._policy.Failure` here, at one place; answers are read in
:mod:`dcounter_client._answers`.
"""

from __future__ import annotations

import dataclasses
import json
import random
import ssl
import sys
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Generic, TypeVar
from urllib.parse import quote, urlencode

import httpx

from dcounter_client._answers import (
    describe,
    error_message,
    parse_page,
    parse_peer_added,
    parse_peer_removed,
    parse_value,
)
from dcounter_client._errors import (
    IndeterminateError,
    InvalidArgumentError,
    RejectedError,
    UnavailableError,
)
from dcounter_client._policy import Failure, GiveUp, RetryPolicy
from dcounter_client._sse import SSEDecoder

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from dcounter_client._policy import Attempts
    from dcounter_client._types import CounterPage

__all__ = ["DEFAULT_NAME", "Call", "ClientCore", "Request", "WatchCall"]

T = TypeVar("T")

#: Amounts must fit the nodes' uint64 counts.
MAX_AMOUNT: Final = 2**64 - 1
_MAX_KEY_LENGTH: Final = 255
_OPERATIONS: Final = frozenset({"increment", "decrement"})
#: The counter the nodes' original routes (``/counter``, ``/increment``, ...) count.
DEFAULT_NAME: Final = "default"
#: Names listed per page at most (the nodes' own bound).
MAX_PAGE: Final = 1000


def _normalize_url(url: object) -> str:
    if not isinstance(url, str) or not url.strip():
        raise InvalidArgumentError(f"a node URL must be a non-empty string, got {url!r}")
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    text = text.rstrip("/") if text.count("/") > 2 else text
    try:
        parsed = httpx.URL(text)
    except httpx.InvalidURL as exc:
        raise InvalidArgumentError(f"bad node URL {url!r}: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InvalidArgumentError(f"bad node URL {url!r}: want http(s)://host:port")
    return text


def normalize_urls(urls: str | Iterable[str]) -> tuple[str, ...]:
    """``urls`` as base URLs without a trailing slash ("host:port" gets ``http://``)."""
    items = [urls] if isinstance(urls, str) else list(urls)
    if not items:
        raise InvalidArgumentError("at least one node URL is needed")
    normalized = tuple(_normalize_url(url) for url in items)
    if len(set(normalized)) != len(normalized):
        raise InvalidArgumentError(f"node URLs repeat: {', '.join(normalized)}")
    return normalized


def tls_verify(verify: object) -> ssl.SSLContext | bool:
    """``verify`` as httpx takes it: a CA bundle's path becomes an SSLContext trusting it."""
    if isinstance(verify, bool | ssl.SSLContext):
        return verify
    if isinstance(verify, str) and verify:
        try:
            return ssl.create_default_context(cafile=verify)
        except (OSError, ValueError) as exc:  # ssl.SSLError included: not PEM
            raise InvalidArgumentError(f"cannot use {verify!r} as a CA bundle: {exc}") from None
    raise InvalidArgumentError(
        f"verify must be True, False, an ssl.SSLContext or a CA bundle's path, got {verify!r}"
    )


def check_amount(by: object) -> int:
    if type(by) is not int or not 1 <= by <= MAX_AMOUNT:
        raise InvalidArgumentError(f"by must be an int from 1 to 2**64-1, got {by!r}")
    return by


def check_key(key: object) -> str:
    if (
        not isinstance(key, str)
        or not 1 <= len(key) <= _MAX_KEY_LENGTH
        or not key.isascii()
        or not key.isprintable()
    ):
        raise InvalidArgumentError(
            f"key must be 1 to {_MAX_KEY_LENGTH} printable ASCII characters, got {key!r}"
        )
    return key


def check_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise InvalidArgumentError(f"a counter name must be a non-empty string, got {name!r}")
    try:
        name.encode()
    except UnicodeEncodeError:
        raise InvalidArgumentError(f"a counter name must be UTF-8 text, got {name!r}") from None
    return name


def counter_path(name: object, route: str = "") -> str:
    """The path of counter ``name``'s ``route`` ("", "increment", "decrement", "watch").

    The default counter keeps its original routes, which every node version serves; other
    names are one percent-encoded path segment under ``/counters/``.
    """
    name = check_name(name)
    if name == DEFAULT_NAME:
        return {"": "/counter", "watch": "/counter/watch"}.get(route, f"/{route}")
    path = "/counters/" + quote(name, safe="")
    return f"{path}/{route}" if route else path


def _check_address(address: object) -> str:
    if not isinstance(address, str) or not address or not address.isprintable():
        raise InvalidArgumentError(f'a peer address must be a "host:port" string: {address!r}')
    return address


def classify(exc: httpx.TransportError) -> Failure:
    """Whether the request of a failed attempt can have reached the node."""
    # Connection setup failed (refused, DNS, connect timeout) or no connection was free:
    # not one byte of the request was sent.
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return Failure.NOT_SENT
    return Failure.UNKNOWN


@dataclass(frozen=True, slots=True)
class Request(Generic[T]):
    """One logical request: what to send, and how to read a 2xx answer (or ``accept``)."""

    method: str
    path: str
    #: (node URL, status, body) -> the call's result.
    parse: Callable[[str, int, bytes], T]
    body: bytes | None = None
    headers: Mapping[str, str] | None = None
    #: For writes: the operation, amount and Idempotency-Key.
    operation: str | None = None
    by: int = 0
    key: str = ""
    #: False: only the first node can answer (its own peer list): no failover.
    anywhere: bool = True
    #: A non-2xx status that is an answer, not an error (404 for a peer not there).
    accept: int | None = None


class ClientCore:
    """A client's configuration and the state its calls share (the preferred node)."""

    def __init__(
        self,
        urls: str | Iterable[str],
        *,
        token: str | None,
        timeout: float,
        policy: RetryPolicy,
        rng: random.Random | None = None,
    ) -> None:
        self.urls = normalize_urls(urls)
        if not timeout > 0:
            raise InvalidArgumentError(f"timeout must be a number > 0, got {timeout!r}")
        if token is not None and not token.isprintable():
            raise InvalidArgumentError("token must be a printable string")
        self.timeout = float(timeout)
        self.policy = policy
        self.rng = rng if rng is not None else random.Random()
        self.headers = {"Accept": "application/json"}
        if token is not None:
            self.headers["Authorization"] = f"Bearer {token}"
        #: Index of the node that answered last: calls start there.
        self.preferred = 0

    def write(
        self, operation: str, by: object, key: str | None, name: str = DEFAULT_NAME
    ) -> Request[int]:
        assert operation in _OPERATIONS
        path = counter_path(name, operation)
        amount = check_amount(by)
        key = uuid.uuid4().hex if key is None else check_key(key)
        return Request(
            "POST",
            path,
            parse_value,
            b'{"by": %d}' % amount,
            {"Content-Type": "application/json", "Idempotency-Key": key},
            operation,
            amount,
            key,
        )

    def read(self, name: str, parse: Callable[[str, int, bytes], T]) -> Request[T]:
        """``GET`` counter ``name``, read by ``parse`` (its value or its snapshot)."""
        return Request("GET", counter_path(name), parse)

    def page(self, prefix: object, after: object, limit: object) -> Request[CounterPage]:
        if not isinstance(prefix, str):
            raise InvalidArgumentError(f"prefix must be a string, got {prefix!r}")
        if prefix:
            check_name(prefix)  # the start of a name: UTF-8 text
        if type(limit) is not int or not 1 <= limit <= MAX_PAGE:
            raise InvalidArgumentError(f"limit must be an int from 1 to {MAX_PAGE}, got {limit!r}")
        query = {"prefix": prefix, "limit": str(limit)}
        if after is not None:
            query["after"] = check_name(after)
        return Request("GET", "/counters?" + urlencode(query, quote_via=quote), parse_page)

    def add_peer(self, address: str) -> Request[bool]:
        body = json.dumps({"addr": _check_address(address)}).encode()
        headers = {"Content-Type": "application/json"}
        return Request("POST", "/peers", parse_peer_added, body, headers, anywhere=False)

    def remove_peer(self, address: str) -> Request[bool]:
        path = "/peers/" + quote(_check_address(address), safe=":[]")
        return Request("DELETE", path, parse_peer_removed, anywhere=False, accept=404)

    def call(self, request: Request[T], now: float) -> Call[T]:
        return Call(self, request, now)

    def watch(self, name: str = DEFAULT_NAME) -> WatchCall:
        return WatchCall(self, counter_path(name, "watch"))


class Call(Generic[T]):
    """One logical request through its attempts (see the module docstring)."""

    def __init__(self, core: ClientCore, request: Request[T], now: float) -> None:
        self._core = core
        self.request = request
        self._attempts = core.policy.begin(
            nodes=len(core.urls) if request.anywhere else 1,
            first=core.preferred if request.anywhere else 0,
            write=request.operation is not None,
            now=now,
            rng=core.rng,
        )
        self._errors: dict[str, str] = {}

    @property
    def node(self) -> str:
        return self._core.urls[self._attempts.node]

    @property
    def url(self) -> str:
        return self.node + self.request.path

    def timeout(self, now: float) -> float:
        return self._attempts.timeout(self._core.timeout, now)

    def answered(self, status: int, content: bytes) -> T | Failure:
        """The answer's value, or the failure to retry; raises RejectedError for a 4xx."""
        node = self.node
        if 200 <= status < 300 or status == self.request.accept:
            value = self.request.parse(node, status, content)
            if self.request.anywhere:
                self._core.preferred = self._attempts.node
            return value
        message = error_message(content)
        if 400 <= status < 500:
            raise RejectedError(node, status, message)
        self._errors[node] = f"HTTP {status}: {message}"
        # A node that applied a write but could not commit it answers 503.
        return Failure.UNKNOWN

    def transport_failed(self, exc: httpx.TransportError) -> Failure:
        self._errors[self.node] = describe(exc)
        return classify(exc)

    def next(self, failure: Failure, now: float) -> float:
        """Seconds to wait before the next attempt; raises when the policy gives up."""
        step = self._attempts.failed(failure, now)
        if isinstance(step, GiveUp):
            raise self._give_up(step)
        return step.delay

    def _give_up(self, step: GiveUp) -> Exception:
        request = self.request
        if step.indeterminate and request.operation is not None:
            node = self._core.urls[step.node]
            return IndeterminateError(
                node, request.key, request.operation, request.by, self._errors.get(node, "")
            )
        return UnavailableError(self._errors)


class WatchCall:
    """The state of one ``watch()``: the SSE decoder, the last value, reconnections.

    Reconnects (to the same node or, as watching is a read, to the next) until no node
    has answered for the policy's ``deadline``; the retry count does not apply.
    """

    def __init__(self, core: ClientCore, path: str = "/counter/watch") -> None:
        self._core = core
        self._path = path
        self._policy = dataclasses.replace(core.policy, retries=sys.maxsize)
        self._node = core.preferred
        self._attempts: Attempts | None = None
        self._decoder = SSEDecoder()
        self._last: int | None = None
        self._errors: dict[str, str] = {}

    @property
    def url(self) -> str:
        return self._core.urls[self._node] + self._path

    def timeout(self, idle_timeout: float, now: float) -> httpx.Timeout:
        connect = self._core.timeout
        if self._attempts is not None:
            connect = self._attempts.timeout(connect, now)
        return httpx.Timeout(connect, read=idle_timeout)

    def refused(self, status: int, content: bytes) -> Failure:
        """A non-200 answer to the watch request: raise for a 4xx, retry a 5xx."""
        node = self._core.urls[self._node]
        message = error_message(content)
        if 400 <= status < 500:
            raise RejectedError(node, status, message)
        self._errors[node] = f"HTTP {status}: {message}"
        return Failure.UNKNOWN

    def line(self, line: str) -> int | None:
        """A new value when ``line`` completes an event carrying one, else None."""
        data = self._decoder.feed(line)
        if data is None:
            return None
        node = self._core.urls[self._node]
        value = parse_value(node, 200, data.encode())
        self._attempts = None  # connected and serving: reconnections start afresh
        self._errors.clear()
        if value == self._last:
            return None
        self._last = value
        return value

    def ended(self) -> Failure:
        """The stream ended (the node shut down): reconnect."""
        self._errors[self._core.urls[self._node]] = "the stream ended"
        self._decoder = SSEDecoder()
        return Failure.UNKNOWN

    def transport_failed(self, exc: httpx.TransportError) -> Failure:
        self._errors[self._core.urls[self._node]] = describe(exc)
        self._decoder = SSEDecoder()
        return Failure.UNKNOWN

    def next(self, failure: Failure, now: float) -> float:
        if self._attempts is None:
            self._attempts = self._policy.begin(
                nodes=len(self._core.urls),
                first=self._node,
                write=False,
                now=now,
                rng=self._core.rng,
            )
        step = self._attempts.failed(failure, now)
        if isinstance(step, GiveUp):
            raise UnavailableError(self._errors)
        self._node = step.node
        return step.delay

"""API tokens: the token file, which scope each route needs, and the check in front of it.

A token file holds one ``SCOPE TOKEN`` pair per line (blank lines and lines starting with
``#`` are ignored). Scopes are ordered: ``read`` < ``write`` < ``admin``, and a token of
one scope may do everything the lower ones may. Requests carry ``Authorization: Bearer
TOKEN``; a missing or unknown token gets a 401, a token whose scope is too low a 403.

The decisions are pure: :func:`required_scope` maps a route to the scope it needs (its
table, :data:`ROUTE_SCOPES`, is the one place to look), and :func:`decide` turns that and
the presented token's scope into an answer. :func:`require_token` only applies them, as a
wrapper around each route's handler.

Tokens are never logged, and a presented token is compared with every configured one in
constant time (SHA-256 digests through :func:`hmac.compare_digest`, so not even its length
leaks).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from aiohttp import web

from dcounter_node._errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "ROUTE_SCOPES",
    "UNMATCHED_ROUTE",
    "ApiTokens",
    "Decision",
    "RefusalLog",
    "Scope",
    "decide",
    "parse_tokens",
    "require_token",
    "required_scope",
]

_log = logging.getLogger(__name__)


class Scope(enum.IntEnum):
    """What a token may do; a higher scope includes the lower ones."""

    READ = 1
    WRITE = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()


#: The canonical path of :mod:`dcounter_node._http`'s catch-all route (unknown paths).
UNMATCHED_ROUTE: Final = "/{tail}"

#: Route (aiohttp's canonical resource path) -> method -> scope needed (None: open to all).
#: HEAD needs what GET needs. A route missing here needs ADMIN, so an endpoint added without
#: a row is closed rather than open; another method on a listed route needs READ (it only
#: earns a 405).
ROUTE_SCOPES: Final[Mapping[str, Mapping[str, Scope | None]]] = {
    # Open: load balancers probe health, and the dashboard page must load to ask for a token.
    "/health": {"GET": None},
    "/": {"GET": None},
    "/dashboard/{name}": {"GET": None},
    "/counter": {"GET": Scope.READ},
    "/counter/value": {"GET": Scope.READ},
    "/counter/watch": {"GET": Scope.READ},
    "/metrics": {"GET": Scope.READ},
    "/cluster": {"GET": Scope.READ},
    "/increment": {"POST": Scope.WRITE},
    "/decrement": {"POST": Scope.WRITE},
    "/counters": {"GET": Scope.READ},
    "/counters/{name}": {"GET": Scope.READ},
    "/counters/{name}/watch": {"GET": Scope.READ},
    "/counters/{name}/increment": {"POST": Scope.WRITE},
    "/counters/{name}/decrement": {"POST": Scope.WRITE},
    # Reading the peer list shows no more than /cluster does; changing it is admin work.
    "/peers": {"GET": Scope.READ, "POST": Scope.ADMIN},
    "/peers/{addr}": {"DELETE": Scope.ADMIN},
    "/members": {"GET": Scope.READ},
    # Every path no route matches: a valid token learns that it is a 404.
    UNMATCHED_ROUTE: {},
}


def required_scope(method: str, route: str) -> Scope | None:
    """The scope a request for ``route`` (a canonical resource path) needs; None if open."""
    methods = ROUTE_SCOPES.get(route)
    if methods is None:
        return Scope.ADMIN
    if method == "HEAD":
        method = "GET"
    return methods.get(method, Scope.READ)


class Decision(enum.Enum):
    """What to do with a request, given the scope it needs and the token it carries."""

    ALLOW = 200
    UNAUTHENTICATED = 401
    FORBIDDEN = 403


def decide(required: Scope | None, presented: Scope | None) -> Decision:
    """Allow, or refuse as 401 (no valid token) or 403 (a valid token of too low a scope)."""
    if required is None:
        return Decision.ALLOW
    if presented is None:
        return Decision.UNAUTHENTICATED
    return Decision.ALLOW if presented >= required else Decision.FORBIDDEN


# -- the token file --------------------------------------------------------------------------


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def parse_tokens(text: str, *, source: str = "<tokens>") -> list[tuple[Scope, str]]:
    """The (scope, token) pairs of a token file's text; ConfigError naming the bad line."""
    entries: list[tuple[Scope, str]] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        where = f"{source}, line {number}"
        fields = stripped.split()
        if len(fields) != 2:
            raise ConfigError(
                f"{where}: expected SCOPE TOKEN (two words: read, write or admin, then the"
                f" token), got {len(fields)} word(s)"
            )
        scope_text, token = fields
        try:
            scope = Scope[scope_text.upper()]
        except KeyError:
            # The second word is the token: never echo it, but the first is safe to show.
            raise ConfigError(
                f"{where}: unknown scope {scope_text[:20]!r} (expected read, write or admin)"
            ) from None
        if not token.isascii() or not token.isprintable():
            raise ConfigError(f"{where}: the token must be printable ASCII")
        if token in seen:
            raise ConfigError(f"{where}: the same token is already on line {seen[token]}")
        seen[token] = number
        entries.append((scope, token))
    if not entries:
        raise ConfigError(f"{source}: no tokens (expected lines of SCOPE TOKEN)")
    return entries


def _read_token_file(path: Path) -> list[tuple[Scope, str]]:
    try:
        if path.stat().st_mode & 0o077:
            _log.warning(
                "token file %s can be read by other users: make it readable by the node's"
                " user only (chmod 600)",
                path,
            )
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read token file {str(path)!r}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"token file {str(path)!r} is not UTF-8 text") from None
    return parse_tokens(text, source=f"token file {str(path)!r}")


@dataclass(frozen=True, slots=True)
class _Table:
    digests: tuple[tuple[bytes, Scope], ...]

    @classmethod
    def of(cls, entries: list[tuple[Scope, str]]) -> _Table:
        return cls(tuple((_digest(token), scope) for scope, token in entries))

    def summary(self) -> str:
        counts = dict.fromkeys(Scope, 0)
        for _, scope in self.digests:
            counts[scope] += 1
        return ", ".join(f"{counts[scope]} {scope.label}" for scope in Scope)


class ApiTokens:
    """The configured tokens, re-readable from their file (:meth:`reload`)."""

    def __init__(self, entries: list[tuple[Scope, str]], path: Path | None = None) -> None:
        if not entries:
            raise ConfigError("no API tokens given")
        self._table = _Table.of(entries)
        self.path = path

    @classmethod
    def load(cls, path: str | Path) -> ApiTokens:
        """Read a token file; ConfigError (naming the file and line) if it is unusable."""
        path = Path(path)
        return cls(_read_token_file(path), path)

    def __len__(self) -> int:
        return len(self._table.digests)

    def summary(self) -> str:
        """How many tokens of each scope, e.g. "1 read, 2 write, 0 admin" (never the tokens)."""
        return self._table.summary()

    def reload(self) -> bool:
        """Re-read the file: True if the new tokens are in use, else the old ones stay.

        A failure is logged as one line; so is a success (with counts, never tokens).
        """
        if self.path is None:
            return False
        try:
            entries = _read_token_file(self.path)
        except ConfigError as exc:
            _log.error("API tokens not reloaded, the previous ones stay in use: %s", exc)
            return False
        self._table = _Table.of(entries)
        _log.info("API tokens reloaded from %s: %s", self.path, self.summary())
        return True

    def scope_of(self, authorization: str | None) -> Scope | None:
        """The scope of the token in an ``Authorization`` header; None if absent or unknown."""
        if authorization is None:
            return None
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        presented = _digest(token)
        found: Scope | None = None
        # Every entry is compared, matched or not, so timing says nothing about which.
        for digest, scope in self._table.digests:
            if hmac.compare_digest(presented, digest):
                found = scope
        return found


# -- the check in front of each route ---------------------------------------------------------

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _refusal(decision: Decision, required: Scope) -> web.Response:
    if decision is Decision.UNAUTHENTICATED:
        message = "missing or unknown API token (send Authorization: Bearer TOKEN)"
        challenge = 'Bearer realm="dcounter"'
    else:
        message = f"this API token may not do that: it needs the {required.label} scope"
        challenge = f'Bearer realm="dcounter", error="insufficient_scope", scope="{required.label}"'
    return web.Response(
        body=json.dumps({"error": message}).encode(),
        status=decision.value,
        content_type="application/json",
        headers={"WWW-Authenticate": challenge},
    )


class RefusalLog:
    """Logs refused requests as one warning line per ``interval`` seconds at most.

    Each line describes the refusal that triggered it and how many were held back since the
    previous line, so a token-guessing client cannot flood the log. Tokens are not logged.
    """

    def __init__(self, interval: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval
        self._clock = clock
        self._next: float | None = None
        self._held = 0

    def record(self, decision: Decision, method: str, path: str, remote: str | None) -> None:
        now = self._clock()
        if self._next is not None and now < self._next:
            self._held += 1
            return
        self._next = now + self._interval
        held, self._held = self._held, 0
        why = "no valid API token" if decision is Decision.UNAUTHENTICATED else "token scope"
        _log.warning(
            "refused %s %s from %s (%d, %s)%s",
            method,
            path[:100],
            remote or "unknown",
            decision.value,
            why,
            f"; {held} more refused since the last such line" if held else "",
        )


def require_token(
    tokens: ApiTokens,
    method: str,
    route: str,
    handler: _Handler,
    refusals: RefusalLog | None = None,
) -> _Handler:
    """``handler`` behind a check of the request's token against the route's scope.

    The scope is looked up once, here; an open route gets ``handler`` itself. A wrapper
    per route rather than an aiohttp middleware, which would cost every request more.
    Refusals go to ``refusals`` (rate-limited log lines).
    """
    required = required_scope(method, route)
    if required is None:
        return handler

    async def checked(request: web.Request) -> web.StreamResponse:
        decision = decide(required, tokens.scope_of(request.headers.get("Authorization")))
        if decision is Decision.ALLOW:
            return await handler(request)
        if refusals is not None:
            refusals.record(decision, request.method, request.path, request.remote)
        return _refusal(decision, required)

    return checked

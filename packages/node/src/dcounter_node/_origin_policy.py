"""Which browser origins may use the HTTP API: the decision, without I/O (issue 12.7).

:class:`OriginPolicy` judges a request's ``Origin`` against the node's own origin (from the
request's ``Host``) and the configured ``allowed_origins``; :mod:`dcounter_node._http_origin`
applies it to aiohttp requests. Kept free of aiohttp so settings can validate origins
without loading the HTTP stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Literal

from dcounter_node._errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["Decision", "OriginPolicy", "normalize_origin"]

_DEFAULT_PORTS: Final = {"http": "80", "https": "443"}

Decision = Literal["absent", "same", "allowed", "refused"]


def _split_origin(text: str) -> tuple[str, str] | None:
    """(scheme, host[:port]) of a serialized origin, lower case, default port dropped."""
    scheme, sep, rest = text.strip().partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in _DEFAULT_PORTS or not rest or "/" in rest or "@" in rest:
        return None
    return scheme, _host_key(rest, scheme)


def _host_key(netloc: str, scheme: str) -> str:
    """``host[:port]`` in lower case, without the scheme's default port."""
    netloc = netloc.lower()
    if netloc.endswith("]"):  # a bracketed IPv6 address without a port
        return netloc
    host, colon, port = netloc.rpartition(":")
    if colon and port == _DEFAULT_PORTS[scheme] and (host.endswith("]") or ":" not in host):
        return host
    return netloc


def normalize_origin(text: str) -> str:
    """``text`` as an origin (``scheme://host[:port]``), or ``*``; ConfigError otherwise."""
    if text.strip() == "*":
        return "*"
    parts = _split_origin(text)
    if parts is None:
        raise ConfigError(
            f"expected an origin such as https://dashboard.example:8443 (scheme http or"
            f" https, no path) or *, got {text!r}"
        )
    return f"{parts[0]}://{parts[1]}"


class OriginPolicy:
    """Which ``Origin`` values may use the API (see the module docstring)."""

    def __init__(self, allowed: Iterable[str] = ()) -> None:
        normalized = {normalize_origin(origin) for origin in allowed}
        self.any = "*" in normalized
        self.allowed = frozenset(normalized - {"*"})

    def decide(self, origin: str | None, host: str | None) -> Decision:
        """How to treat a request with this ``Origin`` sent to this ``Host``."""
        if origin is None:
            return "absent"
        parts = _split_origin(origin)
        if parts is None:  # "null" (sandboxed pages, file://) and anything malformed
            return "allowed" if self.any else "refused"
        scheme, key = parts
        if host is not None and key == _host_key(host, scheme):
            return "same"
        if self.any or f"{scheme}://{key}" in self.allowed:
            return "allowed"
        return "refused"

"""Which ``Host`` names the HTTP API answers: the decision, without I/O (DNS rebinding).

A page on ``evil.example`` can point its own name at ``127.0.0.1`` once the visitor's
browser loaded it; the browser then treats the node's API as same-origin with that page
(no ``Origin`` check can tell) but still sends ``Host: evil.example:PORT``. Answering only
the names the node is known by defeats that.

The port is not compared: a rebinding page names the node's port itself, so only the name
tells the requests apart. Without ``allowed_hosts`` the default depends on where the API
listens: on a loopback address (or ``localhost``) only the loopback names and the literal
listen host are served, since nothing else can legitimately name that socket; on a wildcard
or another address every name is served, as the names clients and proxies use for it are
not known here (set ``allowed_hosts`` then). A request without a ``Host`` header (HTTP/1.0)
is served: browsers always send one.

Kept free of aiohttp so settings can validate names without loading the HTTP stack.
"""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING, Final

from dcounter_node._errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["LOOPBACK_NAMES", "HostPolicy", "host_name", "normalize_host"]

#: Names of this machine that only its own processes can use.
LOOPBACK_NAMES: Final = frozenset({"localhost", "127.0.0.1", "::1"})
#: Most raw Host values remembered as served (clients repeat the same one).
_REMEMBERED: Final = 256
#: A DNS name: letters, digits, hyphens and underscores in dot-separated labels.
_DNS_NAME: Final = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*")


def host_name(header: str) -> str | None:
    """The name part of a ``Host`` header (lower case, no brackets, port or final dot), or
    None when it is malformed."""
    text = header.strip().lower()
    if text.startswith("["):
        end = text.find("]")
        name, rest = text[1:end], text[end + 1 :]
        if end < 0 or (rest and not (rest[0] == ":" and rest[1:].isdigit())):
            return None
        return name or None
    name, colon, port = text.partition(":")
    if colon and not port.isdigit():
        return None
    return name.removesuffix(".") or None


def normalize_host(text: str) -> str:
    """``text`` as an allowed host name (``[::1]`` -> ``::1``, lower case), or ``*``;
    ConfigError when it is not a DNS name or IP address (a port or scheme is refused)."""
    name = text.strip().lower()
    if name == "*":
        return name
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    name = name.removesuffix(".")
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        pass
    if len(name) > 253 or _DNS_NAME.fullmatch(name) is None:
        raise ConfigError(
            f"expected a host name or IP address such as node1.example, 10.0.0.5 or [::1]"
            f" (no scheme or port), or *, got {text!r}"
        )
    return name


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class HostPolicy:
    """Which ``Host`` names to serve (see the module docstring).

    ``allowed`` empty means the default for ``listen_host`` (the API's listen address
    without its port; None when unknown, which serves every name).
    """

    def __init__(self, allowed: Iterable[str] = (), listen_host: str | None = None) -> None:
        names = {normalize_host(name) for name in allowed}
        if not names and listen_host is not None:
            listen = normalize_host(listen_host)
            if _is_loopback(listen):
                names = {*LOOPBACK_NAMES, listen}
        #: The names served; None serves every name.
        self.allowed: frozenset[str] | None = (
            None if not names or "*" in names else frozenset(names)
        )
        self._served: set[str] = set()

    def allows(self, header: str | None) -> bool:
        """Whether to serve a request carrying ``Host: header`` (None: no such header)."""
        if self.allowed is None or header is None or header in self._served:
            return True
        if host_name(header) not in self.allowed:
            return False
        if len(self._served) < _REMEMBERED:  # only served values: refusals cannot fill it
            self._served.add(header)
        return True

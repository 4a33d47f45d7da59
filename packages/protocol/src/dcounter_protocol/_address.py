"""Addresses, the one way dcounter reads and writes them: ``host:port`` or ``[v6]:port``.

A node's gossip address travels in every frame behind a one-byte length, so an address is
also bounded by :data:`MAX_ADDRESS_LENGTH` UTF-8 bytes; every place that takes an address
from a user, a config file, an HTTP request or the network checks it here, so an address
accepted anywhere can be dialled and framed everywhere.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final

from dcounter_protocol._errors import EncodeError, MalformedAddressError

__all__ = [
    "FRAME_OVERHEAD",
    "MAX_ADDRESS_LENGTH",
    "address_bytes",
    "format_address",
    "parse_address",
]

#: Longest address in UTF-8 bytes: the seed frame's length prefix is one byte.
MAX_ADDRESS_LENGTH: Final = 255
#: Most bytes a seed frame adds to its payload: the length byte and the longest address.
FRAME_OVERHEAD: Final = 1 + MAX_ADDRESS_LENGTH

_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
#: DNS names (underscores allowed, as resolvers do) and dotted IPv4 literals.
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")
_PORT = re.compile(r"[0-9]{1,5}")


def parse_address(text: str, *, allow_port_zero: bool = True) -> tuple[str, int]:
    """Split ``"host:port"`` or ``"[ipv6]:port"`` into (host, port), IPv6 without brackets.

    The host is a DNS name, an IPv4 literal or a bracketed IPv6 literal; the whole address is
    at most :data:`MAX_ADDRESS_LENGTH` UTF-8 bytes. Port 0 (any free port, for listening) is
    accepted unless ``allow_port_zero`` is false (an address to dial). Raises
    :class:`MalformedAddressError` (a ValueError) saying what is wrong.
    """
    if not text:
        raise MalformedAddressError(f"expected HOST:PORT, got {text!r}")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise MalformedAddressError(f"address is not valid UTF-8: {text!r}") from None
    if size > MAX_ADDRESS_LENGTH:
        raise MalformedAddressError(
            f"address is {size} bytes long; at most {MAX_ADDRESS_LENGTH} fit in a frame: "
            f"{text[:40]!r}..."
        )
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        if not sep:
            raise MalformedAddressError(f"expected [IPV6]:PORT, got {text!r}")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise MalformedAddressError(f"not an IPv6 address in {text!r}: {host!r}") from None
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise MalformedAddressError(f"expected HOST:PORT, got {text!r}")
        if ":" in host:
            raise MalformedAddressError(
                f"IPv6 addresses need brackets, e.g. [::1]:7946; got {text!r}"
            )
        if _HOSTNAME.fullmatch(host) is None:
            raise MalformedAddressError(
                f"not a valid host name or IPv4 address in {text!r}: {host!r}"
            )
    if _PORT.fullmatch(port_text) is None or int(port_text) > 65535:
        raise MalformedAddressError(f"port must be a number from 0 to 65535 in {text!r}")
    port = int(port_text)
    if port == 0 and not allow_port_zero:
        raise MalformedAddressError(f"port 0 cannot be dialled, in {text!r}")
    return host, port


def format_address(host: str, port: int) -> str:
    """``host:port``, with an IPv6 host (one containing ``:``) in brackets."""
    if ":" in host and not host.startswith("["):
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def address_bytes(sender: str) -> bytes:
    """``sender`` as framed on the wire; :class:`EncodeError` if it cannot be framed."""
    try:
        raw = sender.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise EncodeError(f"sender address is not encodable as UTF-8: {sender!r}") from exc
    if not raw:
        raise EncodeError("sender address is empty")
    if len(raw) > MAX_ADDRESS_LENGTH:
        raise EncodeError(
            f"sender address is {len(raw)} bytes, at most {MAX_ADDRESS_LENGTH} fit a frame"
        )
    return raw

"""``host:port`` strings for the command line: :mod:`dcounter_protocol`'s rules, usage errors."""

from __future__ import annotations

from dcounter_protocol import MalformedAddressError, format_address, parse_address
from dcounter_tools.errors import UsageError

__all__ = ["join_address", "split_address"]


def split_address(address: str) -> tuple[str, int]:
    """Split ``"host:port"`` (or ``"[v6]:port"``) into host and port; UsageError if malformed."""
    try:
        return parse_address(address)
    except MalformedAddressError as exc:
        raise UsageError(exc.reason) from None


def join_address(host: str, port: int) -> str:
    """The ``host:port`` string for ``host`` and ``port`` (IPv6 hosts in brackets)."""
    return format_address(host, port)

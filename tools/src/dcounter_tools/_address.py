"""``host:port`` strings, the way dcounter writes addresses."""

from __future__ import annotations

from dcounter_tools.errors import UsageError

__all__ = ["join_address", "split_address"]


def split_address(address: str) -> tuple[str, int]:
    """Split ``"host:port"`` (or ``"[v6]:port"``) into host and port; UsageError if malformed."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise UsageError(f"expected HOST:PORT, got {address!r}")
    port = int(port_text)
    if port > 65535:
        raise UsageError(f"port out of range in {address!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, port


def join_address(host: str, port: int) -> str:
    """The ``host:port`` string for ``host`` and ``port`` (IPv6 hosts in brackets)."""
    if ":" in host and not host.startswith("["):
        return f"[{host}]:{port}"
    return f"{host}:{port}"

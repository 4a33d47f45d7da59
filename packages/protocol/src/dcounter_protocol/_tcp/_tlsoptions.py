"""Mutual-TLS settings of a :class:`~dcounter_protocol._tcp.TCPTransport`: the two contexts
and the plaintext exceptions, built from PEM files by :meth:`TLSOptions.from_files`.

The trust model is the cluster CA's: a connection is accepted (and a dialled peer trusted)
when the other side presents a certificate chain to that CA, and to no other root (the
system's trust store is never loaded). Host names are not checked: peers are addressed by
``IP:port``, addresses change with deployments, and any holder of a CA-signed certificate is
a full member anyway (gossip lets any member report counts for any replica), so matching the
certificate to the dialled address would add renewals without adding protection.
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dcounter_protocol._address import parse_address
from dcounter_protocol._errors import InvalidOptionError, MalformedAddressError

if TYPE_CHECKING:
    import os
    from collections.abc import Iterable

__all__ = ["TLSOptions", "normalize_ip"]


def normalize_ip(host: str) -> str | None:
    """The canonical text of an IP literal (IPv4-mapped IPv6 as IPv4), None for names."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.compressed


def _plaintext_peer(address: str) -> tuple[str, int]:
    try:
        host, port = parse_address(address, allow_port_zero=False)
    except MalformedAddressError as exc:
        raise InvalidOptionError(f"plaintext peer {address!r}: {exc.reason}") from None
    ip = normalize_ip(host)
    if ip is None:
        raise InvalidOptionError(
            f"plaintext peer {address!r}: must be an IP address and port (IP:PORT or"
            " [IPv6]:PORT), since inbound plaintext is matched by the connection's source IP"
        )
    return ip, port


def _context(*, server: bool, cert: str, key: str, ca: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ValueError) as exc:
        raise InvalidOptionError(
            f"cannot load the TLS certificate {cert!r} with key {key!r}: {exc}"
        ) from None
    try:
        context.load_verify_locations(cafile=ca)
    except (OSError, ValueError) as exc:
        raise InvalidOptionError(f"cannot load the TLS CA certificate {ca!r}: {exc}") from None
    return context


@dataclass(frozen=True, slots=True)
class TLSOptions:
    """Gossip over mutual TLS: every connection in and out, except to plaintext peers.

    ``server_context`` serves inbound connections and ``client_context`` dials; both should
    require the other side's certificate (:meth:`from_files` builds such a pair).
    ``plaintext_peers`` are ``IP:PORT`` addresses reached without TLS (peers that cannot
    speak it, such as the Go reference): dialling exactly such an address is plain TCP, and
    a connection *from* one of their IPs may be plain (told apart from a TLS ClientHello by
    its first bytes). They are trusted and unauthenticated.
    """

    server_context: ssl.SSLContext
    client_context: ssl.SSLContext
    plaintext_peers: tuple[str, ...] = ()
    #: (IP, port) of each plaintext peer, derived.
    plaintext_targets: frozenset[tuple[str, int]] = field(init=False, repr=False)
    #: Source IPs plaintext connections are accepted from, derived.
    plaintext_ips: frozenset[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("server_context", "client_context"):
            if not isinstance(getattr(self, name), ssl.SSLContext):
                raise InvalidOptionError(f"{name} must be an ssl.SSLContext")
        peers: object = self.plaintext_peers
        if not isinstance(peers, tuple | list) or not all(isinstance(p, str) for p in peers):
            raise InvalidOptionError("plaintext_peers must be a sequence of IP:PORT strings")
        targets = frozenset(_plaintext_peer(peer) for peer in self.plaintext_peers)
        object.__setattr__(self, "plaintext_peers", tuple(self.plaintext_peers))
        object.__setattr__(self, "plaintext_targets", targets)
        object.__setattr__(self, "plaintext_ips", frozenset(ip for ip, _ in targets))

    @classmethod
    def from_files(
        cls,
        cert: str | os.PathLike[str],
        key: str | os.PathLike[str],
        ca: str | os.PathLike[str],
        *,
        plaintext_peers: Iterable[str] = (),
    ) -> TLSOptions:
        """Contexts for this node's certificate chain ``cert`` and private ``key`` (PEM),
        trusting only the cluster CA in ``ca`` (PEM): TLS 1.3 at least, a certificate
        required both ways, no host-name check (see the module doc).

        Raises :class:`InvalidOptionError` naming the file that cannot be read or used.
        """
        paths = {"cert": str(cert), "key": str(key), "ca": str(ca)}
        return cls(
            server_context=_context(server=True, **paths),
            client_context=_context(server=False, **paths),
            plaintext_peers=tuple(plaintext_peers),
        )

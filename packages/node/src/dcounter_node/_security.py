"""The HTTP API's protections as the settings ask for them: HTTPS, API tokens, exposure.

:func:`http_security` turns the settings into an :class:`HTTPSecurity` (the server's
:class:`ssl.SSLContext` and the :class:`~dcounter_node._auth.ApiTokens`), and
:func:`exposure_problems` says, as a pure function of the addresses and what protects
them, why a node would be open to its network (the start-up warning, or the refusal under
``--require-auth``).

HTTPS uses ``--http-tls-cert``/``--http-tls-key``, or else the gossip certificate
(``--tls-cert``/``--tls-key``) when the node has one.
"""

from __future__ import annotations

import ipaddress
import logging
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dcounter_node._auth import ApiTokens
from dcounter_node._errors import ConfigError
from dcounter_node._settings import parse_address

if TYPE_CHECKING:
    from dcounter_node._settings import NodeSettings

__all__ = [
    "HTTPSFiles",
    "HTTPSecurity",
    "exposure_problems",
    "http_security",
    "is_loopback",
    "server_ssl_context",
]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HTTPSFiles:
    """The PEM files HTTPS is served with; ``client_ca`` verifies optional client certificates."""

    cert: str
    key: str
    client_ca: str | None = None


def server_ssl_context(files: HTTPSFiles) -> ssl.SSLContext:
    """A server-side context for ``files``; ConfigError naming the file that cannot be used."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_chain(context, files)
    if files.client_ca is not None:
        try:
            context.load_verify_locations(cafile=files.client_ca)
        except OSError as exc:  # ssl.SSLError included: not PEM
            raise ConfigError(f"cannot use --http-tls-ca {files.client_ca!r}: {exc}") from None
        # Asked for, verified when presented, not required: tokens remain the API's gate.
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


def _load_chain(context: ssl.SSLContext, files: HTTPSFiles) -> None:
    try:
        context.load_cert_chain(files.cert, files.key)
    # SSLError first: it is an OSError too.
    except ssl.SSLError as exc:
        raise ConfigError(
            f"cannot use the HTTPS certificate {files.cert!r} with key {files.key!r}"
            f" (not PEM, or the key does not match): {exc.reason or exc}"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"cannot read the HTTPS certificate or key ({files.cert!r}, {files.key!r}):"
            f" {exc.strerror or exc}"
        ) from None


def https_files(settings: NodeSettings) -> HTTPSFiles | None:
    """Which certificate the API serves HTTPS with (None: plain HTTP); ConfigError if half-set."""
    cert, key = settings.http_tls_cert, settings.http_tls_key
    if cert is None and key is None:
        # The gossip certificate, when this node has one (settings from the TLS work).
        cert = settings.tls_cert
        key = settings.tls_key
    elif cert is None or key is None:
        raise ConfigError("--http-tls-cert and --http-tls-key go together: give both or neither")
    if cert is None or key is None:
        if settings.http_tls_ca is not None:
            raise ConfigError("--http-tls-ca needs HTTPS (--http-tls-cert and --http-tls-key)")
        return None
    return HTTPSFiles(cert, key, settings.http_tls_ca)


@dataclass(eq=False)
class HTTPSecurity:
    """What protects the HTTP API: its TLS context and its tokens (either may be absent)."""

    ssl_context: ssl.SSLContext | None = None
    tokens: ApiTokens | None = None
    files: HTTPSFiles | None = None
    #: How the dashboard's ``/cluster`` asks peers over HTTPS (None: plain HTTP).
    peer_ssl: ssl.SSLContext | None = None

    @property
    def scheme(self) -> str:
        return "http" if self.ssl_context is None else "https"

    def reload(self) -> None:
        """Re-read the token file and the HTTPS certificate (on SIGHUP).

        What cannot be read is logged as one line and the previous one stays in use. New
        connections get a reloaded certificate; established ones keep theirs.
        """
        if self.tokens is not None:
            self.tokens.reload()
        if self.ssl_context is not None and self.files is not None:
            try:
                _load_chain(self.ssl_context, self.files)
            except ConfigError as exc:
                _log.error("HTTPS certificate not reloaded, the previous one stays: %s", exc)
            else:
                _log.info("HTTPS certificate reloaded from %s", self.files.cert)


def http_security(settings: NodeSettings) -> HTTPSecurity:
    """Load what the settings ask for; ConfigError if a file is missing or malformed."""
    files = https_files(settings)
    context = server_ssl_context(files) if files is not None else None
    tokens = ApiTokens.load(settings.api_tokens) if settings.api_tokens is not None else None
    peer_ssl = _peer_client_context(settings.tls_ca) if files else None
    return HTTPSecurity(context, tokens, files, peer_ssl)


def _peer_client_context(cluster_ca: str | None) -> ssl.SSLContext:
    """What peers' HTTPS certificates are verified with: the system's CAs and the cluster's."""
    context = ssl.create_default_context()
    if cluster_ca is not None:
        try:
            context.load_verify_locations(cafile=cluster_ca)
        except OSError as exc:  # ssl.SSLError included: not PEM
            raise ConfigError(f"cannot use the cluster CA {cluster_ca!r}: {exc}") from None
    return context


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine (unknown names: no)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def exposure_problems(
    *, gossip: str, gossip_tls: bool, http: str, https: bool, tokens: bool
) -> list[str]:
    """Why a node with these listeners would be open to its network ([] if it is not)."""
    problems: list[str] = []
    if not gossip_tls and not is_loopback(parse_address(gossip)[0]):
        problems.append(
            f"gossip listens on {gossip} without TLS: anyone who can reach it can rewrite"
            " the counter"
        )
    if not is_loopback(parse_address(http)[0]):
        protections = (("HTTPS", https), ("API tokens", tokens))
        missing = [what for what, present in protections if not present]
        if missing:
            problems.append(f"the HTTP API listens on {http} without {' and '.join(missing)}")
    return problems

"""``--tls``: a throwaway certificate authority and one certificate per node.

:func:`write_cluster_certs` writes, into one folder (the cluster's state or work folder):
``ca.pem`` (the CA certificate every node trusts), ``ca.key`` (its private key, so more
nodes can be issued for this cluster), and ``NAME.pem`` / ``NAME.key`` per node. Keys are
ECDSA P-256, readable by the owner only. Node certificates carry the node's IP (or name) as
subject alternative names and may serve as client and server, for gossip and for HTTPS
(a node with a gossip certificate serves its API over HTTPS with it). ``api-tokens`` holds
a throwaway ``write`` and ``admin`` API token (owner-only too). :func:`with_tls` adds the
``--tls-cert/--tls-key/--tls-ca/--api-tokens`` flags to every node of a spec, and
:func:`cluster_access` says how the launcher then reaches the APIs: HTTPS trusting
``ca.pem``, with the admin token.

For a test or demo cluster only: a real deployment keeps its CA key offline (see the
node README's Security section).
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import os
import re
import secrets
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from dcounter_tools._address import split_address
from dcounter_tools.cluster.client import APIAccess
from dcounter_tools.errors import ClusterError

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from dcounter_tools.cluster.spec import ClusterSpec

__all__ = [
    "CA_FILE",
    "TLS_DIR",
    "TOKENS_FILE",
    "VALID_DAYS",
    "cluster_access",
    "with_tls",
    "write_cluster_certs",
    "write_cluster_tokens",
    "write_node_tls",
]

#: The folder, in a cluster's state or work folder, holding its certificates.
TLS_DIR = "tls"
CA_FILE = "ca.pem"
#: The nodes' API token file (``SCOPE TOKEN`` lines), in the same folder.
TOKENS_FILE = "api-tokens"
#: How long the throwaway certificates are valid.
VALID_DAYS = 30
_BACKDATE = datetime.timedelta(minutes=5)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "dcounter throwaway cluster"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _write_private(path: Path, data: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_private(path, data)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _subject_alt_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def write_cluster_certs(
    folder: Path, nodes: Sequence[tuple[str, str | Sequence[str]]], *, days: int = VALID_DAYS
) -> None:
    """A new CA and a certificate for each (file stem, host or hosts) in ``nodes``, in
    ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    start, end = now - _BACKDATE, now + datetime.timedelta(days=days)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("dcounter throwaway CA")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(folder / "ca.key", ca_key)
    _write_cert(folder / CA_FILE, ca_cert)
    issuer_id = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    for name, host in nodes:
        hosts = [host] if isinstance(host, str) else list(dict.fromkeys(host))
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(ca=False), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.SubjectAlternativeName([_subject_alt_name(h) for h in hosts]), False
            )
            .add_extension(issuer_id, critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        _write_key(folder / f"{name}.key", key)
        _write_cert(folder / f"{name}.pem", cert)


def write_cluster_tokens(folder: Path) -> None:
    """A new token file in ``folder``: one ``write`` and one ``admin`` token."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"{scope} {secrets.token_urlsafe(24)}" for scope in ("write", "admin")]
    text = "# throwaway API tokens of a dcounter-cluster --tls cluster\n" + "\n".join(lines)
    _write_private(folder / TOKENS_FILE, (text + "\n").encode())


def cluster_access(folder: Path) -> APIAccess:
    """How to reach the APIs of the nodes :func:`with_tls` set up in ``folder``: HTTPS
    trusting its CA, with its admin token; ClusterError if the files are not there."""
    path = folder / TOKENS_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ClusterError(f"cannot read the cluster's API tokens {path}: {exc.strerror}") from None
    tokens = [line.split() for line in text.splitlines() if line.strip() and line[0] != "#"]
    admin = [words[1] for words in tokens if len(words) == 2 and words[0] == "admin"]
    if not admin:
        raise ClusterError(f"no admin token in {path}")
    return APIAccess(str(folder / CA_FILE), admin[0])


def _file_stems(names: Sequence[str]) -> list[str]:
    """A distinct, file-system-safe stem per node name (names may hold ``:`` or ``/``)."""
    stems: list[str] = []
    for index, name in enumerate(names):
        stem = _UNSAFE.sub("_", name)
        stems.append(stem if stem not in stems and stem != "ca" else f"{stem}-{index}")
    return stems


def write_node_tls(
    folder: Path, nodes: Sequence[tuple[str, str | Sequence[str]]]
) -> list[tuple[str, ...]]:
    """A fresh CA, a certificate per (node name, its host or hosts) and the token file in
    ``folder``; the ``dcounter-node`` flags that use them, per node."""
    stems = _file_stems([name for name, _ in nodes])
    write_cluster_certs(
        folder, [(stem, hosts) for stem, (_, hosts) in zip(stems, nodes, strict=True)]
    )
    write_cluster_tokens(folder)
    return [
        (
            "--tls-cert",
            str(folder / f"{stem}.pem"),
            "--tls-key",
            str(folder / f"{stem}.key"),
            "--tls-ca",
            str(folder / CA_FILE),
            "--api-tokens",
            str(folder / TOKENS_FILE),
        )
        for stem in stems
    ]


def with_tls(spec: ClusterSpec, folder: Path) -> ClusterSpec:
    """``spec`` with a fresh CA and certificates in ``folder``, passed to every node."""
    hosts = [(split_address(node.listen)[0], split_address(node.http)[0]) for node in spec.nodes]
    flags = write_node_tls(
        folder, [(node.name, h) for node, h in zip(spec.nodes, hosts, strict=True)]
    )
    nodes = tuple(
        dataclasses.replace(node, args=(*node.args, *node_flags))
        for node, node_flags in zip(spec.nodes, flags, strict=True)
    )
    source = f"{spec.source}, gossip over mutual TLS, API over HTTPS with tokens"
    return dataclasses.replace(spec, nodes=nodes, source=source)

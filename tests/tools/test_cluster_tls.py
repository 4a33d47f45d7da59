"""dcounter-cluster --tls: a throwaway CA, one certificate per node, nodes gossiping over TLS
and serving their APIs over HTTPS with throwaway API tokens, driven over HTTPS."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING

import pytest
from cryptography import x509

from dcounter_protocol import TLSOptions, encode_frame
from dcounter_tools.cluster.certs import cluster_access, with_tls
from dcounter_tools.cluster.cli import main
from dcounter_tools.cluster.spec import build_spec

if TYPE_CHECKING:
    from pathlib import Path

    from tests.tools.conftest import ClusterCLI, MembersAlive, PidsGone

FAST = ("--duration", "1.5", "--sync-interval", "0.2", "--seed", "7", "--quiet")


def _flag(args: tuple[str, ...], flag: str) -> str:
    return args[args.index(flag) + 1]


def test_with_tls_gives_every_node_a_certificate_from_one_new_ca(tmp_path: Path) -> None:
    spec = with_tls(build_spec(nodes=2, host="127.0.0.1"), tmp_path / "tls")

    ca = str(tmp_path / "tls" / "ca.pem")
    assert [_flag(node.args, "--tls-ca") for node in spec.nodes] == [ca, ca]
    tokens = tmp_path / "tls" / "api-tokens"
    assert [_flag(node.args, "--api-tokens") for node in spec.nodes] == [str(tokens)] * 2
    assert tokens.stat().st_mode & 0o077 == 0
    scopes = [line.split()[0] for line in tokens.read_text().splitlines() if line[0] != "#"]
    assert scopes == ["write", "admin"]
    access = cluster_access(tmp_path / "tls")
    assert access.ca == ca
    assert f"admin {access.token}" in tokens.read_text()
    assert access.url("127.0.0.1:8001") == "https://127.0.0.1:8001"
    for node in spec.nodes:
        cert, key = _flag(node.args, "--tls-cert"), _flag(node.args, "--tls-key")
        TLSOptions.from_files(cert, key, ca)  # loads as the node loads it
        leaf = x509.load_pem_x509_certificate((tmp_path / "tls" / f"{node.name}.pem").read_bytes())
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
        assert (tmp_path / "tls" / f"{node.name}.key").stat().st_mode & 0o077 == 0
    assert "mutual TLS" in spec.source
    assert "HTTPS" in spec.source


def test_node_names_become_safe_distinct_file_names(tmp_path: Path) -> None:
    config = tmp_path / "cluster.toml"
    config.write_text(
        '[[nodes]]\nname = "a/b"\nlisten = "127.0.0.1:0"\n'
        '[[nodes]]\nname = "a_b"\nlisten = "127.0.0.1:0"\nhttp = "127.0.0.1:0"\n'
    )

    spec = with_tls(build_spec(config=config), tmp_path / "tls")

    certs = [_flag(node.args, "--tls-cert") for node in spec.nodes]
    assert certs == [str(tmp_path / "tls" / "a_b.pem"), str(tmp_path / "tls" / "a_b-1.pem")]


def test_tls_needs_node_processes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--in-process", "--tls", "--nodes", "2"]) == 2
    assert "--tls needs node processes" in capsys.readouterr().err


@pytest.mark.slow
def test_run_with_tls_converges_exactly(cluster_json: ClusterCLI, pids_gone: PidsGone) -> None:
    status, report = cluster_json("run", "--tls", "--nodes", "3", *FAST)

    assert status == 0
    assert report["converged"] is True
    assert report["acknowledged"] == report["attempted"] > 0
    assert report["values"] == [report["expected"]] * 3
    assert pids_gone([int(n["pid"]) for n in report["nodes"]]) == []


def _get(url: str, ca: Path, token: str | None) -> bytes:
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    context = ssl.create_default_context(cafile=str(ca))
    with urllib.request.urlopen(request, timeout=5, context=context) as response:
        body: bytes = response.read()
    return body


def _metric(http: str, name: str, ca: Path, token: str) -> float:
    text = _get(f"https://{http}/metrics", ca, token).decode()
    [line] = [line for line in text.splitlines() if line.startswith(name + " ")]
    return float(line.split()[1])


@pytest.mark.slow
def test_up_with_tls_refuses_plaintext_and_down_removes_the_ca(
    python: str,
    tools_env: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    pids_gone: PidsGone,
    members_alive: MembersAlive,
) -> None:
    state_dir = tmp_path / "state"
    up = subprocess.run(
        [python, "-m", "dcounter_tools.cluster", "up", "--tls", "--nodes", "2", "--json"],
        env=tools_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    nodes = json.loads(up.stdout)["nodes"] if up.returncode == 0 else []
    try:
        assert up.returncode == 0, up.stderr
        ca = state_dir / "tls" / "ca.pem"
        assert ca.is_file()
        token = cluster_access(state_dir / "tls").token
        assert token is not None
        # The API is HTTPS only, trusting the cluster CA, and it wants a token.
        with pytest.raises(urllib.error.HTTPError) as unauthorized:
            _get(f"https://{nodes[0]['http']}/counter", ca, None)
        unauthorized.value.close()  # its response holds the TLS socket
        assert unauthorized.value.code == 401
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            urllib.request.urlopen(f"https://{nodes[0]['http']}/health", timeout=5)
        # The launcher wired the mesh over HTTPS, and status reads it so.
        capsys.readouterr()
        assert main(["status", "--state-dir", str(state_dir), "--json"]) == 0
        status = json.loads(capsys.readouterr().out)
        assert status["all_up"] is True
        assert [n["peers"] for n in status["nodes"]] == [[nodes[1]["gossip"]], [nodes[0]["gossip"]]]
        # Membership over mutual TLS, read over HTTPS with the token.
        members_alive(state_dir)
        host, _, port = nodes[0]["gossip"].rpartition(":")
        with socket.create_connection((host, int(port)), timeout=5) as plain:
            plain.sendall(encode_frame("127.0.0.1:1", b"\x00forged"))
            plain.shutdown(socket.SHUT_WR)
            plain.recv(1)
        deadline = time.monotonic() + 20
        while _metric(nodes[0]["http"], "dcounter_transport_tls_refused_total", ca, token) != 1:
            assert time.monotonic() < deadline, "the plaintext connection was not refused"
            time.sleep(0.05)
    finally:
        capsys.readouterr()
        assert main(["down", "--state-dir", str(state_dir)]) == 0
    assert pids_gone([n["pid"] for n in nodes]) == []
    assert not state_dir.exists()

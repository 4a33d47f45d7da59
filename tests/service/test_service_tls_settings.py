"""dcounter-node's TLS settings: flags and config keys, all three files or none, usage errors."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from dcounter_node._cli import main, settings_from_args

if TYPE_CHECKING:
    from pathlib import Path

    from tests.conftest import IssueTLS


def test_tls_flags_and_plaintext_peers_are_settings() -> None:
    tls = ["--tls-cert", "n.pem", "--tls-key", "n.key", "--tls-ca", "ca.pem"]
    settings = settings_from_args([*tls, "--plaintext-peers", "10.0.0.5:7946,10.0.0.6:7946"])

    assert settings.tls_files() == ("n.pem", "n.key", "ca.pem")
    assert settings.plaintext_peers == ("10.0.0.5:7946", "10.0.0.6:7946")
    assert settings_from_args(settings.to_argv()) == settings


def test_tls_keys_come_from_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(
        'tls_cert = "n.pem"\ntls_key = "n.key"\ntls_ca = "ca.pem"\n'
        'plaintext_peers = ["10.0.0.5:7946"]\n',
        encoding="utf-8",
    )

    settings = settings_from_args(["--config", str(path)])

    assert settings.tls_files() == ("n.pem", "n.key", "ca.pem")
    assert settings.plaintext_peers == ("10.0.0.5:7946",)


def test_without_tls_flags_gossip_is_plain() -> None:
    assert settings_from_args([]).tls_files() is None


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--tls-cert", "n.pem"], "--tls-cert given without --tls-key, --tls-ca"),
        (["--tls-cert", "n.pem", "--tls-ca", "c.pem"], "given without --tls-key"),
        (["--plaintext-peers", "10.0.0.5:7946"], "--plaintext-peers) needs gossip over TLS"),
    ],
)
def test_incomplete_tls_settings_exit_2_with_one_line(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(flags) == 2

    err = capsys.readouterr().err
    assert err.startswith("dcounter-node: error: ")
    assert message in err
    assert err.count("\n") == 1


def test_unreadable_certificate_exits_2_naming_the_file(
    issue_tls: IssueTLS, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = issue_tls("a")
    missing = tmp_path / "gone.pem"

    assert (
        main(["--tls-cert", str(missing), "--tls-key", str(files.key), "--tls-ca", str(files.ca)])
        == 2
    )

    assert f"cannot load the TLS certificate {str(missing)!r}" in capsys.readouterr().err


def test_a_plaintext_peer_must_be_an_ip_address(
    issue_tls: IssueTLS, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = [*issue_tls("a").flags(), "--plaintext-peers", "go.example:7946"]

    assert main(flags) == 2

    assert "must be an IP address and port" in capsys.readouterr().err

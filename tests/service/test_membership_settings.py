"""Membership's flags and config keys, --advertise's usage error and the transport's identity."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from dcounter_node._cli import main, settings_from_args
from dcounter_node._membership_service import membership_config, wildcard_listen
from dcounter_node._settings import NodeSettings, load_config_file
from dcounter_protocol import MalformedAddressError
from dcounter_protocol._tcp import TCPTransport

if TYPE_CHECKING:
    from pathlib import Path

    from tests.conftest import WaitUntil


def test_membership_flags_are_parsed() -> None:
    settings = settings_from_args(
        [
            "--advertise",
            "10.0.0.5:7001",
            "--join",
            "10.0.0.1:7001,10.0.0.2:7001",
            "--probe-interval",
            "0.25",
            "--suspect-timeout",
            "3",
        ]
    )
    assert settings.advertise == "10.0.0.5:7001"
    assert settings.join == ("10.0.0.1:7001", "10.0.0.2:7001")
    assert settings.probe_interval == 0.25
    assert settings.suspect_timeout == 3.0
    assert settings_from_args(settings.to_argv()) == settings


def test_membership_has_sane_defaults() -> None:
    defaults = NodeSettings()
    assert defaults.advertise is None
    assert defaults.join == ()
    config = membership_config(defaults.probe_interval, defaults.suspect_timeout)
    assert config.probe_timeout < config.probe_interval < config.suspect_timeout


def test_membership_keys_come_from_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(
        'advertise = "node-a:7001"\njoin = ["node-b:7001"]\n'
        "probe_interval = 0.5\nsuspect_timeout = 2\n",
        encoding="utf-8",
    )
    settings = load_config_file(path).settings(None)
    assert (settings.advertise, settings.join) == ("node-a:7001", ("node-b:7001",))
    assert (settings.probe_interval, settings.suspect_timeout) == (0.5, 2.0)


@pytest.mark.parametrize("listen", ["0.0.0.0:7001", "[::]:7001"])
def test_a_wildcard_listen_without_advertise_is_a_usage_error(
    listen: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert wildcard_listen(listen)
    assert main(["--listen", listen, "--in-memory"]) == 2
    assert "--advertise HOST:PORT" in capsys.readouterr().err


def test_a_named_listen_address_needs_no_advertise() -> None:
    assert not wildcard_listen("127.0.0.1:7001")
    assert not wildcard_listen("[::1]:7001")


@pytest.mark.parametrize("advertise", ["127.0.0.1:0", "no-port", ""])
def test_advertise_must_be_dialable(advertise: str) -> None:
    with pytest.raises(MalformedAddressError):
        TCPTransport("127.0.0.1:0", advertise=advertise)


async def test_the_advertised_address_is_the_transports_identity(wait_until: WaitUntil) -> None:
    received: list[str] = []
    listener = TCPTransport("127.0.0.1:0")
    # Bound to a free port, named by another: the name is what frames carry.
    sender = TCPTransport("127.0.0.1:0", advertise="127.0.0.1:9")

    async def handler(address: str, payload: bytes) -> None:
        received.append(address)

    async def ignore(address: str, payload: bytes) -> None:
        return None

    try:
        await listener.listen(handler)
        await sender.listen(ignore)
        assert sender.address == "127.0.0.1:9"
        await sender.send(listener.address, b"\x00hello")
        await wait_until(lambda: bool(received), what="the message")
        assert received == ["127.0.0.1:9"]
    finally:
        await sender.close()
        await listener.close()


def test_max_members_is_a_setting_with_a_sane_default(tmp_path: Path) -> None:
    assert NodeSettings().max_members == 1024
    settings = settings_from_args(["--max-members", "64"])
    assert settings.max_members == 64
    assert settings_from_args(settings.to_argv()) == settings
    assert membership_config(1.0, 5.0, max_members=64).max_members == 64
    path = tmp_path / "node.toml"
    path.write_text("max_members = 16\n", encoding="utf-8")
    assert load_config_file(path).settings(None).max_members == 16


def test_forget_after_is_a_setting_a_day_by_default_and_0_never(tmp_path: Path) -> None:
    assert NodeSettings().forget_after == 86400.0
    settings = settings_from_args(["--forget-after", "600"])
    assert settings.forget_after == 600.0
    assert settings_from_args(settings.to_argv()) == settings
    assert settings_from_args(["--forget-after", "0"]).forget_after == 0.0
    assert membership_config(1.0, 5.0, forget_after=600.0).forget_after == 600.0
    assert membership_config(1.0, 5.0, forget_after=None).forget_after is None
    path = tmp_path / "node.toml"
    path.write_text("forget_after = 120\n", encoding="utf-8")
    assert load_config_file(path).settings(None).forget_after == 120.0


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--forget-after", "-1"),
        ("--forget-after", "soon"),
        ("--forget-after", "nan"),
        # --max-members must leave room for this node and another member.
        ("--max-members", "1"),
        ("--max-members", "0"),
        ("--max-members", "many"),
    ],
)
def test_a_bad_membership_value_is_a_usage_error(
    flag: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main([flag, value, "--in-memory"])
    assert info.value.code == 2
    assert flag in capsys.readouterr().err


def test_join_dns_flags_and_keys(tmp_path: Path) -> None:
    defaults = NodeSettings()
    assert (defaults.join_dns, defaults.join_dns_interval) == (None, 30.0)
    settings = settings_from_args(
        ["--join-dns", "dcounter.default.svc.cluster.local:7946", "--join-dns-interval", "10"]
    )
    assert settings.join_dns == "dcounter.default.svc.cluster.local:7946"
    assert settings.join_dns_interval == 10.0
    assert settings_from_args(settings.to_argv()) == settings
    path = tmp_path / "node.toml"
    path.write_text('join_dns = "seeds.example:7001"\njoin_dns_interval = 5\n', encoding="utf-8")
    from_file = load_config_file(path).settings(None)
    assert (from_file.join_dns, from_file.join_dns_interval) == ("seeds.example:7001", 5.0)


@pytest.mark.parametrize("name", ["seeds.example", "seeds.example:0"])
def test_join_dns_needs_a_port(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--join-dns", name, "--in-memory"])
    assert info.value.code == 2
    assert "--join-dns" in capsys.readouterr().err

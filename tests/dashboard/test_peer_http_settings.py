"""--peer-http / ``peer_http``: where a node's GET /cluster finds its peers' HTTP APIs."""

from __future__ import annotations

import dataclasses
import tomllib

import pytest

from dcounter_node._cli import settings_from_args
from dcounter_node._errors import ConfigError
from dcounter_node._settings import ClusterFile, NodeSettings, parse_config


def _config(text: str) -> ClusterFile:
    return parse_config(tomllib.loads(text), source="test.toml")


def test_the_flag_takes_gossip_equals_http_pairs() -> None:
    settings = settings_from_args(
        ["--peer-http", "127.0.0.1:7002=127.0.0.1:8002, 127.0.0.1:7001=127.0.0.1:8001"]
    )
    assert settings.peer_http == (
        ("127.0.0.1:7001", "127.0.0.1:8001"),
        ("127.0.0.1:7002", "127.0.0.1:8002"),
    )


@pytest.mark.parametrize(
    "text", ["127.0.0.1:7002", "127.0.0.1:7002=", "127.0.0.1:7002=127.0.0.1:0", "a=b"]
)
def test_bad_pairs_are_usage_errors(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        settings_from_args(["--peer-http", text])
    assert exited.value.code == 2
    assert "--peer-http" in capsys.readouterr().err


def test_a_config_file_takes_a_table() -> None:
    config = _config('[peer_http]\n"127.0.0.1:7002" = "127.0.0.1:8002"\n')
    assert config.settings().peer_http == (("127.0.0.1:7002", "127.0.0.1:8002"),)
    with pytest.raises(ConfigError, match="peer_http: expected a table"):
        _config('peer_http = "127.0.0.1:7002"\n')


def test_entries_know_every_other_entrys_http_address() -> None:
    config = _config(
        '[[nodes]]\nname = "a"\nlisten = "127.0.0.1:7001"\nhttp = "127.0.0.1:8001"\n'
        '[[nodes]]\nname = "b"\nlisten = "127.0.0.1:7002"\nhttp = "127.0.0.1:8002"\n'
        '[[nodes]]\nname = "c"\nlisten = "127.0.0.1:7003"\nhttp = "127.0.0.1:0"\n'
    )
    assert config.node("a").peer_http == (("127.0.0.1:7002", "127.0.0.1:8002"),)
    assert config.node("c").peer_http == (
        ("127.0.0.1:7001", "127.0.0.1:8001"),
        ("127.0.0.1:7002", "127.0.0.1:8002"),
    )


def test_explicit_peer_http_replaces_the_derived_one() -> None:
    config = _config(
        '[[nodes]]\nname = "a"\nlisten = "127.0.0.1:7001"\nhttp = "127.0.0.1:8001"\n'
        'peer_http = { "10.0.0.2:7000" = "10.0.0.2:8000" }\n'
        '[[nodes]]\nname = "b"\nlisten = "127.0.0.1:7002"\nhttp = "127.0.0.1:8002"\n'
    )
    assert config.node("a").peer_http == (("10.0.0.2:7000", "10.0.0.2:8000"),)


def test_to_argv_carries_peer_http() -> None:
    settings = NodeSettings().updated({"peer_http": {"127.0.0.1:7002": "127.0.0.1:8002"}})
    argv = settings.to_argv()
    assert argv[argv.index("--peer-http") + 1] == "127.0.0.1:7002=127.0.0.1:8002"
    assert settings_from_args(argv) == dataclasses.replace(settings, name="")

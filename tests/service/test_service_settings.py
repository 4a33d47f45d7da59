"""The config file format and address parsing shared by dcounter-node and dcounter-cluster."""

from __future__ import annotations

import dataclasses
import tomllib
from typing import TYPE_CHECKING

import pytest

from dcounter_node._cli import settings_from_args
from dcounter_node._errors import ConfigError
from dcounter_node._settings import (
    ClusterFile,
    NodeSettings,
    format_address,
    load_config_file,
    parse_address,
    parse_config,
)

if TYPE_CHECKING:
    from pathlib import Path


def _config(text: str) -> ClusterFile:
    return parse_config(tomllib.loads(text), source="test.toml")


# -- addresses ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:7946", ("127.0.0.1", 7946)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("[::1]:8080", ("::1", 8080)),
        ("[fe80::1%eth0]:1", ("fe80::1%eth0", 1)),
        ("localhost:65535", ("localhost", 65535)),
        ("node-1.example.com:80", ("node-1.example.com", 80)),
    ],
)
def test_valid_addresses_parse(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "127.0.0.1",
        ":80",
        "::1:80",
        "[::1]80",
        "[::1:80",
        "[nothost]:80",
        "host:65536",
        "host:-1",
        "host:8x",
        "host: 80",
        "ho st:80",
        "-host:80",
        "h" * 300 + ":80",
    ],
)
def test_invalid_addresses_are_config_errors(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_address(text)


def test_port_zero_can_be_refused() -> None:
    with pytest.raises(ConfigError, match="port 0 cannot be dialled"):
        parse_address("127.0.0.1:0", allow_port_zero=False)


def test_format_address_brackets_ipv6() -> None:
    assert format_address("::1", 80) == "[::1]:80"
    assert format_address("127.0.0.1", 80) == "127.0.0.1:80"


# -- one node ----------------------------------------------------------------------------------


def test_top_level_settings_apply_to_the_node() -> None:
    config = _config(
        'listen = "127.0.0.1:7001"\nhttp = "[::1]:0"\npeers = ["127.0.0.1:7002"]\n'
        "sync_interval = 0.5\nfull_sync_interval = 3\nmax_sync_peers = 2\n"
        'delta_gossip = false\nlog_level = "DEBUG"\nlog_format = "json"\n'
    )
    assert config.nodes == ()
    assert config.settings() == NodeSettings(
        listen="127.0.0.1:7001",
        http="[::1]:0",
        peers=("127.0.0.1:7002",),
        sync_interval=0.5,
        full_sync_interval=3.0,
        max_sync_peers=2,
        delta_gossip=False,
        log_level="debug",
        log_format="json",
    )


def test_empty_file_gives_defaults() -> None:
    assert _config("").settings() == NodeSettings()


def test_unknown_top_level_key_is_named() -> None:
    with pytest.raises(ConfigError, match=r"test\.toml: unknown setting 'sync_intervall'"):
        _config("sync_intervall = 1")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("sync_interval = 0", "sync_interval: expected a number of seconds > 0, got 0"),
        ("sync_interval = -1.5", "sync_interval: expected a number of seconds > 0, got -1.5"),
        ("sync_interval = nan", "sync_interval: expected a number of seconds > 0, got nan"),
        ('sync_interval = "1"', "sync_interval: expected a number of seconds, got '1'"),
        ("max_sync_peers = 0", "max_sync_peers: expected an integer >= 1, got 0"),
        ("max_sync_peers = true", "max_sync_peers: expected an integer >= 1, got True"),
        ('delta_gossip = "no"', "delta_gossip: expected true or false, got 'no'"),
        ('log_level = "loud"', "log_level: expected one of debug, info, warning, error"),
        ('listen = "nowhere"', "listen: expected HOST:PORT, got 'nowhere'"),
        ('peers = "127.0.0.1:1"', "peers: expected a list of HOST:PORT strings"),
        ('peers = ["127.0.0.1:0"]', "peers: port 0 cannot be dialled"),
    ],
)
def test_bad_values_name_key_and_problem(line: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        _config(line)
    assert str(info.value).startswith(f"test.toml: {message}")


def test_node_name_without_nodes_is_an_error() -> None:
    with pytest.raises(ConfigError, match="--node a: the file has no"):
        _config("").settings("a")


# -- [[nodes]] ---------------------------------------------------------------------------------

CLUSTER = """
sync_interval = 0.25

[[nodes]]
name = "a"
listen = "127.0.0.1:7001"
http = "127.0.0.1:8001"

[[nodes]]
name = "b"
listen = "127.0.0.1:7002"
http = "127.0.0.1:8002"
sync_interval = 2

[[nodes]]
listen = "127.0.0.1:7003"
http = "127.0.0.1:8003"
"""


def test_entries_inherit_top_level_and_override_it() -> None:
    config = _config(CLUSTER)
    assert config.names() == ("a", "b", "127.0.0.1:7003")
    assert config.node("a").sync_interval == 0.25
    assert config.node("b").sync_interval == 2.0


def test_entries_without_peers_form_a_full_mesh() -> None:
    config = _config(CLUSTER)
    assert config.node("a").peers == ("127.0.0.1:7002", "127.0.0.1:7003")
    assert config.node("127.0.0.1:7003").peers == ("127.0.0.1:7001", "127.0.0.1:7002")


def test_explicit_peers_replace_the_mesh() -> None:
    config = _config(CLUSTER + 'peers = ["10.0.0.9:7000"]\n')
    assert config.node("127.0.0.1:7003").peers == ("10.0.0.9:7000",)
    assert config.node("a").peers == ("127.0.0.1:7002", "127.0.0.1:7003")


def test_top_level_peers_apply_to_every_entry() -> None:
    config = _config('peers = ["10.0.0.9:7000"]\n' + CLUSTER)
    assert {node.peers for node in config.nodes} == {("10.0.0.9:7000",)}


def test_port_zero_entries_are_left_out_of_the_mesh() -> None:
    config = _config(
        '[[nodes]]\nlisten = "127.0.0.1:0"\nhttp = "127.0.0.1:0"\n'
        '[[nodes]]\nlisten = "127.0.0.1:7002"\n'
    )
    assert [node.peers for node in config.nodes] == [("127.0.0.1:7002",), ()]


def test_settings_picks_an_entry_by_name() -> None:
    assert _config(CLUSTER).settings("b").listen == "127.0.0.1:7002"


def test_settings_needs_a_name_when_there_are_several_entries() -> None:
    with pytest.raises(ConfigError, match=r"has 3 \[\[nodes\]\] entries; choose one with --node"):
        _config(CLUSTER).settings()


def test_single_entry_is_chosen_without_a_name() -> None:
    assert _config('[[nodes]]\nname = "x"\n').settings().name == "x"


def test_unknown_entry_name_lists_the_names() -> None:
    with pytest.raises(ConfigError, match=r"no \[\[nodes\]\] entry named 'z' \(names: a, b, "):
        _config(CLUSTER).settings("z")


def test_unknown_key_in_an_entry_names_entry_and_key() -> None:
    with pytest.raises(ConfigError, match=r"\[\[nodes\]\] #2 \('b'\): unknown setting 'port'"):
        _config('[[nodes]]\nname = "a"\n[[nodes]]\nname = "b"\nport = 1\n')


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[nodes]]\nname = "a"\n[[nodes]]\nname = "a"\nlisten = "127.0.0.1:1"\n', "name 'a'"),
        ('[[nodes]]\nlisten = "127.0.0.1:1"\n[[nodes]]\nlisten = "127.0.0.1:1"\n', "listen"),
    ],
)
def test_duplicate_entries_are_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=f"two \\[\\[nodes\\]\\] entries have {message}"):
        _config(text)


@pytest.mark.parametrize("text", ["nodes = 3", "nodes = [1, 2]", "[[nodes]]\nname = ''\n"])
def test_malformed_nodes_are_errors(text: str) -> None:
    with pytest.raises(ConfigError):
        _config(text)


# -- files and argv ----------------------------------------------------------------------------


def test_load_config_file_reads_toml(tmp_path: Path) -> None:
    path = tmp_path / "cluster.toml"
    path.write_text(CLUSTER, encoding="utf-8")
    config = load_config_file(path)
    assert config.source == str(path)
    assert config.names() == ("a", "b", "127.0.0.1:7003")


def test_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config_file(tmp_path / "absent.toml")


def test_invalid_toml_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("listen = \n", encoding="utf-8")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config_file(path)


def test_non_utf8_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(b'listen = "\xff"\n')
    with pytest.raises(ConfigError, match="is not UTF-8"):
        load_config_file(path)


def test_to_argv_reproduces_the_settings() -> None:
    text = CLUSTER + "full_sync_interval = 7.5\ndelta_gossip = false\n"  # in the last entry
    settings = _config(text).node("127.0.0.1:7003")
    assert (settings.full_sync_interval, settings.delta_gossip) == (7.5, False)
    assert settings_from_args(settings.to_argv()) == dataclasses.replace(settings, name="")

"""The data-dir, in-memory and durability settings, and where a node's state goes."""

from __future__ import annotations

from pathlib import Path

import pytest

from dcounter_node._cli import settings_from_args
from dcounter_node._errors import ConfigError
from dcounter_node._process import store_for as _store
from dcounter_node._settings import NodeSettings, parse_config
from dcounter_node._storage_sqlite import DATABASE_FILENAME, default_data_dir


def test_storage_settings_default_to_batched_in_the_default_directory() -> None:
    settings = NodeSettings()
    assert (settings.data_dir, settings.in_memory, settings.durability) == (
        None,
        False,
        "batched",
    )


def test_storage_flags_are_parsed() -> None:
    settings = settings_from_args(["--data-dir", "/srv/a", "--durability", "always", "--in-memory"])
    assert (settings.data_dir, settings.in_memory, settings.durability) == (
        "/srv/a",
        True,
        "always",
    )


def test_storage_keys_are_read_from_the_config_file() -> None:
    cluster = parse_config(
        {
            "durability": "always",
            "nodes": [
                {"name": "a", "listen": "127.0.0.1:7001", "data_dir": "state/a"},
                {"name": "b", "listen": "127.0.0.1:7002", "in_memory": True},
            ],
        }
    )
    a, b = cluster.node("a"), cluster.node("b")
    assert (a.data_dir, a.in_memory, a.durability) == ("state/a", False, "always")
    assert (b.data_dir, b.in_memory, b.durability) == (None, True, "always")


@pytest.mark.parametrize(
    ("key", "value"),
    [("durability", "sometimes"), ("data_dir", ""), ("data_dir", 3), ("in_memory", "yes")],
)
def test_bad_storage_keys_are_config_errors(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=key):
        parse_config({key: value})


def test_a_bad_durability_flag_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        settings_from_args(["--durability", "sometimes"])
    assert exited.value.code == 2
    assert "--durability" in capsys.readouterr().err


def test_storage_settings_round_trip_through_argv() -> None:
    settings = NodeSettings(data_dir="/srv/a", in_memory=False, durability="always")
    assert settings_from_args(settings.to_argv()) == settings


def test_default_data_dir_is_keyed_by_the_listen_address() -> None:
    environ = {"XDG_DATA_HOME": "/xdg", "HOME": "/home/u"}
    assert default_data_dir("127.0.0.1:7946", environ) == Path("/xdg/dcounter/127.0.0.1_7946")
    assert default_data_dir("[::1]:7946", environ) == Path("/xdg/dcounter/___1__7946")
    assert default_data_dir("Node-A.example:80", environ) == Path("/xdg/dcounter/node-a.example_80")


@pytest.mark.parametrize("xdg", [None, "", "relative/dir"])
def test_default_data_dir_falls_back_to_local_share(xdg: str | None) -> None:
    environ = {"HOME": "/home/u"} | ({} if xdg is None else {"XDG_DATA_HOME": xdg})
    assert default_data_dir("h:1", environ) == Path("/home/u/.local/share/dcounter/h_1")


def test_node_uses_the_data_dir_setting(tmp_path: Path) -> None:
    store = _store(
        NodeSettings(listen="127.0.0.1:7001", data_dir=str(tmp_path), durability="always")
    )
    assert store is not None
    assert (store.path, store.durability, store.node_address) == (
        tmp_path / DATABASE_FILENAME,
        "always",
        "127.0.0.1:7001",
    )


def test_node_defaults_to_the_xdg_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    store = _store(NodeSettings(listen="127.0.0.1:7001"))
    assert store is not None
    assert store.path == tmp_path / "dcounter" / "127.0.0.1_7001" / DATABASE_FILENAME
    assert store.durability == "batched"


def test_in_memory_wins_over_a_data_dir(tmp_path: Path) -> None:
    assert _store(NodeSettings(data_dir=str(tmp_path), in_memory=True)) is None


def test_listen_port_0_without_a_data_dir_keeps_no_state(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert _store(NodeSettings(listen="127.0.0.1:0")) is None
    assert "running in memory" in caplog.text

"""The dcounter-node command line: flags, config merging, usage errors, log format."""

from __future__ import annotations

import io
import json
import logging
from typing import TYPE_CHECKING

import pytest

from dcounter_node._cli import main, settings_from_args
from dcounter_node._errors import ConfigError
from dcounter_node._logging import configure_logging
from dcounter_node._settings import NodeSettings

if TYPE_CHECKING:
    from pathlib import Path


def test_help_describes_flags_defaults_and_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: dcounter-node")
    for text in (
        "--listen HOST:PORT",
        "(default: 127.0.0.1:7946)",
        "--http HOST:PORT",
        "--peers ADDR[,ADDR...]",
        "--sync-interval SECONDS",
        "--full-sync-interval SECONDS",
        "--max-sync-peers N",
        "--no-delta-gossip",
        "--log-format {text,json}",
        "examples:",
        "dcounter-node ready gossip=",
    ):
        assert text in out


def test_no_flags_give_the_defaults() -> None:
    assert settings_from_args([]) == NodeSettings()


def test_flags_set_every_setting() -> None:
    settings = settings_from_args(
        [
            "--listen=[::1]:0",
            "--http",
            "0.0.0.0:9000",
            "--peers",
            "127.0.0.1:7001, 127.0.0.1:7002,127.0.0.1:7001",
            "--sync-interval",
            "0.5",
            "--full-sync-interval",
            "2",
            "--max-sync-peers",
            "5",
            "--no-delta-gossip",
            "--log-level",
            "warning",
            "--log-format",
            "json",
        ]
    )
    assert settings == NodeSettings(
        listen="[::1]:0",
        http="0.0.0.0:9000",
        peers=("127.0.0.1:7001", "127.0.0.1:7002"),
        sync_interval=0.5,
        full_sync_interval=2.0,
        max_sync_peers=5,
        delta_gossip=False,
        log_level="warning",
        log_format="json",
    )


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "node.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_config_file_settings_are_used(tmp_path: Path) -> None:
    path = _write(tmp_path, 'listen = "127.0.0.1:7001"\nsync_interval = 0.2\n')
    settings = settings_from_args(["--config", path])
    assert (settings.listen, settings.sync_interval) == ("127.0.0.1:7001", 0.2)


def test_flags_win_over_the_config_file(tmp_path: Path) -> None:
    path = _write(tmp_path, 'listen = "127.0.0.1:7001"\nsync_interval = 0.2\n')
    settings = settings_from_args(["--config", path, "--sync-interval", "3"])
    assert (settings.listen, settings.sync_interval) == ("127.0.0.1:7001", 3.0)


def test_node_flag_picks_the_entry_and_flags_still_win(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        'max_sync_peers = 4\n[[nodes]]\nname = "a"\nlisten = "127.0.0.1:7001"\n'
        '[[nodes]]\nname = "b"\nlisten = "127.0.0.1:7002"\n',
    )
    settings = settings_from_args(["--config", path, "--node", "b", "--max-sync-peers", "1"])
    assert (settings.name, settings.listen, settings.peers, settings.max_sync_peers) == (
        "b",
        "127.0.0.1:7002",
        ("127.0.0.1:7001",),
        1,
    )


def test_unknown_config_key_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, "colour = 1\n")
    assert main(["--config", path]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"dcounter-node: error: {path}: unknown setting 'colour'")
    assert err.count("\n") == 1


def test_missing_config_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(tmp_path / "none.toml")]) == 2
    assert "cannot read config file" in capsys.readouterr().err


def test_bad_config_values_raise_config_error(tmp_path: Path) -> None:
    path = _write(tmp_path, "max_sync_peers = -2\n")
    with pytest.raises(ConfigError, match="max_sync_peers: expected an integer >= 1, got -2"):
        settings_from_args(["--config", path])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--sync-interval", "0"], "argument --sync-interval: expected a number of seconds > 0"),
        (["--sync-interval", "-1"], "argument --sync-interval: expected a number of seconds > 0"),
        (["--sync-interval", "nan"], "argument --sync-interval: expected a number of seconds > 0"),
        (["--sync-interval", "soon"], "argument --sync-interval: expected a number of seconds"),
        (["--full-sync-interval", "inf"], "argument --full-sync-interval: expected a number"),
        (["--max-sync-peers", "0"], "argument --max-sync-peers: expected an integer >= 1"),
        (["--max-sync-peers", "2.5"], "argument --max-sync-peers: expected an integer >= 1"),
        (["--listen", "7946"], "argument --listen: expected HOST:PORT, got '7946'"),
        (["--listen", "::1:7946"], "argument --listen: IPv6 addresses need brackets"),
        (["--http", "host:99999"], "argument --http: port must be a number from 0 to 65535"),
        (["--peers", "127.0.0.1:0"], "argument --peers: port 0 cannot be dialled"),
        (["--peers", "127.0.0.1:1,,127.0.0.1:2"], "argument --peers: empty entry in"),
        (["--peers", "127.0.0.1:1,"], "argument --peers: empty entry in"),
        (["--log-level", "loud"], "argument --log-level: expected one of debug, info"),
        (["--log-format", "xml"], "argument --log-format: expected one of text, json"),
        (["--node", "a"], "--node needs --config"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_flags_exit_2_with_one_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"dcounter-node: error: {message}" in err


def test_json_log_format_writes_one_object_per_line() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    try:
        configure_logging("info", "json", stream=stream)
        logging.getLogger("dcounter_node.test").info("hello %s", "world")
        logging.getLogger("dcounter_node.test").debug("not shown")
    finally:
        root.handlers[:], level = before
        root.setLevel(level)
    (line,) = stream.getvalue().splitlines()
    record = json.loads(line)
    assert {k: record[k] for k in ("level", "logger", "message")} == {
        "level": "info",
        "logger": "dcounter_node.test",
        "message": "hello world",
    }
    assert record["time"].endswith("+00:00")


def test_max_replicas_comes_from_the_config_file_or_the_flag(tmp_path: Path) -> None:
    path = _write(tmp_path, 'max_replicas = 500\n[[nodes]]\nlisten = "127.0.0.1:7001"\n')
    from_file = settings_from_args(["--config", path])
    from_flag = settings_from_args(["--config", path, "--max-replicas", "20"])
    assert (from_file.node_config().max_replicas, from_flag.node_config().max_replicas) == (
        500,
        20,
    )
    assert settings_from_args([]).node_config().max_replicas == 10_000

"""--max-keys and --max-key-length: flag, config file, --help, and the node they configure."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from dcounter_crdt import DEFAULT_MAX_KEY_LENGTH, DEFAULT_MAX_KEYS
from dcounter_node._cli import main, settings_from_args
from dcounter_node._errors import ConfigError

if TYPE_CHECKING:
    from pathlib import Path


def test_key_limits_default_to_the_maps_defaults() -> None:
    config = settings_from_args([]).node_config()
    assert (config.max_keys, config.max_key_length) == (DEFAULT_MAX_KEYS, DEFAULT_MAX_KEY_LENGTH)


def test_key_limits_come_from_the_config_file_or_the_flags(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(
        'max_keys = 500\nmax_key_length = 40\n[[nodes]]\nlisten = "127.0.0.1:7001"\n',
        encoding="utf-8",
    )
    from_file = settings_from_args(["--config", str(path)]).node_config()
    from_flags = settings_from_args(
        ["--config", str(path), "--max-keys", "20", "--max-key-length", "9"]
    ).node_config()
    assert (from_file.max_keys, from_file.max_key_length) == (500, 40)
    assert (from_flags.max_keys, from_flags.max_key_length) == (20, 9)


@pytest.mark.parametrize("flag", ["--max-keys", "--max-key-length"])
@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_a_bad_key_limit_is_a_usage_error(
    flag: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises((SystemExit, ConfigError)) as caught:
        settings_from_args([flag, value])
    if isinstance(caught.value, SystemExit):
        assert caught.value.code == 2
    assert flag.lstrip("-").replace("-", "_") in (
        str(caught.value) + capsys.readouterr().err
    ).replace("-", "_")


def test_help_explains_the_key_limits(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--help"])
    assert caught.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--max-keys N most named counters the node holds" in text
    assert "--max-key-length BYTES longest counter name, in UTF-8 bytes" in text

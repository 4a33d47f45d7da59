"""--prune-after: flag, config key, default, --help and bad values."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from dcounter_node._cli import main, settings_from_args
from dcounter_node._errors import ConfigError
from dcounter_node._settings import NodeSettings, load_config_file

if TYPE_CHECKING:
    from pathlib import Path


def test_prune_after_defaults_to_an_hour() -> None:
    assert NodeSettings().prune_after == 3600.0


def test_prune_after_is_parsed_and_round_trips() -> None:
    settings = settings_from_args(["--prune-after", "2.5"])
    assert settings.prune_after == 2.5
    assert settings_from_args(settings.to_argv()) == settings


def test_zero_turns_pruning_off() -> None:
    assert settings_from_args(["--prune-after", "0"]).prune_after == 0.0


def test_prune_after_comes_from_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text("prune_after = 120\n", encoding="utf-8")
    assert load_config_file(path).settings(None).prune_after == 120.0


@pytest.mark.parametrize("bad", ["-1", "soon", "nan", "inf"])
def test_a_bad_prune_after_is_a_usage_error(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--prune-after", bad])
    assert exited.value.code == 2
    assert "seconds >= 0" in capsys.readouterr().err


def test_a_bad_prune_after_in_a_config_file_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text("prune_after = -3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="prune_after"):
        load_config_file(path)


def test_help_explains_prune_after(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "--prune-after SECONDS" in capsys.readouterr().out

"""The fault lab's command line without namespaces: clear refusals, and the plot."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import pytest

from dcounter_tools.cluster.cli import main as cluster_main
from dcounter_tools.cluster.history import FaultRecord, History, Op, Read
from dcounter_tools.cluster.plot import plot_history
from dcounter_tools.errors import UsageError

if TYPE_CHECKING:
    from pathlib import Path


@pytest.mark.parametrize("argv", [["run", "--hosts", "netns"], ["clean"]])
def test_without_root_the_lab_exits_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert cluster_main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("dcounter-cluster: --hosts netns needs root")


@pytest.mark.parametrize(
    "flags", [["--nemesis", "kill"], ["--history", "h.jsonl"], ["--plot", "p.png"]]
)
def test_lab_flags_without_netns_are_usage_errors(
    capsys: pytest.CaptureFixture[str], flags: list[str]
) -> None:
    assert cluster_main(["run", *flags]) == 2
    assert "need --hosts netns" in capsys.readouterr().err


def test_local_fault_flags_with_netns_are_usage_errors(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("dcounter_tools.cluster.labcli.require_netns", lambda: None)
    assert cluster_main(["run", "--hosts", "netns", "--kill-node"]) == 2
    assert "--hosts netns takes no --kill-node" in capsys.readouterr().err


def _history() -> History:
    ops = [Op(0, i % 2, 1 + i % 3, f"k{i}", i * 0.1, i * 0.1 + 0.05, "ok") for i in range(40)]
    polls = [Read(i * 0.2, n, i, i, 0) for i in range(20) for n in range(2)]
    faults = [FaultRecord({"kind": "partition"}, 1.0, 2.0, "partition halves: [n0] | [n1]")]
    final = [Read(5.0, n, 80, 80, 0) for n in range(2)]
    return History(("node-0", "node-1"), 3, ops, faults, polls, list(final))


def test_the_plot_is_a_png(tmp_path: Path) -> None:
    path = tmp_path / "lab.png"
    plot_history(_history(), path)
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 10_000


def test_without_matplotlib_the_plot_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    real = importlib.import_module

    def missing(name: str, package: str | None = None) -> Any:
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", missing)
    with pytest.raises(UsageError, match=r"dcounter-tools\[plot\]"):
        plot_history(_history(), tmp_path / "lab.png")

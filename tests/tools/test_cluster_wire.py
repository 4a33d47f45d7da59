"""dcounter-cluster --wire: which dcounter-node wire each launched node gets."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dcounter_tools.cluster.cli import main
from dcounter_tools.cluster.spec import build_spec

if TYPE_CHECKING:
    import pytest


def _wires(argvs: list[list[str]]) -> list[str | None]:
    return [argv[argv.index("--wire") + 1] if "--wire" in argv else None for argv in argvs]


def test_mixed_wire_alternates_auto_and_seed() -> None:
    spec = build_spec(nodes=4, wire="mixed")
    assert _wires([node.argv() for node in spec.nodes]) == ["auto", "seed", "auto", "seed"]


def test_one_wire_is_passed_to_every_node() -> None:
    spec = build_spec(nodes=3, wire="seed")
    assert _wires([node.argv() for node in spec.nodes]) == ["seed", "seed", "seed"]


def test_no_wire_leaves_the_nodes_default() -> None:
    spec = build_spec(nodes=2)
    assert _wires([node.argv() for node in spec.nodes]) == [None, None]


def test_wire_with_the_in_process_memory_transport_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["run", "--in-process", "--wire", "seed", "--duration", "1", "--quiet"]) == 2
    assert "--wire with --in-process needs --transport tcp" in capsys.readouterr().err

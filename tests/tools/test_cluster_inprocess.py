"""dcounter-cluster run --in-process: the same run logic with Node objects in one loop."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.tools.conftest import ClusterCLI

FAST = (
    *("--in-process", "--duration", "1", "--interval", "0.05"),
    *("--sync-interval", "0.05", "--seed", "3", "--quiet"),
)


def _assert_exact(report: dict[str, Any], nodes: int) -> None:
    assert len(report["nodes"]) == nodes
    assert report["acknowledged"] == report["attempted"] > 0
    assert report["failed"] == report["unknown"] == 0
    assert report["expected"] == report["acked_increments"] - report["acked_decrements"]
    assert report["values"] == [report["expected"]] * nodes
    assert report["converged"] is True


@pytest.mark.parametrize("transport", ["memory", "tcp"])
def test_in_process_run_converges_exactly(cluster_json: ClusterCLI, transport: str) -> None:
    status, report = cluster_json("run", "--nodes", "4", "--transport", transport, *FAST)
    assert status == 0
    assert report["mode"] == f"in-process, {transport} transport"
    _assert_exact(report, 4)


def test_in_process_run_survives_a_kill_and_a_partition(cluster_json: ClusterCLI) -> None:
    status, report = cluster_json(
        "run", "--nodes", "4", "--kill-node", "0", "--partition", "0.4", *FAST
    )
    assert status == 0
    assert report["kill"]["node"] == "node-0"
    assert report["kill"]["new_replica"] != report["kill"]["old_replica"]
    assert report["partition"]["halves"] == [["node-0", "node-1"], ["node-2", "node-3"]]
    assert report["partition"]["links_cut"] == 8
    _assert_exact(report, 4)


def test_in_process_tcp_run_with_mixed_wires_converges_exactly(cluster_json: ClusterCLI) -> None:
    status, report = cluster_json(
        "run", "--nodes", "4", "--transport", "tcp", "--wire", "mixed", *FAST
    )
    assert status == 0
    assert report["mode"] == "in-process, tcp transport, mixed wire"
    _assert_exact(report, 4)

"""dcounter-cluster run end to end: real node processes, exact convergence, no leftovers."""

from __future__ import annotations

import re
import select
import signal
import socket
import subprocess
import time
from typing import TYPE_CHECKING, Any

import pytest

from dcounter_tools.cluster.cli import main

if TYPE_CHECKING:
    from pathlib import Path

    from tests.tools.conftest import ClusterCLI, PidsGone

pytestmark = pytest.mark.slow

#: Small and quick: these spawn real processes on a shared 2-core machine.
FAST = ("--duration", "1.5", "--sync-interval", "0.2", "--seed", "7", "--quiet")


def _pids(report: dict[str, Any]) -> list[int]:
    pids = [int(n["pid"]) for n in report["nodes"]]
    if report["kill"] is not None:
        pids.append(int(report["kill"]["old_pid"]))
    return pids


def _assert_exact(report: dict[str, Any]) -> None:
    assert report["unknown"] == 0
    assert report["failed"] == 0
    assert report["acknowledged"] == report["attempted"] > 0
    assert report["expected"] == report["acked_increments"] - report["acked_decrements"]
    assert report["values"] == [report["expected"]] * len(report["nodes"])
    assert report["converged"] is True
    assert report["convergence_seconds"] is not None


def test_run_from_a_config_file_converges_exactly(
    tmp_path: Path, cluster_json: ClusterCLI, pids_gone: PidsGone
) -> None:
    config = tmp_path / "cluster.toml"
    config.write_text(
        "sync_interval = 0.2\n"
        + "".join(
            f'[[nodes]]\nname = "{name}"\nlisten = "127.0.0.1:0"\nhttp = "127.0.0.1:0"\n'
            for name in ("a", "b", "c")
        )
    )
    status, report = cluster_json("run", "--config", str(config), *FAST)
    assert status == 0
    assert [n["name"] for n in report["nodes"]] == ["a", "b", "c"]
    assert report["sync_interval"] == 0.2
    _assert_exact(report)
    assert pids_gone(_pids(report)) == []


def test_run_durable_with_a_killed_node_on_ports_it_picked_converges_exactly(
    cluster_json: ClusterCLI, pids_gone: PidsGone
) -> None:
    # Issue 12.8: the restarted node's database remembered 127.0.0.1:0 and refused to start.
    status, report = cluster_json("run", "--nodes", "2", "--kill-node", "0", "--durable", *FAST)
    assert status == 0, report
    kill = report["kill"]
    assert kill["node"] == "node-0"
    assert kill["old_pid"] != kill["new_pid"]
    assert kill["old_replica"].split("#")[0] == kill["new_replica"].split("#")[0]
    assert not kill["old_replica"].startswith("127.0.0.1:0#")
    _assert_exact(report)
    assert pids_gone(_pids(report)) == []


def test_run_with_a_killed_node_converges_exactly(
    cluster_json: ClusterCLI, pids_gone: PidsGone
) -> None:
    status, report = cluster_json("run", "--nodes", "3", "--kill-node", "1", *FAST)
    assert status == 0
    kill = report["kill"]
    assert kill["node"] == "node-1"
    assert kill["replicated_before_kill"] is True
    # A new incarnation: same address, new replica id, new process.
    assert kill["old_replica"].split("#")[0] == kill["new_replica"].split("#")[0]
    assert kill["old_replica"] != kill["new_replica"]
    assert kill["old_pid"] != kill["new_pid"]
    assert [n["restarts"] for n in report["nodes"]] == [0, 1, 0]
    _assert_exact(report)
    assert pids_gone(_pids(report)) == []


def test_run_with_a_partition_converges_exactly(
    cluster_json: ClusterCLI, pids_gone: PidsGone
) -> None:
    status, report = cluster_json("run", "--nodes", "3", "--partition", "0.6", *FAST)
    assert status == 0
    partition = report["partition"]
    assert partition["halves"] == [["node-0", "node-1"], ["node-2"]]
    # node-0 and node-1 each dropped node-2; node-2 dropped both.
    assert partition["links_cut"] == 4
    assert partition["healed_at"] - partition["started_at"] >= 0.6
    _assert_exact(report)
    assert pids_gone(_pids(report)) == []


def test_node_that_cannot_start_fails_the_run_and_leaves_no_process(
    capsys: pytest.CaptureFixture[str], pids_gone: PidsGone
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # node-0's gossip port is taken; node-1 may well start, and must be stopped.
        status = main(["run", "--nodes", "2", "--base-port", str(port), "--duration", "1"])
    err = capsys.readouterr().err
    assert status == 1
    assert "error: node-0 exited with status 1 before it was ready" in err
    started = [int(pid) for pid in re.findall(r" ready: .* pid (\d+)", err)]
    assert pids_gone(started) == []


def _read_line(proc: subprocess.Popen[str], deadline: float) -> str:
    stream = proc.stderr
    assert stream is not None
    while time.monotonic() < deadline:
        ready, _, _ = select.select([stream], [], [], 0.1)
        if ready:
            return stream.readline()
    pytest.fail("the launcher printed nothing in time")


@pytest.mark.parametrize(
    ("sig", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"]
)
def test_interrupted_run_stops_every_node(
    python: str, tools_env: dict[str, str], pids_gone: PidsGone, sig: signal.Signals, status: int
) -> None:
    argv = [python, "-m", "dcounter_tools.cluster", "run", "--nodes", "2", "--duration", "60"]
    proc = subprocess.Popen(
        argv, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=tools_env
    )
    pids: list[int] = []
    try:
        deadline = time.monotonic() + 30
        while (line := _read_line(proc, deadline)) and "writing" not in line:
            if " ready: " in line:
                pids.append(int(line.rsplit("pid ", 1)[1]))
        assert len(pids) == 2
        proc.send_signal(sig)
        assert proc.wait(timeout=20) == status
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    assert pids_gone(pids) == []

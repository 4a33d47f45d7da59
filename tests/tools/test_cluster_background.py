"""dcounter-cluster up / status / down: a background cluster that leaves nothing behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from typing import TYPE_CHECKING, Any

import pytest

from dcounter_tools.cluster.cli import main

if TYPE_CHECKING:
    from pathlib import Path

    from tests.tools.conftest import MembersAlive, PidsGone

pytestmark = pytest.mark.slow


def _up(python: str, env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    """``up`` in its own process, which exits while the nodes it started live on."""
    return subprocess.run(
        [python, "-m", "dcounter_tools.cluster", "up", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _call(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _status(capsys: pytest.CaptureFixture[str], state_dir: Path) -> tuple[int, dict[str, Any]]:
    code, out, _ = _call(capsys, "status", "--json", "--state-dir", str(state_dir))
    return code, json.loads(out)


def test_up_status_down_round_trip_leaves_no_process(
    python: str,
    tools_env: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    pids_gone: PidsGone,
    members_alive: MembersAlive,
) -> None:
    state_dir = tmp_path / "state"
    up = _up(python, tools_env, "--nodes", "3", "--sync-interval", "0.1", "--json")
    pids: list[int] = []
    try:
        assert up.returncode == 0, up.stderr
        state = json.loads(up.stdout)
        pids = [n["pid"] for n in state["nodes"]]
        assert (state_dir / "cluster.json").is_file()
        # The launcher has exited; the nodes live on, detached.
        assert pids_gone(pids, 0.0) == pids

        code, status = _status(capsys, state_dir)
        assert code == 0
        assert status["all_up"] is True
        gossip = [n["gossip"] for n in state["nodes"]]
        for node in status["nodes"]:
            assert node["state"] == "up"
            assert node["peers"] == sorted(set(gossip) - {node["gossip"]})

        # Each node joined the first one's membership: all list all three, alive.
        status = members_alive(state_dir)
        for node in status["nodes"]:
            mine = next(m for m in node["members"] if m["address"] == node["gossip"])
            assert mine["replica"] == node["replica"]
            assert mine["incarnation"] == 0
        code, text, _ = _call(capsys, "status", "--state-dir", str(state_dir))
        assert code == 0
        for node in state["nodes"]:
            assert f"members as {node['name']} sees them:" in text
            assert text.count(f"{node['gossip']}  alive") == 3

        request = urllib.request.Request(
            f"http://{state['nodes'][0]['http']}/increment", data=b'{"by": 5}', method="POST"
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200
        deadline = time.monotonic() + 20
        while [n["value"] for n in _status(capsys, state_dir)[1]["nodes"]] != [5, 5, 5]:
            assert time.monotonic() < deadline, "the cluster did not converge to 5"
            time.sleep(0.05)

        code, _, err = _call(capsys, "up", "--nodes", "1", "--state-dir", str(state_dir))
        assert code == 1
        assert "already up" in err
    finally:
        code, out, _ = _call(capsys, "down", "--state-dir", str(state_dir))
    assert code == 0
    assert out.count(" stopped") == 3
    assert pids_gone(pids) == []
    assert not state_dir.exists()
    assert _call(capsys, "status", "--state-dir", str(state_dir))[0] == 1


def test_status_reports_a_dead_node_and_down_still_cleans_up(
    python: str,
    tools_env: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    pids_gone: PidsGone,
) -> None:
    state_dir = tmp_path / "state"
    up = _up(python, tools_env, "--nodes", "2", "--json")
    assert up.returncode == 0, up.stderr
    nodes = json.loads(up.stdout)["nodes"]
    try:
        os.kill(nodes[1]["pid"], signal.SIGKILL)
        assert pids_gone([nodes[1]["pid"]]) == []
        code, status = _status(capsys, state_dir)
        assert code == 1
        assert [n["state"] for n in status["nodes"]] == ["up", "dead"]
        assert status["nodes"][1]["value"] is None
    finally:
        code, out, _ = _call(capsys, "down", "--state-dir", str(state_dir))
    assert code == 0
    assert "already stopped" in out
    assert pids_gone([n["pid"] for n in nodes]) == []
    assert not state_dir.exists()


def test_up_says_how_many_nodes_and_where_their_settings_came_from(
    python: str, tools_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    up = _up(python, tools_env, "--nodes", "1")
    try:
        assert up.returncode == 0, up.stderr
        assert up.stdout.splitlines()[0] == "1 node up, configured by command-line flags:"
    finally:
        code, out, _ = _call(capsys, "down", "--state-dir", str(tmp_path / "state"))
    assert code == 0, out

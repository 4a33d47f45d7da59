"""Fixtures for the tools: running the CLIs, waiting on conditions, checking processes."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any, Protocol

import pytest

from dcounter_tools.cluster.backend import NodeInfo
from dcounter_tools.cluster.cli import main as cluster_main
from dcounter_tools.cluster.processes import pid_alive

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from dcounter_tools.cluster.backend import EventSink

#: Upper bound for any single wait in these tests; real waits end far sooner.
DEADLINE = 20.0


class StillBackend:
    """The membership half of a fake cluster backend: ``nodes`` nodes (``n0``, ``n1``, ...)
    that start at once, have no peers and are never killed or restarted.

    Subclasses give the ``mode`` and answer writes and reads (``change``, ``counter``,
    ``values``).
    """

    def __init__(self, nodes: int) -> None:
        self.infos = [NodeInfo(f"n{i}", f"n{i}:1", None, f"r{i}", None) for i in range(nodes)]

    def nodes(self) -> Sequence[NodeInfo]:
        return self.infos

    async def start(self, on_event: EventSink) -> None:
        pass

    async def peers(self, index: int) -> list[str]:
        return []

    async def add_peer(self, index: int, address: str) -> None:
        pass

    async def remove_peer(self, index: int, address: str) -> bool:
        return False

    async def kill(self, index: int) -> None:
        pass

    async def restart(self, index: int, peers: Sequence[str]) -> None:
        pass

    async def close(self) -> None:
        pass


def _wait_pids_gone(pids: Sequence[int], seconds: float = DEADLINE) -> list[int]:
    deadline = time.monotonic() + seconds
    alive = [pid for pid in pids if pid_alive(pid)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.02)
        alive = [pid for pid in alive if pid_alive(pid)]
    return alive


class PidsGone(Protocol):
    def __call__(self, pids: Sequence[int], seconds: float = ...) -> list[int]: ...


@pytest.fixture
def pids_gone() -> PidsGone:
    """``pids_gone(pids)``: the pids still alive after waiting up to a deadline (want [])."""
    return _wait_pids_gone


class ClusterCLI(Protocol):
    def __call__(self, *argv: str) -> tuple[int, dict[str, Any]]: ...


@pytest.fixture
def cluster_json(capsys: pytest.CaptureFixture[str]) -> ClusterCLI:
    """Run ``dcounter-cluster ARGV --json`` in this process; return (status, report)."""

    def call(*argv: str) -> tuple[int, dict[str, Any]]:
        capsys.readouterr()
        status = cluster_main([*argv, "--json"])
        out = capsys.readouterr().out
        report: dict[str, Any] = json.loads(out) if out.strip() else {}
        return status, report

    return call


@pytest.fixture
def tools_env(tmp_path: Path) -> dict[str, str]:
    """Environment for subprocesses running the tools (state dir inside tmp_path)."""
    env = dict(os.environ)
    env["DCOUNTER_CLUSTER_STATE_DIR"] = str(tmp_path / "state")
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def python() -> str:
    """The interpreter running the tests (it has every distribution installed)."""
    return sys.executable


class MembersAlive(Protocol):
    def __call__(self, state_dir: Path) -> dict[str, Any]: ...


@pytest.fixture
def members_alive(capsys: pytest.CaptureFixture[str]) -> MembersAlive:
    """``members_alive(state_dir)``: ``status --json`` of the background cluster there, run
    until every node lists every node as an alive member (failing at a deadline)."""

    def wait(state_dir: Path) -> dict[str, Any]:
        return _wait_members_alive(state_dir, capsys)

    return wait


def _wait_members_alive(state_dir: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    deadline = time.monotonic() + 60.0
    while True:
        capsys.readouterr()
        cluster_main(["status", "--state-dir", str(state_dir), "--json"])
        status: dict[str, Any] = json.loads(capsys.readouterr().out)
        everyone = sorted(node["gossip"] for node in status["nodes"])
        views = [
            [(m["address"], m["state"]) for m in node["members"] or ()] for node in status["nodes"]
        ]
        if all(view == [(a, "alive") for a in everyone] for view in views):
            return status
        assert time.monotonic() < deadline, f"members {everyone} alive everywhere; {views}"
        time.sleep(0.1)

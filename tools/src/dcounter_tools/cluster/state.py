"""``up`` / ``down`` / ``status``: a cluster left running in the background.

``up`` starts detached node processes (own sessions, output in files in the state
directory; the first one first, as every other joins its membership with ``--join``), waits
for every ready line, wires the mesh, and writes ``cluster.json`` there:
each node's name, pid, addresses, replica id and files. ``down`` stops the recorded
processes (SIGTERM, then SIGKILL after a grace period; a recycled pid that no longer runs
``dcounter_node`` is left alone) and removes the state. ``status`` asks every node for its
value and peers, reporting dead or unreachable nodes instead of failing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dcounter_tools.cluster.certs import TLS_DIR, cluster_access, with_tls
from dcounter_tools.cluster.client import PLAIN, APIAccess, APIError, NodeClient
from dcounter_tools.cluster.processes import (
    is_node_process,
    pid_alive,
    spawn_detached,
    terminate_pid,
    wait_ready_file,
)
from dcounter_tools.errors import ClusterError, ClusterStateError

if TYPE_CHECKING:
    from dcounter_client import Member
    from dcounter_tools.cluster.spec import ClusterSpec, NodeSpec

__all__ = [
    "STATE_FILE",
    "ClusterState",
    "NodeStatus",
    "StateNode",
    "cluster_down",
    "cluster_status",
    "cluster_up",
    "load_state",
]

STATE_FILE = "cluster.json"
_STATE_VERSION = 1


@dataclass(frozen=True, slots=True)
class StateNode:
    """One background node as recorded in the state file."""

    name: str
    pid: int
    gossip: str
    http: str
    replica: str
    stdout: str
    log: str


@dataclass(frozen=True, slots=True)
class ClusterState:
    """The state file's contents."""

    created: float
    source: str
    nodes: tuple[StateNode, ...]
    #: Made with ``--tls``: HTTPS and tokens from ``STATE_DIR/tls``.
    tls: bool = False

    def to_json(self) -> dict[str, Any]:
        """As written to ``cluster.json``."""
        return {
            "version": _STATE_VERSION,
            "created": self.created,
            "source": self.source,
            "nodes": [asdict(n) for n in self.nodes],
            "tls": self.tls,
        }


def load_state(state_dir: Path) -> ClusterState | None:
    """The recorded cluster, None if there is none; ClusterStateError if unreadable."""
    path = state_dir / STATE_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ClusterStateError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = json.loads(text)
        if data.get("version") != _STATE_VERSION:
            raise ClusterStateError(f"{path}: unsupported state version {data.get('version')!r}")
        nodes = tuple(
            StateNode(
                str(n["name"]),
                int(n["pid"]),
                str(n["gossip"]),
                str(n["http"]),
                str(n["replica"]),
                str(n["stdout"]),
                str(n["log"]),
            )
            for n in data["nodes"]
        )
        tls = data.get("tls", False)
        if not isinstance(tls, bool):
            raise TypeError(f"tls is not a boolean: {tls!r}")
        return ClusterState(float(data["created"]), str(data["source"]), nodes, tls)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ClusterStateError(f"{path} is not a cluster state file: {exc!r}") from None


def _write_state(state_dir: Path, state: ClusterState) -> None:
    path = state_dir / STATE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state.to_json(), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _make_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)


def _running(node: StateNode) -> bool:
    return pid_alive(node.pid) and is_node_process(node.pid)


async def cluster_up(
    spec: ClusterSpec,
    state_dir: Path,
    *,
    startup_timeout: float = 30.0,
    request_timeout: float = 5.0,
    tls: bool = False,
) -> ClusterState:
    """Start ``spec`` in the background and record it in ``state_dir``.

    With ``tls``, a throwaway CA, node certificates and API tokens are made in
    ``state_dir/tls``: the nodes gossip over mutual TLS and serve their APIs over HTTPS,
    driven with the admin token. ClusterStateError if a recorded cluster still runs
    there. On any failure (Ctrl-C too)
    every node started so far is stopped before the error propagates. The nodes keep
    their counts in memory only (``--in-memory``).
    """
    previous = load_state(state_dir)
    if previous is not None and any(_running(n) for n in previous.nodes):
        raise ClusterStateError(
            f"a cluster is already up in {state_dir} (stop it with: dcounter-cluster down)"
        )
    _make_dir(state_dir)
    access = PLAIN
    if tls:
        spec = with_tls(spec, state_dir / TLS_DIR)
        access = cluster_access(state_dir / TLS_DIR)
    started: list[tuple[str, int, Path, Path]] = []
    complete = False

    def spawn(node: NodeSpec, *extra: str) -> None:
        out = state_dir / f"{node.name}.out"
        log = state_dir / f"{node.name}.log"
        pid = spawn_detached([*node.argv(), *extra], out, log)
        started.append((node.name, pid, out, log))

    try:
        # The first node is the others' membership seed (--join), so it starts first.
        first, *rest = spec.nodes
        spawn(first)
        name, pid, out, log = started[0]
        seed = await wait_ready_file(name, pid, out, log, startup_timeout)
        for node in rest:
            spawn(node, "--join", seed.gossip)
        others = await asyncio.gather(
            *(
                wait_ready_file(name, pid, out, log, startup_timeout)
                for name, pid, out, log in started[1:]
            )
        )
        readies = [seed, *others]
        nodes = tuple(
            StateNode(name, ready.pid, ready.gossip, ready.http, ready.replica, str(out), str(log))
            for (name, _, out, log), ready in zip(started, readies, strict=True)
        )
        dynamic = [i for i, node in enumerate(spec.nodes) if node.wire_after_start]
        clients = [NodeClient(n.http, timeout=request_timeout, access=access) for n in nodes]
        try:
            pairs = {
                (i, j)
                for d in dynamic
                for k in range(len(nodes))
                if k != d
                for i, j in ((d, k), (k, d))
            }
            await asyncio.gather(*(clients[i].add_peer(nodes[j].gossip) for i, j in sorted(pairs)))
        except Exception as exc:
            raise ClusterError(f"could not wire the peers: {exc}") from exc
        finally:
            for client in clients:
                await client.close()
        state = ClusterState(time.time(), spec.source, nodes, tls)
        _write_state(state_dir, state)
        complete = True
        return state
    finally:
        if not complete:
            await asyncio.gather(
                *(terminate_pid(pid) for _, pid, _, _ in started), return_exceptions=True
            )


@dataclass(frozen=True, slots=True)
class StopResult:
    """What ``down`` did to one node."""

    name: str
    pid: int
    outcome: str


async def cluster_down(state_dir: Path, *, grace: float = 5.0) -> list[StopResult] | None:
    """Stop the recorded cluster and remove its state; None if there was none."""
    state = load_state(state_dir)
    if state is None:
        return None

    async def stop(node: StateNode) -> StopResult:
        if not pid_alive(node.pid):
            return StopResult(node.name, node.pid, "already stopped")
        if not is_node_process(node.pid):
            return StopResult(node.name, node.pid, "pid now belongs to another program; left alone")
        killed = await terminate_pid(node.pid, grace)
        return StopResult(node.name, node.pid, "killed (SIGKILL)" if killed else "stopped")

    results = await asyncio.gather(*(stop(n) for n in state.nodes))
    _remove_state(state_dir, state)
    return list(results)


def _remove_state(state_dir: Path, state: ClusterState) -> None:
    for node in state.nodes:
        for name in (node.stdout, node.log):
            with contextlib.suppress(FileNotFoundError):
                Path(name).unlink()
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    # The throwaway CA's private key goes with the cluster.
    shutil.rmtree(state_dir / TLS_DIR, ignore_errors=True)
    with contextlib.suppress(OSError):
        state_dir.rmdir()  # only when nothing else is in it


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _access(state_dir: Path, state: ClusterState) -> APIAccess:
    """How ``status`` reaches the recorded nodes' APIs."""
    if not state.tls:
        return PLAIN
    try:
        return cluster_access(state_dir / TLS_DIR)
    except ClusterError as exc:
        raise ClusterStateError(f"cannot reach the --tls cluster's APIs: {exc}") from None


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """One background node as ``status`` sees it."""

    name: str
    pid: int
    gossip: str
    http: str
    #: "up", "dead" (process gone) or "unreachable" (process there, API not answering).
    state: str
    value: int | None = None
    replica: str | None = None
    peers: tuple[str, ...] | None = None
    error: str | None = None
    #: The node's member list (``GET /members``); None if it could not be read.
    members: tuple[Member, ...] | None = None
    #: Why the member list could not be read (the node is up otherwise).
    members_error: str | None = None


async def cluster_status(
    state_dir: Path, *, request_timeout: float = 2.0
) -> tuple[ClusterState, list[NodeStatus]] | None:
    """Ask every recorded node for its value and peers; None if no cluster is recorded."""
    state = load_state(state_dir)
    if state is None:
        return None
    access = _access(state_dir, state)

    async def ask(node: StateNode) -> NodeStatus:
        if not _running(node):
            return NodeStatus(node.name, node.pid, node.gossip, node.http, "dead")
        client = NodeClient(node.http, timeout=request_timeout, access=access)
        members: tuple[Member, ...] | None = None
        members_error: str | None = None
        try:
            view = await client.counter()
            peers = await client.peers()
            try:
                members = tuple(await client.members())
            except APIError as exc:  # a node without membership still has a value
                members_error = _reason(exc)
        except Exception as exc:
            return NodeStatus(
                node.name, node.pid, node.gossip, node.http, "unreachable", error=_reason(exc)
            )
        finally:
            await client.close()
        return NodeStatus(
            node.name,
            node.pid,
            node.gossip,
            node.http,
            "up",
            view.value,
            view.replica,
            tuple(peers),
            members=members,
            members_error=members_error,
        )

    return state, list(await asyncio.gather(*(ask(n) for n in state.nodes)))

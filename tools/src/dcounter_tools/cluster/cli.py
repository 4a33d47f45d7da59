"""``dcounter-cluster``: launch a static dcounter cluster, drive it and check it converges.

run      start N node processes, write to them, optionally kill one / partition them,
         wait for convergence, print a report (exit 0 only if every node is exact)
up       start a cluster in the background and record it in a state directory
status   show each background node's value, peers and members (as that node sees them)
down     stop the background cluster and remove its state
clean    remove network namespaces and links a crashed fault lab left behind

``run --hosts netns`` is the fault lab (see labcli.py and lab.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dcounter_tools.__about__ import __version__
from dcounter_tools.cluster.backend import ClusterBackend, ProcessBackend
from dcounter_tools.cluster.certs import TLS_DIR, cluster_access, with_tls
from dcounter_tools.cluster.client import PLAIN
from dcounter_tools.cluster.inprocess import InProcessBackend
from dcounter_tools.cluster.labcli import (
    add_lab_flags,
    clean_command,
    lab_command,
    lab_flags_used,
)
from dcounter_tools.cluster.progress import make_progress
from dcounter_tools.cluster.runner import KILL_AT, RunOptions, run_cluster
from dcounter_tools.cluster.spec import (
    CLUSTER_WIRES,
    DEFAULT_NODES,
    DEFAULT_SYNC_INTERVAL,
    ClusterSpec,
    build_spec,
)
from dcounter_tools.cluster.state import (
    STATE_FILE,
    NodeStatus,
    cluster_down,
    cluster_status,
    cluster_up,
)
from dcounter_tools.errors import ClusterError, LabUnavailableError, UsageError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from dcounter_client import Member

__all__ = ["main", "run"]

#: Environment variable naming the default state directory of up/down/status.
STATE_DIR_ENV = "DCOUNTER_CLUSTER_STATE_DIR"
DEFAULT_STATE_DIR = ".dcounter-cluster"

_EPILOG = """\
examples:
  dcounter-cluster run                                  10 nodes, 10 s, like the seed demo
  dcounter-cluster run --nodes 5 --duration 5 --kill-node --partition 2 --json
  dcounter-cluster run --in-process --transport tcp
  dcounter-cluster run --config cluster.toml            nodes from a dcounter-node file
  dcounter-cluster up --nodes 3 && dcounter-cluster status && dcounter-cluster down
  dcounter-cluster run --hosts netns --nemesis partition,kill,pause,restart --duration 30 \
      --nemesis-interval 3 --seed 7 --history h.jsonl --plot h.png     the fault lab (root)
"""


class _Terminated(Exception):
    """SIGTERM or SIGHUP arrived: stop everything and exit."""


def _default_state_dir() -> Path:
    return Path(os.environ.get(STATE_DIR_ENV, DEFAULT_STATE_DIR))


def _cluster_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("cluster")
    group.add_argument("--nodes", type=int, metavar="N", help=f"number of nodes ({DEFAULT_NODES})")
    group.add_argument("--host", metavar="HOST", help="address the nodes bind (127.0.0.1)")
    group.add_argument(
        "--base-port",
        type=int,
        metavar="P",
        help="fixed ports: gossip P..P+N-1, HTTP P+N..P+2N-1 (default 0: every node picks "
        "free ports, read from its ready line, and peers are added through POST /peers)",
    )
    group.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="a dcounter-node TOML file: top-level settings for every node, and optionally "
        "[[nodes]] entries (one node each, with their own addresses and peers)",
    )
    group.add_argument(
        "--sync-interval",
        type=float,
        metavar="S",
        help=f"seconds between the nodes' digest pulls ({DEFAULT_SYNC_INTERVAL:g}, "
        "or the config file's)",
    )
    group.add_argument("--max-sync-peers", type=int, metavar="N", help="peers per sync round")
    group.add_argument(
        "--node-log-level",
        choices=["debug", "info", "warning", "error"],
        help="the nodes' log level (warning)",
    )
    group.add_argument(
        "--wire",
        choices=list(CLUSTER_WIRES),
        help="the nodes' gossip wire: auto (streams, seed fallback), seed (the seed's framing"
        " only) or mixed (even nodes auto, odd nodes seed); also for --in-process --transport"
        " tcp (default: auto, or what the config file says)",
    )
    group.add_argument(
        "--tls",
        action="store_true",
        help="gossip over mutual TLS and the API over HTTPS with tokens: create a throwaway"
        " CA, a certificate per node and an API token file in the state folder (run: its"
        " temporary work folder; up: STATE_DIR/tls, removed by down), start the nodes with"
        " --tls-cert/--tls-key/--tls-ca/--api-tokens, and drive them over HTTPS trusting that"
        " CA, with the admin token",
    )
    group.add_argument(
        "--startup-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds to wait for each node's ready line (30)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dcounter-cluster",
        description="Launch a static dcounter cluster, drive it and check it converges.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="run a cluster under load and report whether it converges exactly",
        description="Start every node as its own process (python -m dcounter_node), drive "
        "random increments and decrements through the HTTP API, then wait until every node "
        "holds exactly the sum of the acknowledged writes. Exit 0 only if every node does; "
        "1 otherwise; 2 on a usage error. Writes whose outcome is unknown (timeout, lost "
        "connection, 5xx) are retried with the same Idempotency-Key, so each ends counted "
        "once or known failed.",
    )
    _cluster_flags(run)
    load = run.add_argument_group("load")
    load.add_argument(
        "--duration", type=float, default=10.0, metavar="S", help="seconds of writes (10)"
    )
    rate = load.add_mutually_exclusive_group()
    rate.add_argument(
        "--interval",
        type=float,
        default=None,
        metavar="S",
        help="seconds between writes on each node (default 0.1, like the seed)",
    )
    rate.add_argument("--rate", type=float, metavar="OPS", help="writes per second per node")
    load.add_argument("--seed", type=int, help="random seed for the writes (default: random)")
    load.add_argument(
        "--request-timeout",
        type=float,
        default=None,
        metavar="S",
        help="seconds per HTTP request before its outcome counts as unknown (5; 1 with "
        "--hosts netns)",
    )
    faults = run.add_argument_group("faults")
    faults.add_argument(
        "--kill-node",
        type=int,
        nargs="?",
        const=-1,
        default=None,
        metavar="INDEX",
        help=f"at {round(KILL_AT * 100)}%% of the run, kill -9 a node (INDEX, or one picked "
        "with the seed) and restart it at the same addresses after a short downtime",
    )
    faults.add_argument(
        "--partition",
        type=float,
        metavar="S",
        help="split the nodes into two halves for S seconds in the middle of the run, by "
        "removing cross-half peers (DELETE /peers) and adding them back after",
    )
    check = run.add_argument_group("convergence and output")
    check.add_argument(
        "--converge-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds to wait for exact convergence after the writes (30)",
    )
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.add_argument("--quiet", action="store_true", help="no progress output on stderr")
    check.add_argument(
        "--log-dir", type=Path, metavar="DIR", help="keep node logs here (default: discarded)"
    )
    check.add_argument(
        "--durable",
        action="store_true",
        help="give every node a fresh data directory (in a temporary work directory) instead "
        "of --in-memory, so a killed node resumes its replica id and counts on restart",
    )
    add_lab_flags(run)
    inproc = run.add_argument_group("in-process mode")
    inproc.add_argument(
        "--in-process",
        action="store_true",
        help="run every node as a dcounter_node.Node in this process's event loop",
    )
    inproc.add_argument(
        "--transport",
        choices=["memory", "tcp"],
        default="memory",
        help="in-process transport: MemoryNetwork or TCP on loopback (memory)",
    )

    up = commands.add_parser(
        "up",
        help="start a cluster in the background",
        description="Start detached node processes, wait until all are ready, add their "
        "peers, and record pids and addresses in STATE_DIR/cluster.json.",
    )
    _cluster_flags(up)
    for sub in (up,):
        sub.add_argument("--json", action="store_true", help="print the state as JSON")
    status = commands.add_parser(
        "status",
        help="show each background node's value, peers and members",
        description="Exit 0 when every recorded node answers, 1 otherwise.",
    )
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.add_argument(
        "--timeout", type=float, default=2.0, metavar="S", help="per node request (2)"
    )
    down = commands.add_parser("down", help="stop the background cluster and remove its state")
    down.add_argument(
        "--grace",
        type=float,
        default=5.0,
        metavar="S",
        help="seconds between SIGTERM and SIGKILL (5)",
    )
    commands.add_parser(
        "clean",
        help="remove what a crashed fault lab left behind (root)",
        description="Kill any process in, and remove, every network namespace and network "
        "link whose name starts with the fault lab's prefix (dclab). Exit 0.",
    )
    for sub in (up, status, down):
        sub.add_argument(
            "--state-dir",
            type=Path,
            default=None,
            metavar="DIR",
            help=f"where the background cluster is recorded (${STATE_DIR_ENV} or "
            f"./{DEFAULT_STATE_DIR})",
        )
    return parser


def _positive(name: str, value: float | None) -> None:
    if value is not None and not value > 0:
        raise UsageError(f"{name} must be positive")


def _spec(args: argparse.Namespace) -> ClusterSpec:
    _positive("--startup-timeout", args.startup_timeout)
    return build_spec(
        nodes=args.nodes,
        host=args.host,
        base_port=args.base_port,
        config=args.config,
        sync_interval=args.sync_interval,
        max_sync_peers=args.max_sync_peers,
        node_log_level=args.node_log_level,
        wire=args.wire,
    )


def _run_options(args: argparse.Namespace, count: int) -> RunOptions:
    _positive("--duration", args.duration)
    _positive("--interval", args.interval)
    _positive("--rate", args.rate)
    _positive("--converge-timeout", args.converge_timeout)
    _positive("--request-timeout", args.request_timeout)
    _positive("--partition", args.partition)
    interval = 0.1 if args.interval is None else args.interval
    if args.rate is not None:
        interval = 1.0 / args.rate
    if args.partition is not None:
        if count < 2:
            raise UsageError("--partition needs at least 2 nodes")
        if args.partition >= args.duration:
            raise UsageError("--partition must be shorter than --duration")
    if args.kill_node is not None:
        if count < 2:
            raise UsageError("--kill-node needs at least 2 nodes (a peer must hold its writes)")
        if not -1 <= args.kill_node < count:
            raise UsageError(f"--kill-node takes a node index from 0 to {count - 1}")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    return RunOptions(
        duration=args.duration,
        interval=interval,
        seed=seed,
        converge_timeout=args.converge_timeout,
        kill_node=args.kill_node,
        partition=args.partition,
    )


def _install_terminate_handlers(received: list[str]) -> list[signal.Signals]:
    """Turn SIGTERM/SIGHUP into cancelling the main task, so ``finally`` blocks stop nodes."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    installed = []
    for sig in (signal.SIGTERM, signal.SIGHUP):

        def cancel(sig: signal.Signals = sig) -> None:
            received.append(sig.name)
            if task is not None:
                task.cancel()

        try:
            loop.add_signal_handler(sig, cancel)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - not the main thread
            continue
        installed.append(sig)
    return installed


async def _guarded(command: Callable[[], Awaitable[int]]) -> int:
    received: list[str] = []
    installed = _install_terminate_handlers(received)
    try:
        return await command()
    except asyncio.CancelledError:
        if received:
            raise _Terminated(f"terminated by {received[0]}") from None
        raise
    finally:
        loop = asyncio.get_running_loop()
        for sig in installed:
            loop.remove_signal_handler(sig)


# -- run ----------------------------------------------------------------------------------


async def _run(args: argparse.Namespace) -> int:
    if args.hosts == "netns":
        return await lab_command(args)
    if lab_flags_used(args):
        raise UsageError("--nemesis, --nemesis-interval, --history and --plot need --hosts netns")
    if args.request_timeout is None:
        args.request_timeout = 5.0
    backend: ClusterBackend
    if args.in_process:
        if args.config is not None or args.base_port not in (None, 0) or args.durable:
            raise UsageError("--in-process takes no --config, --base-port or --durable")
        if args.tls:
            raise UsageError("--tls needs node processes: drop --in-process")
        if args.wire is not None and args.transport != "tcp":
            raise UsageError("--wire with --in-process needs --transport tcp")
        count = DEFAULT_NODES if args.nodes is None else args.nodes
        if count < 1:
            raise UsageError("--nodes must be at least 1")
        options = _run_options(args, count)
        sync = DEFAULT_SYNC_INTERVAL if args.sync_interval is None else args.sync_interval
        _positive("--sync-interval", sync)
        backend = InProcessBackend(
            count,
            transport=args.transport,
            host=args.host or "127.0.0.1",
            sync_interval=sync,
            max_sync_peers=args.max_sync_peers,
            seed=options.seed,
            wire=args.wire or "auto",
        )
        options = RunOptions(**{**_fields(options), "sync_interval": sync})
        return await _run_with(backend, options, args)
    spec = _spec(args)
    options = _run_options(args, len(spec))
    options = RunOptions(**{**_fields(options), "sync_interval": spec.sync_interval})
    with tempfile.TemporaryDirectory(prefix="dcounter-cluster-") as work:
        access = PLAIN
        if args.tls:
            spec = with_tls(spec, Path(work) / TLS_DIR)
            access = cluster_access(Path(work) / TLS_DIR)
        log_dir = args.log_dir if args.log_dir is not None else Path(work)
        _make_dir(log_dir)
        backend = ProcessBackend(
            spec,
            log_dir=log_dir,
            data_root=Path(work) / "data" if args.durable else None,
            startup_timeout=args.startup_timeout,
            request_timeout=args.request_timeout,
            access=access,
        )
        return await _run_with(backend, options, args)


def _make_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)


def _fields(options: RunOptions) -> dict[str, Any]:
    return {name: getattr(options, name) for name in RunOptions.__dataclass_fields__}


async def _run_with(backend: ClusterBackend, options: RunOptions, args: argparse.Namespace) -> int:
    progress = make_progress(quiet=args.quiet)
    try:
        report = await run_cluster(backend, options, progress)
    finally:
        progress.close()
        await backend.close()
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(report.render_text())
    return 0 if report.converged else 1


# -- up / status / down -------------------------------------------------------------------


async def _up(args: argparse.Namespace) -> int:
    spec = _spec(args)
    state_dir = args.state_dir or _default_state_dir()
    state = await cluster_up(spec, state_dir, startup_timeout=args.startup_timeout, tls=args.tls)
    if args.json:
        print(json.dumps(state.to_json(), indent=2))
        return 0
    width = max(len(n.name) for n in state.nodes)
    count = len(state.nodes)
    # `source` is "flags" or "config file PATH" (the JSON keeps it as it is).
    origin = "command-line flags" if state.source == "flags" else state.source
    print(f"{count} node{'' if count == 1 else 's'} up, configured by {origin}:")
    for n in state.nodes:
        print(f"  {n.name:<{width}}  pid {n.pid:<7} gossip {n.gossip:<21} http {n.http}")
    print(f"state: {state_dir / STATE_FILE}")
    if args.tls:
        print(
            "gossip over mutual TLS, API over HTTPS with tokens: CA, node certificates and"
            f" API tokens in {state_dir / TLS_DIR}"
        )
    print("see them with: dcounter-cluster status; stop them with: dcounter-cluster down")
    return 0


async def _status(args: argparse.Namespace) -> int:
    state_dir = args.state_dir or _default_state_dir()
    found = await cluster_status(state_dir, request_timeout=args.timeout)
    if found is None:
        print(f"no cluster is up (no {STATE_FILE} in {state_dir})", file=sys.stderr)
        return 1
    _, statuses = found
    all_up = all(s.state == "up" for s in statuses)
    if args.json:
        print(
            json.dumps(
                {
                    "state_dir": str(state_dir),
                    "all_up": all_up,
                    "nodes": [
                        {
                            "name": s.name,
                            "pid": s.pid,
                            "gossip": s.gossip,
                            "http": s.http,
                            "state": s.state,
                            "value": s.value,
                            "replica": s.replica,
                            "peers": list(s.peers) if s.peers is not None else None,
                            "error": s.error,
                            "members": _members_json(s.members),
                            "members_error": s.members_error,
                        }
                        for s in statuses
                    ],
                },
                indent=2,
            )
        )
        return 0 if all_up else 1
    width = max(len(s.name) for s in statuses)
    for s in statuses:
        if s.state == "up":
            peers = ", ".join(s.peers or ()) or "none"
            print(f"{s.name:<{width}}  up    value {s.value:<8} gossip {s.gossip}  peers: {peers}")
        elif s.state == "dead":
            print(f"{s.name:<{width}}  DEAD  (pid {s.pid} is gone) gossip {s.gossip}")
        else:
            print(f"{s.name:<{width}}  UNREACHABLE  http {s.http}: {s.error}")
        _print_members(s, indent=" " * (width + 2))
    values = {s.value for s in statuses if s.state == "up"}
    if all_up and len(values) == 1:
        print(f"all {len(statuses)} nodes up, every node at {values.pop()}")
    elif all_up:
        print(f"all {len(statuses)} nodes up; values differ (still converging?)")
    else:
        up_count = sum(s.state == "up" for s in statuses)
        print(f"{up_count} of {len(statuses)} nodes up")
    return 0 if all_up else 1


def _members_json(members: tuple[Member, ...] | None) -> list[dict[str, Any]] | None:
    if members is None:
        return None
    return [
        {
            "address": m.address,
            "replica": m.replica,
            "state": m.state,
            "incarnation": m.incarnation,
            "since": m.since,
        }
        for m in members
    ]


def _print_members(status: NodeStatus, indent: str) -> None:
    """The member list as ``status``'s node sees it, one member a line."""
    if status.members_error is not None:
        print(f"{indent}members: cannot read them: {status.members_error}")
    if not status.members:
        return
    now = time.time()
    width = max(len(m.address) for m in status.members)
    print(f"{indent}members as {status.name} sees them:")
    for m in status.members:
        since = time.strftime("%H:%M:%S", time.localtime(m.since))
        age = max(0.0, now - m.since)
        print(
            f"{indent}  {m.address:<{width}}  {m.state:<7}  incarnation {m.incarnation:<3}"
            f"  since {since} ({age:.0f} s ago)  replica {m.replica}"
        )


async def _down(args: argparse.Namespace) -> int:
    _positive("--grace", args.grace)
    state_dir = args.state_dir or _default_state_dir()
    results = await cluster_down(state_dir, grace=args.grace)
    if results is None:
        print(f"no cluster is up (no {STATE_FILE} in {state_dir}); nothing to stop")
        return 0
    for r in results:
        print(f"{r.name}: pid {r.pid} {r.outcome}")
    print(f"removed {state_dir / STATE_FILE}")
    return 0


_COMMANDS = {"run": _run, "up": _up, "status": _status, "down": _down, "clean": clean_command}


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``dcounter-cluster`` with ``argv``; returns the exit status."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors (status 2)
        return exc.code if isinstance(exc.code, int) else 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    command = _COMMANDS[args.command]
    try:
        result = asyncio.run(_guarded(lambda: command(args)))
    except LabUnavailableError as exc:
        print(f"dcounter-cluster: {exc}", file=sys.stderr)
        return 2
    except UsageError as exc:
        parser.print_usage(sys.stderr)
        print(f"dcounter-cluster: error: {exc}", file=sys.stderr)
        return 2
    except ClusterError as exc:
        print(f"dcounter-cluster: error: {exc}", file=sys.stderr)
        return 1
    except _Terminated as exc:
        print(f"dcounter-cluster: {exc}; every node was stopped", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("dcounter-cluster: interrupted; every node was stopped", file=sys.stderr)
        return 130
    return result


def run() -> None:
    """Console-script entry point."""
    raise SystemExit(main())

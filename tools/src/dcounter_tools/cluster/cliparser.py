"""``dcounter-cluster``'s command line: the parser, and the checks every command shares."""

from __future__ import annotations

import argparse
from pathlib import Path

from dcounter_tools.__about__ import __version__
from dcounter_tools.cluster.keys import MAX_KEYS
from dcounter_tools.cluster.labcli import add_lab_flags
from dcounter_tools.cluster.runner import KILL_AT
from dcounter_tools.cluster.spec import (
    CLUSTER_WIRES,
    DEFAULT_NODES,
    DEFAULT_SYNC_INTERVAL,
    ClusterSpec,
    build_spec,
)
from dcounter_tools.errors import UsageError

__all__ = ["DEFAULT_STATE_DIR", "STATE_DIR_ENV", "build_parser", "positive", "spec_of"]

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


def build_parser() -> argparse.ArgumentParser:
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
    _load_flags(run)
    _fault_flags(run)
    _output_flags(run)
    add_lab_flags(run)
    _in_process_flags(run)

    _background_commands(commands)
    return parser


def _background_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """``up``, ``status``, ``down`` and ``clean``."""
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


def _load_flags(run: argparse.ArgumentParser) -> None:
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
        "--keys",
        type=int,
        default=0,
        metavar="N",
        help="spread the writes over N named counters (key-0 ..., through POST "
        "/counters/{name}/...) instead of the default counter; convergence then needs every "
        f"key's exact value on every node (1 to {MAX_KEYS}; with --kill-node, needs --durable)",
    )
    load.add_argument(
        "--request-timeout",
        type=float,
        default=None,
        metavar="S",
        help="seconds per HTTP request before its outcome counts as unknown (5; 1 with "
        "--hosts netns)",
    )


def _fault_flags(run: argparse.ArgumentParser) -> None:
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


def _output_flags(run: argparse.ArgumentParser) -> None:
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


def _in_process_flags(run: argparse.ArgumentParser) -> None:
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


def positive(name: str, value: float | None) -> None:
    if value is not None and not value > 0:
        raise UsageError(f"{name} must be positive")


def spec_of(args: argparse.Namespace) -> ClusterSpec:
    positive("--startup-timeout", args.startup_timeout)
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

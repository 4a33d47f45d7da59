"""The command-line side of the fault lab: ``run --hosts netns`` flags, and ``clean``."""

from __future__ import annotations

import asyncio
import json
import random
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from dcounter_tools.cluster.certs import TLS_DIR
from dcounter_tools.cluster.lab import LabOptions, run_lab
from dcounter_tools.cluster.labnodes import LabCluster
from dcounter_tools.cluster.nemesis import (
    NEMESIS_KINDS,
    parse_nemesis,
    plan_schedule,
    render_schedule,
)
from dcounter_tools.cluster.netns import NETWORK, PREFIX, NetnsHosts, require_netns, sweep
from dcounter_tools.cluster.plot import plot_history, require_matplotlib
from dcounter_tools.cluster.progress import make_progress
from dcounter_tools.cluster.spec import build_spec
from dcounter_tools.errors import UsageError

if TYPE_CHECKING:
    import argparse

__all__ = ["DEFAULT_LAB_NODES", "add_lab_flags", "clean_command", "lab_command", "lab_flags_used"]

DEFAULT_LAB_NODES = 5
DEFAULT_NEMESIS_INTERVAL = 5.0
#: Request timeout of the lab's clients: short, so writes to a paused node end indeterminate.
DEFAULT_LAB_REQUEST_TIMEOUT = 1.0


def add_lab_flags(run: argparse.ArgumentParser) -> None:
    """The fault-lab flags of ``run``."""
    lab = run.add_argument_group(
        "fault lab (--hosts netns)",
        f"Each node on its own virtual host: a network namespace with its own address in "
        f"{NETWORK} on a private bridge (names start with {PREFIX!r}; all removed at exit, "
        "or by 'dcounter-cluster clean' after a crash). Needs root. Nodes are durable "
        f"(own data directories); default {DEFAULT_LAB_NODES} nodes and a "
        f"{DEFAULT_LAB_REQUEST_TIMEOUT:g} s request timeout. Each write is tried once and "
        "recorded ok / failed / indeterminate; after healing, the history is checked: every "
        "node must hold the acknowledged sum plus some subset of the indeterminate writes. "
        "Exit 0 only if the history is valid.",
    )
    lab.add_argument(
        "--hosts",
        choices=["local", "netns"],
        default="local",
        help="local: every node on --host (default); netns: one network namespace per node",
    )
    lab.add_argument(
        "--nemesis",
        metavar="KINDS",
        help=f"faults to inject, comma-separated subset of {','.join(NEMESIS_KINDS)}: "
        "partition (blackhole routes: halves, majority/minority, isolated node, bridge, "
        "one-way), kill (SIGKILL, restart on the same data), pause (SIGSTOP/SIGCONT), "
        "restart (SIGTERM, start again); the --seed fixes the schedule, printed before the run",
    )
    lab.add_argument(
        "--nemesis-interval",
        type=float,
        metavar="S",
        help=f"seconds between fault starts ({DEFAULT_NEMESIS_INTERVAL:g}); each lasts 40-80 %% "
        "of it",
    )
    lab.add_argument(
        "--history", type=Path, metavar="FILE", help="write the history as JSON lines to FILE"
    )
    lab.add_argument(
        "--plot",
        type=Path,
        metavar="FILE",
        help="draw every node's value over time, fault windows and the acknowledged total "
        "into FILE (PNG; needs dcounter-tools[plot])",
    )


def lab_flags_used(args: argparse.Namespace) -> bool:
    """Whether any flag that only the lab understands was given."""
    return any(
        getattr(args, name) is not None
        for name in ("nemesis", "nemesis_interval", "history", "plot")
    )


def _reject_local_flags(args: argparse.Namespace) -> None:
    given = [
        flag
        for flag, value in (
            ("--in-process", args.in_process),
            ("--config", args.config),
            ("--base-port", args.base_port),
            ("--host", args.host),
            ("--kill-node", args.kill_node is not None),
            ("--partition", args.partition),
            ("--keys", args.keys),
        )
        if value
    ]
    if given:
        raise UsageError(f"--hosts netns takes no {', '.join(given)} (faults come from --nemesis)")


def _positive(name: str, value: float) -> float:
    if not value > 0:
        raise UsageError(f"{name} must be positive")
    return value


def _options(args: argparse.Namespace, count: int) -> LabOptions:
    duration = _positive("--duration", args.duration)
    interval = 0.1 if args.interval is None else _positive("--interval", args.interval)
    if args.rate is not None:
        interval = 1.0 / _positive("--rate", args.rate)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    kinds = parse_nemesis(args.nemesis) if args.nemesis else ()
    every = args.nemesis_interval or DEFAULT_NEMESIS_INTERVAL
    schedule = plan_schedule(kinds, count, duration, _positive("--nemesis-interval", every), seed)
    return LabOptions(
        duration=duration,
        interval=interval,
        seed=seed,
        schedule=tuple(schedule),
        converge_timeout=_positive("--converge-timeout", args.converge_timeout),
    )


async def lab_command(args: argparse.Namespace) -> int:
    """``run --hosts netns``: the whole lab; exit 0 if the history is valid, 1 if not."""
    require_netns()
    _reject_local_flags(args)
    count = DEFAULT_LAB_NODES if args.nodes is None else args.nodes
    if count < 1:
        raise UsageError("--nodes must be at least 1")
    options = _options(args, count)
    if args.plot is not None:
        require_matplotlib()
    timeout = args.request_timeout or DEFAULT_LAB_REQUEST_TIMEOUT
    spec = build_spec(
        nodes=count,
        sync_interval=args.sync_interval,
        max_sync_peers=args.max_sync_peers,
        node_log_level=args.node_log_level,
        wire=args.wire,
    )
    names = tuple(node.name for node in spec.nodes)
    if not args.quiet:
        print(
            f"seed {options.seed}; " + render_schedule(list(options.schedule), names),
            file=sys.stderr,
        )
    progress = make_progress(quiet=args.quiet)
    with tempfile.TemporaryDirectory(prefix="dcounter-lab-") as work:
        log_dir = args.log_dir if args.log_dir is not None else Path(work)
        log_dir.mkdir(parents=True, exist_ok=True)
        hosts = NetnsHosts(names)
        try:
            progress.phase("creating network namespaces")
            await asyncio.to_thread(hosts.create)
            cluster = LabCluster(
                spec,
                hosts,
                data_root=Path(work) / "data",
                log_dir=log_dir,
                startup_timeout=args.startup_timeout,
                request_timeout=timeout,
                tls_dir=Path(work) / TLS_DIR if args.tls else None,
            )
            try:
                report = await run_lab(cluster, hosts, options, progress)
            finally:
                progress.close()
                await cluster.close()
        finally:
            await asyncio.to_thread(hosts.destroy)
    if args.history is not None:
        report.history.write(args.history)
    if args.plot is not None:
        await asyncio.to_thread(plot_history, report.history, args.plot)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(report.render_text())
    return 0 if report.verdict.valid else 1


async def clean_command(args: argparse.Namespace) -> int:
    """``clean``: remove every namespace and link a crashed lab left behind."""
    require_netns()
    removed = await asyncio.to_thread(sweep)
    for item in removed:
        print(f"removed {item}")
    print(f"nothing left with the prefix {PREFIX!r}" if not removed else f"{len(removed)} removed")
    return 0

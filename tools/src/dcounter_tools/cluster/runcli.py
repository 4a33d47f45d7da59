"""``dcounter-cluster run`` (the fault lab, ``--hosts netns``, is labcli.py's)."""

from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dcounter_tools.cluster.backend import ClusterBackend, ProcessBackend
from dcounter_tools.cluster.certs import TLS_DIR, cluster_access, with_tls
from dcounter_tools.cluster.client import PLAIN
from dcounter_tools.cluster.cliparser import positive, spec_of
from dcounter_tools.cluster.inprocess import InProcessBackend
from dcounter_tools.cluster.keys import MAX_KEYS
from dcounter_tools.cluster.labcli import lab_command, lab_flags_used
from dcounter_tools.cluster.progress import make_progress
from dcounter_tools.cluster.runner import RunOptions, run_cluster
from dcounter_tools.cluster.spec import DEFAULT_NODES, DEFAULT_SYNC_INTERVAL
from dcounter_tools.errors import UsageError

if TYPE_CHECKING:
    import argparse

__all__ = ["run_command"]


def _run_options(args: argparse.Namespace, count: int) -> RunOptions:
    positive("--duration", args.duration)
    positive("--interval", args.interval)
    positive("--rate", args.rate)
    positive("--converge-timeout", args.converge_timeout)
    positive("--request-timeout", args.request_timeout)
    positive("--partition", args.partition)
    interval = 0.1 if args.interval is None else args.interval
    if args.rate is not None:
        interval = 1.0 / args.rate
    if args.partition is not None:
        if count < 2:
            raise UsageError("--partition needs at least 2 nodes")
        if args.partition >= args.duration:
            raise UsageError("--partition must be shorter than --duration")
    if not 0 <= args.keys <= MAX_KEYS:
        raise UsageError(f"--keys takes a number of counters from 1 to {MAX_KEYS}")
    if args.keys and args.kill_node is not None and not args.durable:
        # The kill waits until another node holds the victim's default-counter writes only.
        raise UsageError("--keys with --kill-node needs --durable (named writes must survive)")
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
        keys=args.keys,
    )


async def run_command(args: argparse.Namespace) -> int:
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
        positive("--sync-interval", sync)
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
    spec = spec_of(args)
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

"""Benchmark of gossip convergence: delta gossip against the seed-exact baseline, same run.

Run with ``hatch run python benchmarks/bench_node.py`` (``--help`` for options).

For each transport (in-memory network, real TCP on loopback), cluster size and gossip mode
(``deltas``: the default node; ``seed``: ``delta_gossip=False``, the reference's behaviour,
which is the baseline), one process runs the whole cluster in one event loop, full mesh,
``max_sync_peers=3``. Every node first counts once (so states hold one entry per node, as in
a real cluster); then each run makes 10 random increments/decrements on random nodes and
measures the time from the last write until every node reports the exact value (polled
every millisecond). Reported: median and worst run, in milliseconds and in sync intervals.
Then the cluster is left idle and the traffic it still sends is measured over 3 sync
intervals (after 3 intervals to settle): messages and bytes per node per second, and which
share of those messages are pushes (the goal is digests only; seed-exact nodes also push
their full state every full-sync interval, as the reference does).

Goals from the issue, printed as PASS/MISS (never a failure exit): with deltas, median
convergence under one sync interval at 10 nodes; seed-exact, under 3 intervals at 10 nodes
and under 6 at 100.

The whole cluster runs in one event loop on one core, so the default sync interval grows
with the cluster (and is longer over TCP, where every message is a connection): the goals
are in sync intervals, and a loop saturated by a hundred nodes' gossip would measure CPU
contention, not the protocol.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import random
import statistics
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dcounter_node import Node, NodeConfig, PeerManager
from dcounter_node import __version__ as node_version
from dcounter_protocol import MessageType
from dcounter_protocol.memory import MemoryNetwork
from dcounter_protocol.tcp import TCPOptions, TCPTransport

if TYPE_CHECKING:
    from collections.abc import Sequence

    from dcounter_protocol.transport import Transport

TRANSPORTS = ("memory", "tcp")
#: Default sync interval: (floor in seconds, seconds per node). The whole cluster shares one
#: event loop, so the interval grows with the cluster to keep that loop mostly idle.
DEFAULT_SYNC = {"memory": (0.1, 0.005), "tcp": (0.2, 0.01)}
#: Idle traffic is measured over this many sync intervals (after as many to settle).
IDLE_INTERVALS = 3
WRITES_PER_RUN = 10
#: Runs that do not converge within this many sync intervals count as failed.
RUN_TIMEOUT_INTERVALS = 60


@dataclass(frozen=True, slots=True)
class Result:
    """One (transport, size, mode) cell of the table."""

    transport: str
    nodes: int
    deltas: bool
    sync_interval: float
    latencies: tuple[float, ...]  # seconds; inf = did not converge in time
    idle_messages: float  # per node per second
    idle_bytes: float  # per node per second
    idle_push_share: float  # pushes / all messages while idle

    @property
    def mode(self) -> str:
        return "deltas" if self.deltas else "seed"

    @property
    def median(self) -> float:
        return statistics.median(self.latencies)

    @property
    def worst(self) -> float:
        return max(self.latencies)


def _member_address(index: int) -> str:
    return f"10.0.{index // 250}.{index % 250 + 1}:7946"


async def _start_cluster(
    transport: str, size: int, config: NodeConfig, seed: int
) -> tuple[list[Node], MemoryNetwork | None]:
    network = MemoryNetwork(seed=seed) if transport == "memory" else None
    transports: list[Transport] = []
    for i in range(size):
        if network is not None:
            transports.append(network.transport(_member_address(i)))
        else:
            options = TCPOptions(dial_timeout=2.0, read_timeout=2.0, write_timeout=2.0)
            transports.append(TCPTransport("127.0.0.1:0", options=options))
    nodes = [
        Node(t, config, peers=PeerManager(), rng=random.Random(f"{seed}/{i}"))
        for i, t in enumerate(transports)
    ]
    for node in nodes:
        await node.start()
    addresses = [node.address for node in nodes]
    for node in nodes:
        for address in addresses:
            node.peers.add(address)
    return nodes, network


async def _close_cluster(nodes: list[Node]) -> None:
    for node in nodes:  # quiet first, so closing nodes are not dialled by running ones
        for peer in node.peers.peers():
            node.peers.remove(peer)
    await asyncio.gather(*(node.close() for node in nodes))


async def _time_until_exact(nodes: list[Node], expected: int, limit: float) -> float:
    """Seconds until every node's value is ``expected`` (inf after ``limit`` seconds)."""
    start = time.perf_counter()
    deadline = start + limit
    while True:
        if all(node.value == expected for node in nodes):
            return time.perf_counter() - start
        if time.perf_counter() > deadline:
            return float("inf")
        await asyncio.sleep(0.001)


def _sent(nodes: list[Node]) -> tuple[int, int, int]:
    messages = payload = pushes = 0
    for node in nodes:
        snapshot = node.stats.snapshot()
        messages += snapshot.total_messages_sent
        payload += snapshot.total_bytes_sent
        pushes += snapshot.messages_sent[MessageType.PUSH]
    return messages, payload, pushes


async def run_cell(
    transport: str, size: int, deltas: bool, sync_interval: float, runs: int, seed: int
) -> Result:
    """Build one cluster, time ``runs`` write bursts, then measure its idle traffic."""
    config = NodeConfig(sync_interval=sync_interval, delta_gossip=deltas)
    rng = random.Random(seed)
    nodes, _ = await _start_cluster(transport, size, config, seed)
    timeout = RUN_TIMEOUT_INTERVALS * sync_interval
    try:
        expected = 0
        for node in nodes:  # warm-up: one entry per node, as in a cluster that has counted
            node.increment()
            expected += 1
        await _time_until_exact(nodes, expected, timeout)
        latencies: list[float] = []
        for _ in range(runs):
            for _ in range(WRITES_PER_RUN):
                node = rng.choice(nodes)
                amount = rng.randint(1, 5)
                if rng.random() < 0.5:
                    node.increment(amount)
                    expected += amount
                else:
                    node.decrement(amount)
                    expected -= amount
            latencies.append(await _time_until_exact(nodes, expected, timeout))

        # Settle: replies in flight land, and every node gets an ack for its current state
        # (with deltas, that is what stops its periodic full push).
        await asyncio.sleep(IDLE_INTERVALS * sync_interval)
        messages0, bytes0, pushes0 = _sent(nodes)
        start = time.perf_counter()
        await asyncio.sleep(IDLE_INTERVALS * sync_interval)
        elapsed = time.perf_counter() - start
        messages1, bytes1, pushes1 = _sent(nodes)
    finally:
        await _close_cluster(nodes)
    messages = messages1 - messages0
    return Result(
        transport=transport,
        nodes=size,
        deltas=deltas,
        sync_interval=sync_interval,
        latencies=tuple(latencies),
        idle_messages=messages / size / elapsed,
        idle_bytes=(bytes1 - bytes0) / size / elapsed,
        idle_push_share=(pushes1 - pushes0) / messages if messages else 0.0,
    )


def _ms(seconds: float) -> str:
    return "timeout" if seconds == float("inf") else f"{seconds * 1000:.0f}"


def _intervals(seconds: float, interval: float) -> str:
    return "timeout" if seconds == float("inf") else f"{seconds / interval:.2f}"


def print_table(results: Sequence[Result]) -> None:
    """The results table, with the deltas/seed ratio per (transport, size)."""
    header = (
        f"{'transport':<9} {'nodes':>5} {'mode':<6} {'sync ms':>7} "
        f"{'median ms':>9} {'worst ms':>8} {'median iv':>9} {'worst iv':>8} "
        f"{'vs seed':>7} {'idle msg/node/s':>15} {'idle B/node/s':>13} {'idle push':>9}"
    )
    print(header)
    print("-" * len(header))
    seeds = {(r.transport, r.nodes): r for r in results if not r.deltas}
    for r in results:
        base = seeds.get((r.transport, r.nodes))
        ratio = "1.00x" if base is r else "-"
        if base is not None and base is not r and r.median > 0 and base.median != float("inf"):
            ratio = f"{base.median / r.median:.1f}x"
        print(
            f"{r.transport:<9} {r.nodes:>5} {r.mode:<6} {r.sync_interval * 1000:>7.0f} "
            f"{_ms(r.median):>9} {_ms(r.worst):>8} "
            f"{_intervals(r.median, r.sync_interval):>9} "
            f"{_intervals(r.worst, r.sync_interval):>8} {ratio:>7} "
            f"{r.idle_messages:>15.1f} {r.idle_bytes:>13.0f} {r.idle_push_share:>9.1%}"
        )
    print("(iv = sync intervals; 'vs seed' = seed-exact median / this median; idle push =")
    print(" share of idle messages that are pushes: 0% means digests only)")


def print_goals(results: Sequence[Result]) -> None:
    """PASS/MISS for each goal that this run measured."""
    goals = [
        (True, 10, 1.0, "deltas: median < 1 sync interval at 10 nodes"),
        (False, 10, 3.0, "seed-exact: median < 3 sync intervals at 10 nodes"),
        (False, 100, 6.0, "seed-exact: median < 6 sync intervals at 100 nodes"),
    ]
    print()
    for deltas, size, limit, text in goals:
        for r in results:
            if r.deltas == deltas and r.nodes == size:
                value = r.median / r.sync_interval
                verdict = "PASS" if value < limit else "MISS"
                print(f"{verdict}  {text} ({r.transport}: {value:.2f})")
    for r in results:
        if r.deltas and r.idle_push_share > 0:
            print(
                f"MISS  deltas: idle traffic is digests only ({r.transport}, {r.nodes} nodes: "
                f"{r.idle_push_share:.1%} pushes)"
            )
            break
    else:
        if any(r.deltas for r in results):
            print("PASS  deltas: idle traffic is digests only (every cluster measured)")


def _node_counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of ints: {text!r}") from None
    if not counts or any(n < 2 for n in counts):
        raise argparse.ArgumentTypeError("node counts must be integers >= 2")
    return counts


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Time until every node of a cluster reports the exact value, with delta "
        "gossip and seed-exact; idle traffic per node.",
    )
    parser.add_argument(
        "--nodes",
        type=_node_counts,
        default=[10, 50, 100],
        help="comma-separated cluster sizes (default: 10,50,100)",
    )
    parser.add_argument("--runs", type=int, default=5, help="timed write bursts per cell (5)")
    parser.add_argument(
        "--transport",
        choices=(*TRANSPORTS, "both"),
        default="both",
        help="memory, tcp or both (default: both)",
    )
    parser.add_argument(
        "--sync-interval",
        type=float,
        default=None,
        help="sync interval in seconds (default: 5 ms per node, at least 0.1 s, in memory; "
        "10 ms per node, at least 0.2 s, over TCP)",
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed (1)")
    return parser


async def _main(args: argparse.Namespace) -> list[Result]:
    transports = TRANSPORTS if args.transport == "both" else (args.transport,)
    results: list[Result] = []
    for transport in transports:
        floor, per_node = DEFAULT_SYNC[transport]
        for size in args.nodes:
            interval = args.sync_interval or max(floor, round(size * per_node, 3))
            for deltas in (False, True):
                result = await run_cell(transport, size, deltas, interval, args.runs, args.seed)
                results.append(result)
                print(
                    f"  {transport} {size} nodes {result.mode}: median {_ms(result.median)} ms",
                    file=sys.stderr,
                    flush=True,
                )
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the table and goal checks; 0 unless arguments are bad."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.sync_interval is not None and args.sync_interval <= 0:
        parser.error("--sync-interval must be positive")
    print(
        f"dcounter-node {node_version}, Python {platform.python_version()}, "
        f"{platform.machine()}, runs={args.runs}, writes per run={WRITES_PER_RUN}"
    )
    started = time.perf_counter()
    results = asyncio.run(_main(args))
    print()
    print_table(results)
    print_goals(results)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

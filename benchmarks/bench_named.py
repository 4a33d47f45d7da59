"""Benchmark of named-counter gossip: many keys, bucketed anti-entropy (issue 20).

Run with ``hatch run python benchmarks/bench_named.py`` (``--help`` for options).

One process runs 5 nodes (``--nodes``) on the in-memory network, full mesh, default gossip
settings except the sync interval (``--sync``, 1 s). Node 0 counts once under each of
100,000 names (``--keys``); the cluster converges by gossip. Then, measured:

1. **Idle rounds.** After two settling rounds, the named-counter bytes every node sends over
   ``--rounds`` sync rounds, per node per round, and by message kind (the goal: root digests
   only, under ~10 KB per node per round). Baseline in the same run: one full push of the
   whole state (what "compare one digest, then push everything" sends on any difference).
2. **One write.** One increment on node 0, timed until all nodes read it (goal: within one
   sync interval).
3. **Missed updates.** One node is partitioned away while the others update 1,000 names
   (``--missed``); after healing, the time until it holds them (goal: within two sync
   rounds) and the named bytes the whole cluster sent meanwhile, against the pushes of just
   those names (goal: about those) and against the full state (the rest).

Goals are printed as PASS/MISS, never a failure exit. ``--quick`` uses 20,000 keys, 200
missed updates and 3 idle rounds. ``benchmarks/bench_named_nodes.py`` measures the same
targets with ``dcounter-node`` processes.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import platform
import random
import sys
import time
from typing import TYPE_CHECKING

from dcounter_crdt import CounterMapState
from dcounter_node import Node, NodeConfig, PeerManager
from dcounter_protocol import MemoryNetwork, NamedKind, NamedPush, split_named

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

#: Polling step while waiting for a condition (the measured times are far larger).
_POLL = 0.005


def _named_bytes(nodes: Sequence[Node]) -> dict[NamedKind, int]:
    totals = dict.fromkeys(NamedKind, 0)
    for node in nodes:
        sent = node.stats.snapshot().bytes_sent
        for kind in NamedKind:
            totals[kind] += sent[kind]
    return totals


def _quiet(nodes: Sequence[Node]) -> bool:
    """Whether every message sent so far has been handled (no backlog in any queue)."""
    if any(node.sends_in_flight for node in nodes):
        return False
    snapshots = [node.stats.snapshot() for node in nodes]
    sent = sum(s.total_messages_sent for s in snapshots)
    return sum(s.total_messages_received + s.decode_errors for s in snapshots) >= sent


async def _until(condition: Callable[[], bool], within: float, what: str) -> float:
    """Seconds until ``condition`` held; raises TimeoutError after ``within``."""
    start = time.perf_counter()
    while not condition():
        if time.perf_counter() - start > within:
            raise TimeoutError(f"timed out after {within:g} s waiting for {what}")
        await asyncio.sleep(_POLL)
    return time.perf_counter() - start


def _same(nodes: Sequence[Node]) -> bool:
    first = nodes[0].counters.snapshot()
    return all(node.counters.snapshot() == first for node in nodes[1:])


def _kb(size: float) -> str:
    return f"{size / 1024:,.1f} KB"


def _goal(ok: bool) -> str:
    return "PASS" if ok else "MISS"


async def run(args: argparse.Namespace) -> None:
    interval = args.sync
    network = MemoryNetwork(seed=1)
    config = NodeConfig(sync_interval=interval, max_sync_peers=3)
    addresses = [f"10.0.0.{i + 1}:7946" for i in range(args.nodes)]
    nodes = [
        Node(
            network.transport(address),
            config,
            peers=PeerManager(address, addresses),
            rng=random.Random(index),
        )
        for index, address in enumerate(addresses)
    ]
    for node in nodes:
        await node.start()
    try:
        await _measure(nodes, network, args)
    finally:
        for node in nodes:
            await node.close()


async def _measure(nodes: list[Node], network: MemoryNetwork, args: argparse.Namespace) -> None:
    interval, keys = args.sync, args.keys
    names = [f"key-{i:06d}" for i in range(keys)]
    start = time.perf_counter()
    for name in names:
        nodes[0].counters.increment(name)
    await _until(lambda: all(len(n.counters) == keys for n in nodes), 600, "the initial keys")
    await _until(lambda: _same(nodes), 600, "the initial agreement")  # (slow: once)
    print(f"setup: {keys:,} keys on {len(nodes)} nodes in {time.perf_counter() - start:.1f} s")
    full = sum(map(len, split_named(NamedPush(nodes[0].counters.snapshot()))))
    print(f"baseline: one full push of the state = {_kb(full)}")

    # 1. Idle rounds (timed: the benchmark's own polling would load the loop).
    await _until(lambda: _quiet(nodes), 600, "every message handled")
    await asyncio.sleep(2 * interval)
    before = _named_bytes(nodes)
    started = time.perf_counter()
    await asyncio.sleep(args.rounds * interval)
    rounds = (time.perf_counter() - started) / interval
    after = _named_bytes(nodes)
    spent = {kind: after[kind] - before[kind] for kind in NamedKind}
    per_round = sum(spent.values()) / len(nodes) / rounds
    others = sum(v for k, v in spent.items() if k is not NamedKind.NAMED_PULL)
    print(f"\n1. idle, {args.rounds} sync rounds ({interval:g} s):")
    print(f"   named bytes per node per round: {per_round:,.0f} B")
    print("   by kind: " + ", ".join(f"{k.name.lower()} {v:,} B" for k, v in spent.items()))
    print(f"   ratio to one full push: {per_round / full:.2e}")
    idle_ok = per_round < 10240 and not others
    print(f"   goal < 10 KB per node per round, digests only: {_goal(idle_ok)}")

    # 2. One write.
    target = nodes[0].counters.value(names[7]) + 1
    nodes[0].counters.increment(names[7])
    took = await _until(
        lambda: all(n.counters.value(names[7]) == target for n in nodes), 10 * interval, "one write"
    )
    print("\n2. one write on node 0:")
    print(
        f"   every node reads it after {took * 1000:.1f} ms = {took / interval:.3f} sync intervals"
    )
    print(f"   goal within one sync interval: {_goal(took < interval)}")

    # 3. Missed updates.
    lagging, rest = nodes[-1], nodes[:-1]
    network.partition([lagging.address], [n.address for n in rest])
    rng = random.Random(3)
    changed = rng.sample(names, args.missed)
    expected = {name: nodes[0].counters.value(name) + 2 for name in changed}
    for name in changed:
        rng.choice(rest).counters.increment(name, 2)
    await _until(
        lambda: all(n.counters.value(k) == v for n in rest for k, v in expected.items()),
        60 * interval,
        "the connected nodes",
    )
    await asyncio.sleep(2 * interval)
    only_those = sum(
        map(
            len,
            split_named(
                NamedPush(CounterMapState({n: rest[0].counters.state(n) for n in changed}), True)
            ),
        )
    )
    before = _named_bytes(nodes)
    network.heal()
    took = await _until(
        lambda: all(lagging.counters.value(k) == v for k, v in expected.items()),
        60 * interval,
        "the lagging node",
    )
    now = _named_bytes(nodes)
    by_kind = {kind: now[kind] - before[kind] for kind in NamedKind}
    sent = sum(by_kind.values())
    assert _same(nodes), "the lagging node holds the changed values but not the same state"
    print(f"\n3. a node missed {args.missed:,} key updates; after healing:")
    print(f"   it holds them after {took:.3f} s = {took / interval:.2f} sync intervals")
    print(f"   named bytes sent by all nodes meanwhile: {_kb(sent)}")
    print("   by kind: " + ", ".join(f"{k.name.lower()} {_kb(v)}" for k, v in by_kind.items()))
    ratio = sent / only_those
    print(f"   those {args.missed:,} names pushed in full: {_kb(only_those)} (ratio {ratio:.1f}x)")
    print(f"   the whole state: {_kb(full)} (ratio {sent / full:.3f})")
    print(f"   goal within two sync rounds: {_goal(took <= 2 * interval)}")
    print(f"   goal about those keys, not the rest: {_goal(sent < full / 4)}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Named-counter gossip: idle traffic, one write, catching up (in-process)."
    )
    parser.add_argument("--nodes", type=int, default=5, help="cluster size (default 5)")
    parser.add_argument("--keys", type=int, default=None, help="names (default 100,000)")
    parser.add_argument("--missed", type=int, default=None, help="missed updates (default 1,000)")
    parser.add_argument("--sync", type=float, default=1.0, help="sync interval, s (default 1)")
    parser.add_argument("--rounds", type=int, default=None, help="idle rounds (default 5)")
    parser.add_argument("--quick", action="store_true", help="20,000 keys, 200 missed, 3 rounds")
    args = parser.parse_args(argv)
    if args.keys is None:
        args.keys = 20_000 if args.quick else 100_000
    if args.missed is None:
        args.missed = 200 if args.quick else 1_000
    if args.rounds is None:
        args.rounds = 3 if args.quick else 5
    logging.basicConfig(level=logging.ERROR)
    print(f"python {platform.python_version()} on {platform.machine()}, {args.nodes} nodes")
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())

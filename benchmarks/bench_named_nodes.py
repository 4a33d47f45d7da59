"""Benchmark of named-counter gossip between ``dcounter-node`` processes (issue 20).

Run with ``hatch run python benchmarks/bench_named_nodes.py`` (``--help`` for options);
``benchmarks/bench_named.py`` measures the same targets with in-process nodes.

5 ``dcounter-node`` processes (``--nodes``) on loopback, full mesh (``POST /peers``), each
with ``--resp`` and ``--sync-interval 0.5`` (``--sync``); the last one has a data directory
(``--durability batched``) so it can be stopped and started again, the others run
``--in-memory``. Node 0 counts once under each of 100,000 names (``--keys``) through a
redis-py pipeline over RESP; the benchmark waits until ``DBSIZE`` on every node says it holds
them all, then measures, from each node's ``/metrics`` (``dcounter_gossip_bytes`` by message
type) and over RESP:

1. **Idle rounds.** Once every message sent has been received and two more rounds passed, the
   gossip bytes every node sends over ``--rounds`` sync rounds, per node per round, by message
   type. Goal: digests only (no push, bucket, key or want message), under ~10 KB per node per
   round. Baseline in the same run: one full push of the whole state.
2. **One write.** ``INCR`` on node 0, timed until ``GET`` on every other node answers it.
   Goal: within one sync interval.
3. **A stopped node.** The last node is stopped cleanly (SIGTERM); the others update 1,000
   names (``--missed``, ``INCRBY name 2`` spread over them) and agree on them; the node is
   started again with its data directory and gossip address. Measured: the time from its
   ready line until ``MGET`` on it answers every updated value (goal: within two sync
   rounds), and the gossip bytes all nodes sent meanwhile against pushes of just those names
   (goal: about those keys, far below the whole state).

Goals are printed as PASS/MISS, never a failure exit; a value that is not exact fails the
run. ``--quick`` uses 20,000 keys, 200 missed updates and 3 idle rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import platform
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import redis.asyncio
from prometheus_client.parser import text_string_to_metric_families

from dcounter_crdt import CounterMapState, CounterState
from dcounter_node.testing import NodeProcess, NodeProcessError, free_port, wait_until
from dcounter_protocol import NamedPush, split_named

if TYPE_CHECKING:
    from collections.abc import Sequence

#: Message types of the named counters' digests and of the seed's (what idle rounds may send).
DIGESTS = frozenset({"named_pull", "digest_pull", "digest_ack"})
#: Upper bound for the waits that are not measured (loading, agreeing, starting).
SLOW = 600.0
PIPELINE = 10_000


class Cluster:
    """The node processes, their RESP clients and an HTTP session for /metrics."""

    def __init__(self, directory: Path, session: aiohttp.ClientSession, sync: float) -> None:
        self.directory = directory
        self.session = session
        self.sync = sync
        self.nodes: list[NodeProcess] = []
        self.clients: list[redis.asyncio.Redis] = []
        #: The restarted node's gossip address: its store belongs to it, so it must not change.
        self.restarted = f"127.0.0.1:{free_port()}"

    def _flags(self, index: int, count: int) -> list[str]:
        flags = ["--http", "127.0.0.1:0", "--resp", "127.0.0.1:0", "--log-level", "warning"]
        flags += ["--sync-interval", f"{self.sync:g}"]
        if index == count - 1:  # the one that is stopped and started again, at its address
            data = self.directory / f"node-{index}"
            flags += ["--data-dir", str(data), "--durability", "batched"]
            return [*flags, "--listen", self.restarted]
        return [*flags, "--in-memory", "--listen", "127.0.0.1:0"]

    async def start(self, count: int) -> None:
        spawned = [
            await NodeProcess.spawn(*self._flags(i, count), log=self._log(i)) for i in range(count)
        ]
        self.nodes = spawned
        await asyncio.gather(*(node.wait_ready() for node in spawned))
        self.clients = [self._client(node) for node in spawned]
        for node in spawned:
            for other in spawned:
                if other is not node:
                    await self._add_peer(node, other.gossip)

    def _log(self, index: int) -> Path:
        return self.directory / f"node-{index}.log"

    @staticmethod
    def _client(node: NodeProcess) -> redis.asyncio.Redis:
        host, port = node.resp.rsplit(":", 1)
        return redis.asyncio.Redis(host=host, port=int(port), socket_timeout=60)

    async def _add_peer(self, node: NodeProcess, address: str) -> None:
        async with self.session.post(node.url + "/peers", json={"addr": address}) as response:
            if response.status not in (200, 201):
                raise RuntimeError(f"POST /peers on {node.http}: {await response.text()}")

    async def stop(self, index: int) -> None:
        await self.clients[index].aclose()
        status = await self.nodes[index].stop()
        if status != 0:
            raise RuntimeError(f"node {index} exited with status {status}")

    async def restart(self, index: int) -> float:
        """Start node ``index`` again at its gossip address; the seconds until it was ready."""
        old = self.nodes[index]
        others = [n.gossip for n in self.nodes if n is not old]
        flags = self._flags(index, len(self.nodes))
        started = time.perf_counter()
        node = await NodeProcess.start(
            *flags, "--peers", ",".join(others), log=self._log(index), within=SLOW
        )
        took = time.perf_counter() - started
        self.nodes[index], self.clients[index] = node, self._client(node)
        return took

    async def close(self) -> None:
        for client in self.clients:
            await client.aclose()
        for node in self.nodes:
            if node.returncode is None:
                # stop() kills a node that outlasts its deadline before raising: go on.
                with contextlib.suppress(NodeProcessError):
                    await node.stop()

    async def sent_bytes(self, nodes: Sequence[NodeProcess] | None = None) -> Counter[str]:
        """Gossip bytes sent so far by ``nodes`` (default all), by message type."""
        totals: Counter[str] = Counter()
        for node in self.nodes if nodes is None else nodes:
            for (kind, direction), value in (await self._gossip(node, "bytes")).items():
                if direction == "sent":
                    totals[kind] += value
        return totals

    async def backlog(self) -> int:
        """Gossip messages sent but not (yet) received, over the whole cluster."""
        total = 0
        for node in self.nodes:
            for (_, direction), value in (await self._gossip(node, "messages")).items():
                total += value if direction == "sent" else -value
        return total

    async def _gossip(self, node: NodeProcess, what: str) -> dict[tuple[str, str], int]:
        async with self.session.get(node.url + "/metrics") as response:
            text = await response.text()
        samples: dict[tuple[str, str], int] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == f"dcounter_gossip_{what}_total":
                    key = (sample.labels["type"], sample.labels["direction"])
                    samples[key] = int(sample.value)
        return samples


def _kb(size: float) -> str:
    return f"{size / 1024:,.1f} KB"


def _goal(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def _by_type(sent: Counter[str]) -> str:
    return ", ".join(f"{kind} {_kb(size)}" for kind, size in sorted(sent.items()) if size)


def _push_size(state: CounterMapState) -> int:
    return sum(map(len, split_named(NamedPush(state, True))))


async def _load(client: redis.asyncio.Redis, names: Sequence[str], by: int = 1) -> None:
    for start in range(0, len(names), PIPELINE):
        pipe = client.pipeline(transaction=False)
        for name in names[start : start + PIPELINE]:
            pipe.incrby(name, by)
        await pipe.execute()


async def _all_hold(client: redis.asyncio.Redis, expected: dict[str, int]) -> bool:
    names = list(expected)
    values = await client.mget(names)
    return all(v is not None and int(v) == expected[n] for n, v in zip(names, values, strict=True))


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-named-nodes-") as directory:
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            cluster = Cluster(Path(directory), session, args.sync)
            try:
                await cluster.start(args.nodes)
                await _measure(cluster, args)
            finally:
                await cluster.close()


async def _measure(cluster: Cluster, args: argparse.Namespace) -> None:
    interval, keys, clients = args.sync, args.keys, cluster.clients
    names = [f"key-{i:06d}" for i in range(keys)]
    start = time.perf_counter()
    await _load(clients[0], names)
    loaded = time.perf_counter() - start

    async def everyone_holds_all() -> bool:
        return all([await c.dbsize() == keys for c in cluster.clients])

    await wait_until(everyone_holds_all, within=SLOW, what="every node's DBSIZE", interval=0.05)
    spread = time.perf_counter() - start
    print(f"setup: {keys:,} keys into node 0 over RESP in {loaded:.1f} s;")
    print(f"       every node's DBSIZE = {keys:,} after {spread:.1f} s")
    first = cluster.nodes[0].replica
    loaded_state = CounterState({first: 1})
    full = _push_size(CounterMapState(dict.fromkeys(names, loaded_state)))
    print(f"baseline: one full push of the state = {_kb(full)}")

    # 1. Idle rounds.
    async def no_backlog() -> bool:
        return await cluster.backlog() <= 0

    await wait_until(no_backlog, within=SLOW, what="every message received", interval=0.1)
    await asyncio.sleep(2 * interval)
    before = await cluster.sent_bytes()
    started = time.perf_counter()
    await asyncio.sleep(args.rounds * interval)
    after = await cluster.sent_bytes()
    rounds = (time.perf_counter() - started) / interval
    spent = after - before
    per_round = spent.total() / len(cluster.nodes) / rounds
    named = sum(v for k, v in spent.items() if k.startswith("named_"))
    others = sorted(kind for kind, size in spent.items() if size and kind not in DIGESTS)
    print(f"\n1. idle, {args.rounds} sync rounds ({interval:g} s), from /metrics:")
    print(f"   gossip bytes per node per round: {per_round:,.0f} B")
    print(f"   of which named: {named / len(cluster.nodes) / rounds:,.0f} B")
    print(f"   by type: {_by_type(spent) or 'nothing'}")
    print(f"   ratio to one full push: {per_round / full:.2e}")
    also = f" (also sent: {', '.join(others)})" if others else ""
    idle_ok = per_round < 10240 and not others
    print(f"   goal < 10 KB per node per round, digests only: {_goal(idle_ok)}{also}")

    # 2. One write.
    name = names[7]
    target = await clients[0].incr(name)

    async def every_node_reads_it() -> bool:
        return all([int(await c.get(name) or 0) == target for c in clients[1:]])

    started = time.perf_counter()
    await wait_until(every_node_reads_it, within=60 * interval, what="one write", interval=0.002)
    took = time.perf_counter() - started
    print("\n2. one write (INCR) on node 0:")
    print(f"   GET on every node answers it after {took * 1000:.1f} ms")
    print(f"   = {took / interval:.3f} sync intervals")
    print(f"   goal within one sync interval: {_goal(took < interval)}")

    await _stopped_node(cluster, args, names, full)


async def _stopped_node(
    cluster: Cluster, args: argparse.Namespace, names: Sequence[str], full: int
) -> None:
    interval, clients = args.sync, cluster.clients
    last = len(cluster.nodes) - 1
    await cluster.stop(last)
    rest = clients[:last]
    changed = random.Random(3).sample(names, args.missed)
    expected = {name: int(await clients[0].get(name) or 0) + 2 for name in changed}
    writers = [changed[i :: len(rest)] for i in range(len(rest))]
    await asyncio.gather(*(_load(c, part, 2) for c, part in zip(rest, writers, strict=True)))

    async def the_others_hold_them() -> bool:
        return all([await _all_hold(c, expected) for c in rest])

    await wait_until(the_others_hold_them, within=SLOW, what="the running nodes", interval=0.05)
    # What those names are: the load's count from node 0, 2 more from their writer.
    states = {}
    for writer, part in zip(cluster.nodes[:last], writers, strict=True):
        counts = Counter({cluster.nodes[0].replica: 1}) + Counter({writer.replica: 2})
        for name in part:
            states[name] = CounterState(dict(counts))
    only_those = _push_size(CounterMapState(states))
    before = await cluster.sent_bytes(cluster.nodes[:last])
    ready = await cluster.restart(last)
    again = cluster.clients[last]
    started = time.perf_counter()
    await wait_until(
        lambda: _all_hold(again, expected),
        within=60 * interval,
        what="the restarted node",
        interval=0.01,
    )
    took = time.perf_counter() - started
    rest_sent = await cluster.sent_bytes(cluster.nodes[:last]) - before
    sent = rest_sent + await cluster.sent_bytes(cluster.nodes[last:])
    if await again.dbsize() != len(names):
        raise RuntimeError("the restarted node does not hold every name")
    print(f"\n3. node {last} stopped (SIGTERM) while the others updated {args.missed:,} names:")
    print(f"   started again with its data directory, ready after {ready:.1f} s")
    print(f"   it holds every update {took:.3f} s after its ready line")
    print(f"   = {took / interval:.2f} sync intervals")
    print(f"   gossip bytes sent by all nodes meanwhile: {_kb(sent.total())}")
    print(f"   by type: {_by_type(sent)}")
    ratio = sent.total() / only_those
    print(f"   those {args.missed:,} names pushed in full: {_kb(only_those)} (ratio {ratio:.1f}x)")
    print(f"   the whole state: {_kb(full)} (ratio {sent.total() / full:.3f})")
    print(f"   goal within two sync rounds: {_goal(took <= 2 * interval)}")
    print(f"   goal about those keys, not the rest: {_goal(sent.total() < full / 4)}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Named-counter gossip between dcounter-node processes: idle traffic, one"
        " write, a stopped node catching up (goals printed as PASS/MISS)."
    )
    parser.add_argument("--nodes", type=int, default=5, help="node processes (default 5)")
    parser.add_argument("--keys", type=int, default=None, help="names (default 100,000)")
    parser.add_argument("--missed", type=int, default=None, help="missed updates (default 1,000)")
    parser.add_argument("--sync", type=float, default=0.5, help="sync interval, s (default 0.5)")
    parser.add_argument("--rounds", type=int, default=None, help="idle rounds (default 5)")
    parser.add_argument("--quick", action="store_true", help="20,000 keys, 200 missed, 3 rounds")
    args = parser.parse_args(argv)
    if args.nodes < 2:
        parser.error("--nodes must be at least 2")
    if args.keys is None:
        args.keys = 20_000 if args.quick else 100_000
    if args.missed is None:
        args.missed = 200 if args.quick else 1_000
    if args.rounds is None:
        args.rounds = 3 if args.quick else 5
    if not 0 < args.missed <= args.keys:
        parser.error("--missed must be between 1 and --keys")
    print(f"python {platform.python_version()} on {platform.machine()}, {args.nodes} processes")
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())

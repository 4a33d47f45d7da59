"""``dcounter-cluster run``: start a cluster, write to it, break it on request, check it.

The run logic is the same for every :class:`~dcounter_tools.cluster.backend.ClusterBackend`:

1. start the nodes (and wire their peers);
2. drive writes for ``duration`` seconds (:class:`~dcounter_tools.cluster.driver.LoadDriver`)
   while the optional faults play out on schedule:

   * ``--kill-node``: at 40 % of the run one node is quiesced (no new writes, none in
     flight, unknown outcomes settled), its acknowledged writes are awaited on at least
     one other node, then it is crashed (SIGKILL) and, after a short downtime, restarted at
     the same addresses with its previous peer list. A node keeps its counts only in memory
     (no durable storage in this mode), so without that wait the writes it acknowledged
     just before dying could be lost with it and exact convergence would be luck; with it,
     those writes survive in its peers under its old replica id, and the new incarnation
     counts under a new one.
   * ``--partition S``: for S seconds centred in the run the nodes are split into two
     halves by removing every cross-half peer (``DELETE /peers``) on every node; writes go
     on in both halves, then the removed peers are added back (``POST /peers``).

3. settle writes whose outcome is still unknown, then poll every node's value until all of
   them hold exactly the expected value (the sum of acknowledged writes) or the timeout.
   With ``--keys N`` the writes are spread over N named counters and every node must hold
   each one's exact sum (:mod:`~dcounter_tools.cluster.keys`).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dcounter_tools.cluster.client import CounterView
from dcounter_tools.cluster.driver import LoadDriver
from dcounter_tools.cluster.keys import key_mismatches, key_names
from dcounter_tools.cluster.report import KillReport, NodeResult, PartitionReport, RunReport

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from dcounter_tools.cluster.backend import ClusterBackend, NodeInfo
    from dcounter_tools.cluster.progress import ProgressSink

__all__ = ["KILL_AT", "RunOptions", "run_cluster"]

#: Fraction of the write phase after which --kill-node strikes.
KILL_AT = 0.4
#: How long a killed node stays down, at most (10 % of the run when that is shorter).
_MAX_DOWNTIME = 1.0
#: How long to wait for a victim's writes to reach another node before killing it anyway.
_REPLICATION_TIMEOUT = 10.0
_POLL = 0.02


@dataclass(frozen=True, slots=True)
class RunOptions:
    """How to run: load, faults and convergence settings."""

    duration: float = 10.0
    interval: float = 0.1
    seed: int = 0
    converge_timeout: float = 30.0
    #: Index of the node to kill; -1 picks one with the seed; None kills nothing.
    kill_node: int | None = None
    #: Seconds of partition; None for none.
    partition: float | None = None
    sync_interval: float | None = None
    max_attempts: int = 4
    #: Named counters to spread the writes over (0: the default counter only).
    keys: int = 0


async def _poll_until(
    predicate: Callable[[], Awaitable[bool]], within: float, interval: float = _POLL
) -> bool:
    """Await ``predicate`` until it is true (True) or ``within`` seconds pass (False)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        if await predicate():
            return True
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(interval)


async def _read_all(backend: ClusterBackend) -> list[CounterView | BaseException]:
    count = len(backend.nodes())
    results = await asyncio.gather(
        *(backend.counter(i) for i in range(count)), return_exceptions=True
    )
    return list(results)


async def _read_values(backend: ClusterBackend) -> list[dict[str, int] | None]:
    """Every node's counters by name (None for a node that could not be read)."""
    count = len(backend.nodes())
    results = await asyncio.gather(
        *(backend.values(i) for i in range(count)), return_exceptions=True
    )
    return [r if isinstance(r, dict) else None for r in results]


class _Run:
    def __init__(
        self, backend: ClusterBackend, options: RunOptions, progress: ProgressSink
    ) -> None:
        self.backend = backend
        self.options = options
        self.progress = progress
        self.loop = asyncio.get_running_loop()
        self.driver = LoadDriver(
            backend,
            interval=options.interval,
            seed=options.seed,
            run_id=secrets.token_hex(4),
            max_attempts=options.max_attempts,
            keys=key_names(options.keys),
        )
        # Peer-list changes of the faults never interleave.
        self.fault_lock = asyncio.Lock()
        self.write_start = 0.0
        self.kill: KillReport | None = None
        self.partition: PartitionReport | None = None

    def at(self) -> float:
        return self.loop.time() - self.write_start

    async def sleep_until(self, offset: float) -> None:
        await asyncio.sleep(max(0.0, offset - self.at()))

    async def set_peers(self, index: int, wanted: Sequence[str]) -> None:
        current = set(await self.backend.peers(index))
        target = set(wanted)
        for address in sorted(current - target):
            await self.backend.remove_peer(index, address)
        for address in sorted(target - current):
            await self.backend.add_peer(index, address)

    # -- --kill-node ----------------------------------------------------------------------

    async def replicated(self, victim: int) -> bool:
        view = await self.backend.counter(victim)
        inc = view.increments.get(view.replica, 0)
        dec = view.decrements.get(view.replica, 0)
        others = [i for i in range(len(self.backend.nodes())) if i != victim]

        async def held() -> bool:
            for result in await asyncio.gather(
                *(self.backend.counter(i) for i in others), return_exceptions=True
            ):
                if isinstance(result, CounterView) and (
                    result.increments.get(view.replica, 0) >= inc
                    and result.decrements.get(view.replica, 0) >= dec
                ):
                    return True
            return False

        return await _poll_until(held, _REPLICATION_TIMEOUT)

    async def kill_and_restart(self, victim: int) -> None:
        options = self.options
        await self.sleep_until(options.duration * KILL_AT)
        async with self.fault_lock:
            before = self.backend.nodes()[victim]
            await self.driver.quiesce(victim)
            await self.driver.reconcile(node=victim)
            safe = await self.replicated(victim)
            peers = await self.backend.peers(victim)
            killed_at = self.at()
            await self.backend.kill(victim)
            self.progress.event(
                f"killed {before.name} (SIGKILL, pid {before.pid}) at {killed_at:.2f} s"
                + ("" if safe else "; WARNING: its last writes had not reached another node")
            )
            await asyncio.sleep(min(_MAX_DOWNTIME, options.duration * 0.1))
            await self.backend.restart(victim, peers)
            await self.set_peers(victim, peers)
            after = self.backend.nodes()[victim]
            restarted_at = self.at()
            self.driver.resume(victim)
        self.progress.event(
            f"restarted {after.name} at {restarted_at:.2f} s: pid {after.pid}, "
            f"new replica {after.replica}"
        )
        self.kill = KillReport(
            before.name,
            round(killed_at, 3),
            round(restarted_at, 3),
            before.replica,
            after.replica,
            before.pid,
            after.pid,
            safe,
        )

    # -- --partition ----------------------------------------------------------------------

    async def partition_and_heal(self, seconds: float) -> None:
        options = self.options
        nodes = self.backend.nodes()
        count = len(nodes)
        split = math.ceil(count / 2)
        half_of = {i: (0 if i < split else 1) for i in range(count)}
        await self.sleep_until(max(0.0, (options.duration - seconds) / 2))
        cut: list[tuple[int, str]] = []
        async with self.fault_lock:
            started_at = self.at()
            nodes = self.backend.nodes()
            side = {node.gossip: half_of[i] for i, node in enumerate(nodes)}
            lists = await asyncio.gather(*(self.backend.peers(i) for i in range(count)))
            for i, peers in enumerate(lists):
                for address in peers:
                    if side.get(address, half_of[i]) != half_of[i]:
                        cut.append((i, address))
            removed = await asyncio.gather(*(self.backend.remove_peer(i, a) for i, a in cut))
            cut = [link for link, gone in zip(cut, removed, strict=True) if gone]
        halves = (
            tuple(n.name for i, n in enumerate(nodes) if half_of[i] == 0),
            tuple(n.name for i, n in enumerate(nodes) if half_of[i] == 1),
        )
        self.progress.event(
            f"partitioned at {started_at:.2f} s: [{', '.join(halves[0])}] | "
            f"[{', '.join(halves[1])}] ({len(cut)} peer links removed)"
        )
        await self.sleep_until(started_at + seconds)
        async with self.fault_lock:
            views = await _read_all(self.backend)
            values = {
                n.name: (v.value if isinstance(v, CounterView) else None)
                for n, v in zip(self.backend.nodes(), views, strict=True)
            }
            await asyncio.gather(*(self.backend.add_peer(i, a) for i, a in cut))
            healed_at = self.at()
        self.progress.event(f"healed the partition at {healed_at:.2f} s")
        self.partition = PartitionReport(
            round(started_at, 3), round(healed_at, 3), halves, len(cut), values
        )

    # -- the run --------------------------------------------------------------------------

    async def show_progress(self) -> None:
        stats = self.driver.stats
        while True:
            self.progress.writing(
                self.at(), self.options.duration, stats.acknowledged, stats.failed
            )
            await asyncio.sleep(0.1)

    async def write_phase(self) -> None:
        options = self.options
        count = len(self.backend.nodes())
        self.write_start = self.loop.time()
        self.progress.phase("writing")
        ticker = asyncio.create_task(self.show_progress())
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self.driver.run(options.duration))
                if options.kill_node is not None:
                    victim = options.kill_node
                    if victim < 0:
                        victim = random.Random(options.seed).randrange(count)
                    group.create_task(self.kill_and_restart(victim))
                if options.partition is not None:
                    group.create_task(self.partition_and_heal(options.partition))
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
        stats = self.driver.stats
        self.progress.writing(options.duration, options.duration, stats.acknowledged, stats.failed)

    async def converge(self) -> _Final:
        options = self.options
        self.progress.phase("waiting for convergence")
        await self.driver.reconcile()
        expected = self.driver.stats.expected
        by_key = self.driver.stats.expected_by_key
        last_write = self.driver.stats.last_ack or self.loop.time()
        final = _Final(False, None, [], [])
        reached_at: float | None = None

        async def exact() -> bool:
            nonlocal reached_at
            final.views = await _read_all(self.backend)
            values = [v.value if isinstance(v, CounterView) else None for v in final.views]
            if options.keys:
                final.held = await _read_values(self.backend)
                if self.driver.unknown:
                    # No exact target exists; wait only until the nodes agree.
                    return None not in final.held and all(h == final.held[0] for h in final.held)
                if all(h is not None and not key_mismatches(by_key, h) for h in final.held):
                    reached_at = self.loop.time()
                    return True
                return False
            if self.driver.unknown:
                # No exact target exists; wait only until the nodes agree with each other.
                return None not in values and len(set(values)) == 1
            if all(value == expected for value in values):
                reached_at = self.loop.time()
                return True
            return False

        done = await _poll_until(exact, options.converge_timeout)
        final.converged = done and reached_at is not None and not self.driver.unknown
        if final.converged and reached_at is not None:
            final.seconds = round(reached_at - last_write, 3)
        return final


@dataclass(slots=True)
class _Final:
    """What the last convergence poll saw."""

    converged: bool
    seconds: float | None
    views: list[CounterView | BaseException]
    #: With --keys: each node's counters by name (None: unreadable).
    held: list[dict[str, int] | None]


def _node_result(
    info: NodeInfo, view: CounterView | BaseException, held: dict[str, int] | None, keys: int
) -> NodeResult:
    """One node's line of the report; with --keys its value is the sum over the keys."""
    error = None if isinstance(view, CounterView) else repr(view)
    value = view.value if isinstance(view, CounterView) else None
    if keys:
        value = None if held is None else sum(held.values())
        error = error if held is not None else error or "its counters could not be listed"
    return NodeResult(
        info.name, info.gossip, info.http, info.replica, info.pid, info.incarnation, value, error
    )


def _key_report(
    nodes: Sequence[NodeInfo], held: Sequence[dict[str, int] | None], expected: dict[str, int]
) -> dict[str, dict[str, list[int]]]:
    """Per node whose counters are wrong, up to 10 keys: [held, expected]."""
    report: dict[str, dict[str, list[int]]] = {}
    for info, values in zip(nodes, held, strict=True):
        if values is None:
            continue
        wrong = key_mismatches(expected, values)
        if wrong:
            report[info.name] = {k: list(v) for k, v in list(wrong.items())[:10]}
    return report


async def run_cluster(
    backend: ClusterBackend, options: RunOptions, progress: ProgressSink
) -> RunReport:
    """Start ``backend``'s cluster, drive it, inject the faults asked for, and report.

    The caller closes the backend (in a ``finally``), whatever happens here.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    progress.phase("starting nodes")
    await backend.start(progress.event)
    startup = loop.time() - started
    run = _Run(backend, options, progress)
    try:
        await run.write_phase()
    except BaseExceptionGroup as group:
        raise group.exceptions[0] from group
    final = await run.converge()
    stats = run.driver.stats
    infos = backend.nodes()
    held = final.held or [None] * len(infos)
    nodes = tuple(
        _node_result(info, view, values, options.keys)
        for info, view, values in zip(infos, final.views, held, strict=True)
    )
    return RunReport(
        mode=backend.mode,
        seed=options.seed,
        duration=options.duration,
        interval=options.interval,
        sync_interval=options.sync_interval,
        startup_seconds=round(startup, 3),
        attempted=stats.attempted,
        acked_increments=stats.acked_increments,
        acked_decrements=stats.acked_decrements,
        failed=stats.failed,
        unknown=run.driver.unknown,
        retries=stats.retries,
        settled_by_retry=stats.settled_by_retry,
        expected=stats.expected,
        nodes=nodes,
        converged=final.converged,
        convergence_seconds=final.seconds,
        converge_timeout=options.converge_timeout,
        kill=run.kill,
        partition=run.partition,
        failure_reasons=dict(stats.failure_reasons) or None,
        keys=options.keys,
        key_mismatches=_key_report(infos, held, stats.expected_by_key) if options.keys else None,
    )

"""Benchmark of membership: how fast a new node is known, and a killed one declared dead.

Run with ``hatch run python benchmarks/bench_membership.py`` (``--help`` for options).

In-process: real :class:`~dcounter_node.Node` and
:class:`~dcounter_node._membership_service.MembershipService` objects (the same code a
``dcounter-node`` process runs, ticker included) on one in-memory network
(:class:`~dcounter_protocol.MemoryNetwork`, no loss, no delay), wall-clock times. For each
cluster size N (10 and 50 by default), each trial:

1. N - 1 nodes join through the first one; wait until every node lists all of them alive.
2. **join**: one more node joins through a random member. Measured: the time until every
   other member lists it ``alive`` (known by all), and until it lists every member itself.
3. **failure**: a random member other than the first is killed (closed without a leave, so
   its messages stop as with ``kill -9``). Measured: the time until the first member
   suspects it, and until every survivor lists it ``dead``; for each survivor, how long it
   held the victim suspect (Lifeguard: from ``suspect_max_factor`` times the least
   suspicion down to it as other members confirm; less for one that hears the victim dead
   from another member first), the confirmations counted and the highest health score
   (awareness) any member reached.

The figures are printed against the configured timeouts, the baseline of this benchmark:
join time in probe intervals, and time to dead as a ratio of ``probe interval + suspect
timeout`` (the least SWIM needs: one probe round unanswered, then the suspicion timeout),
and of ``probe interval +`` the least suspicion at that cluster size (``suspect timeout``
times log10 n above 10 members, see ``_membership_suspicion.py``).
Expected: joins known by all within a few probe intervals (updates spread by piggybacking,
O(log N) rounds); dead within about 1 to 3 times that least, since a member must first pick
the victim to probe and each survivor times the suspicion from when it heard of it. Every
condition is polled every 10 ms, so figures are exact to about that. Goals (printed PASS or
MISS, never a failure): known by all within 10 probe intervals, dead everywhere within 3
times ``probe interval + suspect timeout``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import platform
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dcounter_node import Node, NodeConfig
from dcounter_node._membership import Membership, MemberState
from dcounter_node._membership_service import MembershipService, membership_config
from dcounter_node._membership_suspicion import suspicion_bounds
from dcounter_protocol import MemoryNetwork

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

#: Polling period of every measured condition.
POLL = 0.01
#: A condition not met within this many seconds fails the trial (never expected).
GIVE_UP = 120.0
JOIN_GOAL = 10.0
DEAD_GOAL = 3.0


@dataclass
class Member:
    address: str
    node: Node
    service: MembershipService

    def states(self) -> dict[str, MemberState]:
        return {m.address: m.state for m in self.membership().members()}

    def membership(self) -> Membership:
        membership = self.service.membership
        assert membership is not None
        return membership


@dataclass
class Failure:
    first_suspect: float
    dead_everywhere: float
    #: Per survivor: seconds between seeing the victim suspect and seeing it dead.
    held_suspect: list[float]
    #: Suspicion confirmations counted, all survivors together.
    confirmations: int
    #: The highest health score any survivor reached meanwhile.
    top_awareness: int


@dataclass
class Trial:
    known_by_all: float
    knows_all: float
    failure: Failure


@dataclass
class SizeResult:
    size: int
    trials: list[Trial] = field(default_factory=list)


class Cluster:
    """Nodes with membership on one in-memory network."""

    def __init__(self, args: argparse.Namespace, seed: int) -> None:
        self.network = MemoryNetwork(seed=seed)
        self.config = membership_config(args.probe_interval, args.suspect_timeout)
        self.rng = random.Random(seed)
        self.members: list[Member] = []
        self._count = 0

    async def add(self, seeds: Sequence[str]) -> Member:
        self._count += 1
        address = f"10.1.{self._count // 250}.{self._count % 250 + 1}:7946"
        # Counter gossip is not measured: rare sync rounds keep it out of the way.
        node = Node(self.network.transport(address), NodeConfig(sync_interval=30.0))
        service = MembershipService(
            node,
            seeds=tuple(seeds),
            static_peers=(),
            config=self.config,
            rng=random.Random(self.rng.random()),
        )
        await node.start()
        service.start()
        member = Member(address, node, service)
        self.members.append(member)
        return member

    async def kill(self, member: Member) -> None:
        """Gone without a word: no leave, its transport closed."""
        self.members.remove(member)
        await member.service.close()
        await member.node.close()

    async def close(self) -> None:
        for member in self.members:
            await member.service.close()
            await member.node.close()
        self.members.clear()


async def until(condition: Callable[[], bool], what: str) -> float:
    """Seconds until ``condition`` holds (polled every POLL)."""
    start = time.perf_counter()
    while not condition():
        if time.perf_counter() - start > GIVE_UP:
            raise RuntimeError(f"not within {GIVE_UP:g} s: {what}")
        await asyncio.sleep(POLL)
    return time.perf_counter() - start


async def until_each(*conditions: Callable[[], bool], what: str) -> list[float]:
    """Seconds from now until each condition first holds (all polled every POLL)."""
    start = time.perf_counter()
    times: list[float | None] = [None] * len(conditions)
    while True:
        now = time.perf_counter() - start
        for index, condition in enumerate(conditions):
            if times[index] is None and condition():
                times[index] = now
        done = [t for t in times if t is not None]
        if len(done) == len(conditions):
            return done
        if now > GIVE_UP:
            raise RuntimeError(f"not within {GIVE_UP:g} s: {what}")
        await asyncio.sleep(POLL)


async def trial(args: argparse.Namespace, size: int, seed: int) -> Trial:
    cluster = Cluster(args, seed)
    try:
        first = await cluster.add(())
        for _ in range(size - 2):
            await cluster.add((first.address,))

        def all_alive() -> bool:
            everyone = {m.address for m in cluster.members}
            expected = dict.fromkeys(everyone, MemberState.ALIVE)
            return all(m.states() == expected for m in cluster.members)

        await until(all_alive, f"{size - 1} members alive everywhere")

        seed_member = cluster.rng.choice(cluster.members)
        others = list(cluster.members)
        newcomer = await cluster.add((seed_member.address,))
        everyone = {m.address for m in cluster.members}
        known_by_all, knows_all = await until_each(
            lambda: all(m.states().get(newcomer.address) is MemberState.ALIVE for m in others),
            lambda: set(newcomer.states()) == everyone,
            what="the new node known by all, and knowing all",
        )
        await until(all_alive, f"{size} members alive everywhere")

        victim = cluster.rng.choice(cluster.members[1:])
        await cluster.kill(victim)
        return Trial(known_by_all, knows_all, await failure(cluster, victim))
    finally:
        await cluster.close()


async def failure(cluster: Cluster, victim: Member) -> Failure:
    """Poll every survivor's view of ``victim`` until all list it dead."""
    start = time.perf_counter()
    confirmed = sum(m.membership().confirmations for m in cluster.members)
    suspected: dict[str, float] = {}
    dead: dict[str, float] = {}
    top_awareness = 0
    while len(dead) < len(cluster.members):
        now = time.perf_counter() - start
        for member in cluster.members:
            state = member.states()[victim.address]
            if state is not MemberState.ALIVE:
                suspected.setdefault(member.address, now)
            if state is MemberState.DEAD:
                dead.setdefault(member.address, now)
            top_awareness = max(top_awareness, member.membership().awareness)
        if now > GIVE_UP:
            raise RuntimeError(f"not within {GIVE_UP:g} s: the victim dead everywhere")
        await asyncio.sleep(POLL)
    # A survivor that first heard of the victim as dead held it suspect for 0 s.
    held = [dead[a] - suspected[a] for a in dead]
    confirmations = sum(m.membership().confirmations for m in cluster.members) - confirmed
    return Failure(
        first_suspect=min(suspected.values()),
        dead_everywhere=max(dead.values()),
        held_suspect=held,
        confirmations=confirmations,
        top_awareness=top_awareness,
    )


def _summary(values: list[float]) -> str:
    return f"median {statistics.median(values):6.2f} s  max {max(values):6.2f} s"


def report(args: argparse.Namespace, results: list[SizeResult]) -> None:
    interval, suspect = args.probe_interval, args.suspect_timeout
    least = interval + suspect
    config = membership_config(interval, suspect)
    print(
        f"configured: probe interval {interval:g} s, suspect timeout {suspect:g} s"
        f" (least time to dead: {least:g} s); {args.trials} trials per size"
    )
    for result in results:
        trials = result.trials
        known = [t.known_by_all for t in trials]
        knows = [t.knows_all for t in trials]
        suspected = [t.failure.first_suspect for t in trials]
        dead = [t.failure.dead_everywhere for t in trials]
        held = [h for t in trials for h in t.failure.held_suspect]
        confirmations = [t.failure.confirmations for t in trials]
        bounds = suspicion_bounds(
            suspect,
            result.size,
            max_factor=config.suspect_max_factor,
            confirmations=config.suspect_confirmations,
        )
        join_ratio = max(known) / interval
        dead_ratio = max(dead) / least
        print(f"\n{result.size} members")
        print(
            f"  new node known by all    {_summary(known)}"
            f"  = {statistics.median(known) / interval:5.1f} (max {join_ratio:.1f})"
            " probe intervals"
        )
        print(
            f"  new node knows all       {_summary(knows)}"
            f"  = {statistics.median(knows) / interval:5.1f} probe intervals"
        )
        print(
            f"  killed node suspected    {_summary(suspected)}"
            f"  = {statistics.median(suspected) / interval:5.1f} probe intervals"
        )
        print(
            f"  killed node dead by all  {_summary(dead)}"
            f"  = {statistics.median(dead) / least:5.2f} (max {dead_ratio:.2f})"
            " x (probe interval + suspect timeout)"
        )
        print(
            f"                           = {statistics.median(dead) / (interval + bounds.low):5.2f}"
            f" (max {max(dead) / (interval + bounds.low):.2f})"
            " x (probe interval + least suspicion at this size)"
        )
        print(
            f"  held suspect, each       {_summary(held)}"
            f"  = {statistics.median(held) / bounds.low:5.2f} x its least {bounds.low:.2f} s"
            f" (unconfirmed: {bounds.high:.2f} s)"
        )
        print(
            f"  confirmations per trial  median {statistics.median(confirmations):6.1f}"
            f"    max {max(confirmations):6d}    (all survivors; {bounds.expected} bring"
            " one suspicion to its least)"
        )
        print(
            "  highest health score     "
            f"{max(t.failure.top_awareness for t in trials)} (0 healthy,"
            f" at most {config.awareness_limit})"
        )
        verdict = "PASS" if join_ratio <= JOIN_GOAL else "MISS"
        print(f"  goal: known by all within {JOIN_GOAL:g} probe intervals: {verdict}")
        verdict = "PASS" if dead_ratio <= DEAD_GOAL else "MISS"
        print(f"  goal: dead everywhere within {DEAD_GOAL:g} x least: {verdict}")


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of ints: {text!r}") from None
    if any(size < 3 for size in sizes):
        raise argparse.ArgumentTypeError("cluster sizes must be at least 3")
    return sizes


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Time until a new node is known by all members and a killed one is"
        " declared dead, in-process, against the configured timeouts."
    )
    parser.add_argument(
        "--sizes", type=_sizes, default=[10, 50], help="cluster sizes, comma-separated (10,50)"
    )
    parser.add_argument("--trials", type=int, default=3, help="trials per size (3)")
    parser.add_argument(
        "--probe-interval", type=_positive, default=0.2, help="seconds (0.2)", metavar="S"
    )
    parser.add_argument(
        "--suspect-timeout", type=_positive, default=1.0, help="seconds (1.0)", metavar="S"
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed (1)")
    return parser


async def _main(args: argparse.Namespace) -> list[SizeResult]:
    results = []
    for size in args.sizes:
        result = SizeResult(size)
        for index in range(args.trials):
            result.trials.append(await trial(args, size, args.seed * 1000 + index))
        results.append(result)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.trials < 1:
        _parser().error("--trials must be at least 1")
    # Nodes warn about gossip from members they have not added as peers yet: not measured.
    logging.basicConfig(level=logging.ERROR)
    print(
        f"bench_membership: Python {platform.python_version()} on {platform.machine()},"
        f" in-process memory network"
    )
    started = time.perf_counter()
    results = asyncio.run(_main(args))
    report(args, results)
    print(f"\n({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

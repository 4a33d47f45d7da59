"""``dcounter-cluster run --hosts netns``: the fault lab.

1. create one network namespace per node on a private bridge
   (:mod:`~dcounter_tools.cluster.netns`) and start a durable node in each
   (:mod:`~dcounter_tools.cluster.labnodes`);
2. for ``duration`` seconds, clients write through every node concurrently while a poller
   reads every node's counter and the nemesis carries out its seeded schedule
   (:mod:`~dcounter_tools.cluster.nemesis`); every operation, read and fault goes into the
   history (:mod:`~dcounter_tools.cluster.history`);
3. heal everything, wait (up to ``converge_timeout``) until every node answers with the
   same counter, read each one last time, and judge the history
   (:mod:`~dcounter_tools.cluster.checker`).

A write is tried once: its outcome is ``ok``, ``failed`` or ``indeterminate``, and the
checker accounts for the indeterminate ones. (Retrying with the same Idempotency-Key, as
``--hosts local`` does, is not safe here: a restarted node no longer knows the keys.)
"""

from __future__ import annotations

import asyncio
import random
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dcounter_tools.cluster.checker import Verdict, check_history
from dcounter_tools.cluster.client import CounterView, Outcome
from dcounter_tools.cluster.history import FaultRecord, History, Op, Read

if TYPE_CHECKING:
    from dcounter_tools.cluster.labnodes import LabCluster
    from dcounter_tools.cluster.nemesis import Fault
    from dcounter_tools.cluster.netns import NetnsHosts
    from dcounter_tools.cluster.progress import ProgressSink

__all__ = ["LabOptions", "LabReport", "run_lab"]

_OUTCOMES = {Outcome.ACKED: "ok", Outcome.FAILED: "failed", Outcome.UNKNOWN: "indeterminate"}
_SETTLE_POLL = 0.1


@dataclass(frozen=True, slots=True)
class LabOptions:
    """How to run the lab: load, faults, polling and the final wait."""

    duration: float = 30.0
    #: Seconds between one client's writes.
    interval: float = 0.1
    seed: int = 0
    schedule: tuple[Fault, ...] = ()
    converge_timeout: float = 30.0
    #: How long the nodes must keep agreeing before the final reads.
    quiet_period: float = 1.0
    poll_interval: float = 0.2
    clients_per_node: int = 1
    #: Each write adds or subtracts 1..max_amount.
    max_amount: int = 5


@dataclass(slots=True)
class LabReport:
    """What ``run --hosts netns`` prints: the setup, the figures and the verdict."""

    seed: int
    duration: float
    network: str
    nodes: list[dict[str, Any]]
    schedule: list[dict[str, Any]]
    verdict: Verdict
    history: History = field(repr=False)
    #: Seconds from the end of the writes (everything healed) until all nodes agreed.
    converged_after_heal: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The report as a JSON object (the verdict's fields at the top)."""
        return {
            **self.verdict.to_json(),
            "mode": "netns",
            "seed": self.seed,
            "duration": self.duration,
            "network": self.network,
            "nodes": self.nodes,
            "schedule": self.schedule,
            "converged_after_heal": self.converged_after_heal,
        }

    def render_text(self) -> str:
        """The report for a person."""
        v = self.verdict.details
        lines = [
            "=== dcounter fault lab report ===",
            f"hosts: {len(self.nodes)} network namespaces on {self.network}, seed {self.seed}",
            f"operations: {v.get('operations')} ({v.get('ok')} ok, {v.get('failed')} failed, "
            f"{v.get('indeterminate')} indeterminate), acknowledged sum "
            f"{v.get('acknowledged_sum')}",
            f"faults: {len(self.schedule)} carried out and healed; {v.get('polls')} reads polled",
            f"final values: {v.get('final_values')}",
        ]
        if self.converged_after_heal is not None:
            lines.append(
                f"nodes agreed {self.converged_after_heal:.2f} s after the writes stopped "
                "and every fault was healed"
            )
        lines.append(("VALID: " if self.verdict.valid else "INVALID: ") + self.verdict.reason)
        return "\n".join(lines)


class _Lab:
    def __init__(
        self,
        cluster: LabCluster,
        hosts: NetnsHosts,
        options: LabOptions,
        progress: ProgressSink,
    ) -> None:
        self.cluster = cluster
        self.hosts = hosts
        self.options = options
        self.progress = progress
        self.loop = asyncio.get_running_loop()
        self.t0 = self.loop.time()
        self.run_id = secrets.token_hex(4)
        self.history = History(nodes=cluster.names, seed=options.seed)
        self.acked = 0
        #: Set once the write phase is cancelled (see :meth:`watch`).
        self.stopping = False

    def now(self) -> float:
        return round(self.loop.time() - self.t0, 4)

    async def sleep_until(self, offset: float) -> None:
        await asyncio.sleep(max(0.0, offset - (self.loop.time() - self.t0)))

    # -- workload ---------------------------------------------------------------------------

    async def client(self, client: int, node: int) -> None:
        options = self.options
        rng = random.Random(f"{options.seed}/client/{client}")
        sequence = 0
        while True:
            if self.stopping:
                raise asyncio.CancelledError
            sequence += 1
            await self.sleep_until(sequence * options.interval)
            if self.now() >= options.duration:
                return
            amount = rng.randint(1, options.max_amount) * rng.choice((1, -1))
            key = f"{self.run_id}-c{client}-{sequence}"
            start = self.now()
            result = await self.cluster.clients[node].change(amount, key=key)
            outcome = _OUTCOMES[result.outcome]
            self.history.ops.append(Op(client, node, amount, key, start, self.now(), outcome))
            if outcome == "ok":
                self.acked += 1

    async def poller(self, node: int) -> None:
        while not self.stopping:
            read = await self.read(node)
            if read is not None:
                self.history.polls.append(read)
            await asyncio.sleep(self.options.poll_interval)

    async def read(self, node: int) -> Read | None:
        try:
            view = await self.cluster.clients[node].counter()
        except Exception:
            return None  # down, paused or cut off: no read this time
        return _read(self.now(), node, view)

    async def show_progress(self) -> None:
        while True:
            failed = sum(op.outcome != "ok" for op in self.history.ops)
            self.progress.writing(self.now(), self.options.duration, self.acked, failed)
            await asyncio.sleep(0.2)

    async def watch(self) -> None:
        """Flag a cancellation of the write phase for every client to see.

        A request cancelled just as its own timeout fires may come back as a timeout
        instead (the HTTP client's timeout can swallow the cancellation), and its client would then
        write on until the end of the run; each client checks this flag before each write.
        """
        try:
            await self.sleep_until(self.options.duration)
        except asyncio.CancelledError:
            self.stopping = True
            raise

    # -- nemesis ----------------------------------------------------------------------------

    async def inject(self, fault: Fault) -> None:
        victim = fault.nodes[0]
        if fault.kind == "partition":
            await asyncio.to_thread(self.hosts.block, fault.links)
        elif fault.kind == "kill":
            await self.cluster.kill(victim)
        elif fault.kind == "restart":
            await self.cluster.stop(victim)
        elif fault.kind == "pause":
            self.cluster.pause(victim)

    async def repair(self, fault: Fault) -> None:
        victim = fault.nodes[0]
        if fault.kind == "partition":
            await asyncio.to_thread(self.hosts.heal)
        elif fault.kind in ("kill", "restart"):
            await self.cluster.revive(victim)
        elif fault.kind == "pause":
            self.cluster.resume(victim)

    async def nemesis(self) -> None:
        for fault in self.options.schedule:
            await self.sleep_until(fault.start)
            started = self.now()
            text = fault.describe(self.cluster.names)
            await self.inject(fault)
            self.progress.event(f"{started:7.2f} s  {text}")
            try:
                await self.sleep_until(fault.end)
            finally:
                await self.repair(fault)
            healed = self.now()
            self.progress.event(f"{healed:7.2f} s  healed: {text}")
            self.history.faults.append(FaultRecord(fault.to_json(), started, healed, text))

    async def heal_everything(self) -> None:
        await asyncio.to_thread(self.hosts.heal)
        await self.cluster.heal_all()

    # -- the run ----------------------------------------------------------------------------

    async def write_phase(self) -> None:
        count = len(self.cluster)
        background = [asyncio.create_task(self.poller(i), name=f"poll-{i}") for i in range(count)]
        background.append(asyncio.create_task(self.show_progress()))
        self.progress.phase("writing under the nemesis")
        try:
            async with asyncio.TaskGroup() as group:
                for c in range(count * self.options.clients_per_node):
                    group.create_task(self.client(c, c % count))
                group.create_task(self.nemesis())
                group.create_task(self.watch())
        finally:
            self.stopping = True
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await self.heal_everything()

    async def settle(self) -> float | None:
        """Wait until every node answers with the same counter for ``quiet_period`` seconds.

        Returns the seconds until they first agreed on it, or None at the timeout.
        """
        self.progress.phase("healed; waiting for the nodes to agree")
        began = self.loop.time()
        deadline = began + self.options.converge_timeout
        agreed: tuple[int, int, int] | None = None
        since = began
        while True:
            _stop_if_cancelled()
            reads = await asyncio.gather(*(self.read(i) for i in range(len(self.cluster))))
            states = {None if r is None else (r.value, r.p, r.n) for r in reads}
            now = self.loop.time()
            state = states.pop() if len(states) == 1 else None
            if state is None or state != agreed:
                agreed, since = state, now
            elif now - since >= self.options.quiet_period:
                return round(since - began, 3)
            if now > deadline:
                return None
            await asyncio.sleep(_SETTLE_POLL)


def _stop_if_cancelled() -> None:
    """Honour a cancellation of this task that a request swallowed (see :meth:`_Lab.watch`)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _read(time: float, node: int, view: CounterView) -> Read:
    return Read(
        time, node, view.value, sum(view.increments.values()), sum(view.decrements.values())
    )


async def run_lab(
    cluster: LabCluster, hosts: NetnsHosts, options: LabOptions, progress: ProgressSink
) -> LabReport:
    """Start ``cluster`` on ``hosts``, run the workload under the nemesis, and judge it.

    The caller closes the cluster and removes the hosts (in a ``finally``).
    """
    progress.phase("starting nodes")
    await cluster.start(progress.event)
    lab = _Lab(cluster, hosts, options, progress)
    try:
        await lab.write_phase()
    except BaseExceptionGroup as group:
        raise group.exceptions[0] from group
    settled = await lab.settle()
    final = await asyncio.gather(*(lab.read(i) for i in range(len(cluster))))
    lab.history.final = list(final)
    verdict = check_history(lab.history)
    nodes = [
        {
            "name": name,
            "netns": hosts.hosts[i].netns,
            "address": hosts.hosts[i].address,
            "gossip": cluster.gossip[i],
            "http": cluster.http[i],
            "replica": cluster.replicas[i],
        }
        for i, name in enumerate(cluster.names)
    ]
    network = f"{hosts.gateway}/24 (bridge {hosts.bridge})"
    return LabReport(
        seed=options.seed,
        duration=options.duration,
        network=network,
        nodes=nodes,
        schedule=[f.to_json() for f in options.schedule],
        verdict=verdict,
        history=lab.history,
        converged_after_heal=settled,
    )

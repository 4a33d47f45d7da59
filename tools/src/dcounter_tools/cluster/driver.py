"""The load driver: random increments and decrements on every node at a steady rate.

Each node gets its own loop, ticking every ``interval`` seconds (a tick that comes due while
the previous write is still running is skipped, like a Go ticker), and its own random
generator seeded from (seed, node index), so a seed fixes every node's sequence of +1/-1.

Counting exactly. The expected value is the sum of *acknowledged* writes, so every write
must end either acknowledged once or certainly not applied. Each write carries an
``Idempotency-Key`` unique to it (run id, node, sequence number). When an attempt's outcome
is unknown (timeout, dropped connection, 5xx) the same request is retried with the same
key: the node counts a key once and answers a retry with the first answer, so a write that
did land is acknowledged, not doubled, and one that did not lands now. Writes still unknown
after their retries are settled once more by :meth:`LoadDriver.reconcile` after the run.
A key lives only in the memory of the process that saw it, so an unknown write is only ever
retried against the same incarnation of its node; the fault injector quiesces a node
(:meth:`LoadDriver.quiesce`) and settles its unknown writes before it kills it. A write
that stays unknown is reported as such and makes exact convergence unprovable (exit 1).

With ``keys`` (``--keys N``), each write also picks one of those counter names with the
node's generator, and :attr:`DriverStats.expected_by_key` adds up the acknowledged writes
per name.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dcounter_tools.cluster.client import Outcome
from dcounter_tools.cluster.keys import DEFAULT_COUNTER

if TYPE_CHECKING:
    from collections.abc import Sequence

    from dcounter_tools.cluster.backend import ClusterBackend

__all__ = ["DriverStats", "LoadDriver", "PendingWrite"]

#: Delay before the first retry of a write whose outcome is unknown (doubles each time).
_RETRY_BACKOFF = 0.05


@dataclass(slots=True)
class PendingWrite:
    """A write whose outcome is not known yet."""

    node: int
    delta: int
    key: str
    incarnation: int
    attempts: int
    reason: str
    #: The counter it counts.
    name: str = DEFAULT_COUNTER


@dataclass(slots=True)
class DriverStats:
    """Running totals of the load driver."""

    attempted: int = 0
    acked_increments: int = 0
    acked_decrements: int = 0
    failed: int = 0
    retries: int = 0
    #: Writes acknowledged by a retry after an attempt with an unknown outcome.
    settled_by_retry: int = 0
    #: Loop time of the last acknowledgement (None before the first).
    last_ack: float | None = None
    failure_reasons: dict[str, int] = field(default_factory=dict)
    #: Per counter name: acknowledged increments - decrements.
    expected_by_key: dict[str, int] = field(default_factory=dict)

    @property
    def acknowledged(self) -> int:
        """Writes acknowledged so far."""
        return self.acked_increments + self.acked_decrements

    @property
    def expected(self) -> int:
        """The value the cluster must converge to: acknowledged increments - decrements."""
        return self.acked_increments - self.acked_decrements


class LoadDriver:
    """Drives ``backend``'s nodes with seeded random writes; see the module docstring."""

    def __init__(
        self,
        backend: ClusterBackend,
        *,
        interval: float,
        seed: int,
        run_id: str,
        max_attempts: int = 4,
        keys: Sequence[str] = (),
    ) -> None:
        self._backend = backend
        self._interval = interval
        self._seed = seed
        self._run_id = run_id
        self._max_attempts = max_attempts
        self._keys = tuple(keys)
        count = len(backend.nodes())
        self._enabled = [asyncio.Event() for _ in range(count)]
        self._idle = [asyncio.Event() for _ in range(count)]
        for event in (*self._enabled, *self._idle):
            event.set()
        self._sequence = [0] * count
        self.stats = DriverStats()
        self.pending: list[PendingWrite] = []
        self._loop = asyncio.get_running_loop()

    def _key(self, node: int) -> str:
        self._sequence[node] += 1
        return f"{self._run_id}-n{node}-{self._sequence[node]}"

    async def run(self, duration: float) -> None:
        """Write for ``duration`` seconds, then return once every write in flight ended."""
        start = self._loop.time()
        end = start + duration
        await asyncio.gather(*(self._node_loop(i, start, end) for i in range(len(self._idle))))

    async def _node_loop(self, node: int, start: float, end: float) -> None:
        rng = random.Random(f"{self._seed}/{node}")
        tick = 1
        while True:
            due = start + tick * self._interval
            if due >= end:
                return
            await asyncio.sleep(due - self._loop.time())
            if not self._enabled[node].is_set():
                try:
                    async with asyncio.timeout(end - self._loop.time()):
                        await self._enabled[node].wait()
                except TimeoutError:
                    return
            now = self._loop.time()
            if now >= end:
                return
            delta = 1 if rng.random() < 0.5 else -1
            # Drawn only with keys: a seed's writes without them stay what they were.
            name = rng.choice(self._keys) if self._keys else DEFAULT_COUNTER
            self._idle[node].clear()
            try:
                await self._write(node, delta, name)
            finally:
                self._idle[node].set()
            # Skip the ticks that came due while this write ran.
            tick = max(tick + 1, int((self._loop.time() - start) / self._interval) + 1)

    async def _write(self, node: int, delta: int, name: str = DEFAULT_COUNTER) -> None:
        key = self._key(node)
        incarnation = self._backend.nodes()[node].incarnation
        self.stats.attempted += 1
        write = PendingWrite(node, delta, key, incarnation, 0, "", name)
        await self._attempt(write, self._max_attempts)

    async def _attempt(self, write: PendingWrite, attempts: int) -> bool:
        """Try ``write`` up to ``attempts`` times; True once it is settled (acked or failed)."""
        for _ in range(attempts):
            if write.attempts:
                self.stats.retries += 1
                await asyncio.sleep(_RETRY_BACKOFF * 2 ** min(write.attempts - 1, 5))
            write.attempts += 1
            result = await self._backend.change(write.node, write.delta, write.key, write.name)
            if result.outcome is Outcome.ACKED:
                stats = self.stats
                if write.reason:
                    stats.settled_by_retry += 1
                if write.delta > 0:
                    stats.acked_increments += 1
                else:
                    stats.acked_decrements += 1
                by_key = stats.expected_by_key
                by_key[write.name] = by_key.get(write.name, 0) + write.delta
                self.stats.last_ack = self._loop.time()
                return True
            if result.outcome is Outcome.FAILED and not write.reason:
                # Certainly not applied, and no earlier attempt might have been.
                self.stats.failed += 1
                reason = result.reason.split(":")[0]
                self.stats.failure_reasons[reason] = self.stats.failure_reasons.get(reason, 0) + 1
                return True
            if result.outcome is Outcome.UNKNOWN:
                write.reason = result.reason
        self.pending.append(write)
        return False

    def pause(self, node: int) -> None:
        """Stop issuing new writes to ``node`` (writes in flight finish)."""
        self._enabled[node].clear()

    def resume(self, node: int) -> None:
        """Issue writes to ``node`` again."""
        self._enabled[node].set()

    async def quiesce(self, node: int) -> None:
        """Pause ``node`` and wait until it has no write in flight."""
        self.pause(node)
        await self._idle[node].wait()

    async def reconcile(self, *, node: int | None = None, attempts: int = 5) -> None:
        """Retry the writes still unknown (of ``node``, or all) on their own incarnation.

        Writes whose node has restarted since are left unknown: the new incarnation does not
        remember their keys, so a retry could count them twice.
        """
        keep: list[PendingWrite] = []
        todo: list[PendingWrite] = []
        infos = self._backend.nodes()
        for write in self.pending:
            same = infos[write.node].incarnation == write.incarnation
            (todo if same and (node is None or write.node == node) else keep).append(write)
        self.pending = keep
        await asyncio.gather(*(self._attempt(write, attempts) for write in todo))

    @property
    def unknown(self) -> int:
        """Writes whose outcome is still unknown."""
        return len(self.pending)

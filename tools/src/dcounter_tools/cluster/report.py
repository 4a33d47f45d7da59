"""The run report: what was written, what every node holds, and whether that is exact."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["KillReport", "NodeResult", "PartitionReport", "RunReport"]


@dataclass(frozen=True, slots=True)
class NodeResult:
    """One node at the end of the run."""

    name: str
    gossip: str
    http: str | None
    replica: str
    pid: int | None
    restarts: int
    #: Its value at the last poll (None if it could not be read).
    value: int | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class KillReport:
    """The ``--kill-node`` fault: which node, when, and its two incarnations."""

    node: str
    killed_at: float
    restarted_at: float
    old_replica: str
    new_replica: str
    old_pid: int | None
    new_pid: int | None
    #: Its acknowledged writes were held by another node before the kill.
    replicated_before_kill: bool


@dataclass(frozen=True, slots=True)
class PartitionReport:
    """The ``--partition`` fault: the halves, when, and each node's value just before healing."""

    started_at: float
    healed_at: float
    halves: tuple[tuple[str, ...], tuple[str, ...]]
    links_cut: int
    values_before_heal: dict[str, int | None]


@dataclass(frozen=True, slots=True)
class RunReport:
    """Everything ``dcounter-cluster run`` prints."""

    mode: str
    seed: int
    duration: float
    interval: float
    sync_interval: float | None
    startup_seconds: float
    attempted: int
    acked_increments: int
    acked_decrements: int
    failed: int
    unknown: int
    retries: int
    settled_by_retry: int
    expected: int
    nodes: tuple[NodeResult, ...]
    converged: bool
    #: Seconds from the last acknowledged write until every node held ``expected``.
    convergence_seconds: float | None
    converge_timeout: float
    kill: KillReport | None = None
    partition: PartitionReport | None = None
    failure_reasons: dict[str, int] | None = None
    #: ``--keys``: how many named counters the writes went to (0: the default counter).
    keys: int = 0
    #: With ``--keys``: per node holding a wrong count, up to 10 keys as [held, expected].
    key_mismatches: dict[str, dict[str, list[int]]] | None = None

    @property
    def acknowledged(self) -> int:
        """Writes acknowledged."""
        return self.acked_increments + self.acked_decrements

    def to_json(self) -> dict[str, Any]:
        """The report as a JSON object."""
        data = asdict(self)
        data["acknowledged"] = self.acknowledged
        data["values"] = [n.value for n in self.nodes]
        return data

    def render_text(self) -> str:
        """The report as plain text, in the spirit of the seed demo's output."""
        lines = ["=== dcounter cluster report ==="]
        sync = f", sync interval {self.sync_interval:g} s" if self.sync_interval else ""
        lines.append(
            f"cluster: {len(self.nodes)} nodes ({self.mode}{sync}), "
            f"up in {self.startup_seconds:.2f} s"
        )
        lines.append(
            f"load: {self.duration:g} s, one write per node every {self.interval:g} s, "
            f"seed {self.seed}"
        )
        lines.append(
            f"operations: {self.attempted} attempted, {self.acknowledged} acknowledged "
            f"({self.acked_increments} increments, {self.acked_decrements} decrements), "
            f"{self.failed} failed, {self.unknown} unknown"
        )
        if self.retries:
            lines.append(
                f"retries: {self.retries} (same Idempotency-Key), "
                f"{self.settled_by_retry} writes acknowledged by a retry"
            )
        if self.failure_reasons:
            reasons = ", ".join(f"{k} x{v}" for k, v in sorted(self.failure_reasons.items()))
            lines.append(f"failures: {reasons}")
        if self.kill is not None:
            k = self.kill
            lines.append(
                f"kill: {k.node} killed (SIGKILL) at {k.killed_at:.2f} s, back at "
                f"{k.restarted_at:.2f} s as replica {k.new_replica} (was {k.old_replica}); "
                f"its writes were {'' if k.replicated_before_kill else 'NOT '}"
                "replicated before the kill"
            )
        if self.partition is not None:
            p = self.partition
            half_a, half_b = (", ".join(h) for h in p.halves)
            lines.append(
                f"partition: {p.started_at:.2f} s to {p.healed_at:.2f} s, "
                f"[{half_a}] | [{half_b}], {p.links_cut} peer links cut"
            )
            before = ", ".join(
                f"{name}={'?' if v is None else v}" for name, v in p.values_before_heal.items()
            )
            lines.append(f"  values just before healing: {before}")
        if self.keys:
            lines.append(
                f"expected value: {self.expected} in all, over {self.keys} named counters "
                "(each checked exactly on every node)"
            )
        else:
            lines.append(f"expected value: {self.expected}")
        lines.append("node values:" + (" (sums over the keys)" if self.keys else ""))
        width = max(len(n.name) for n in self.nodes) if self.nodes else 0
        for n in self.nodes:
            if n.value is None:
                state = f"unreachable ({n.error})"
            else:
                wrong = (self.key_mismatches or {}).get(n.name)
                state = "ok" if n.value == self.expected and not wrong else "MISMATCH"
                if wrong:
                    shown = ", ".join(f"{k}={h} (want {w})" for k, (h, w) in wrong.items())
                    state += f": {shown}"
            value = "?" if n.value is None else str(n.value)
            restarts = f" (restarted {n.restarts}x)" if n.restarts else ""
            lines.append(f"  {n.name:<{width}}  {n.gossip:<21} {value:>8}  {state}{restarts}")
        if self.converged:
            took = self.convergence_seconds or 0.0
            what = f"each of the {self.keys} keys" if self.keys else str(self.expected)
            lines.append(
                f"CONVERGED: every node holds exactly {what}, {took:.3f} s after the last write"
            )
        else:
            why = (
                f"{self.unknown} writes have an unknown outcome"
                if self.unknown
                else f"not every node reached {'every key' if self.keys else self.expected}"
                f" within {self.converge_timeout:g} s"
            )
            lines.append(f"NOT CONVERGED: {why}")
        return "\n".join(lines)

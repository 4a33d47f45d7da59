"""What the dashboard says about the cluster: each peer's status and whether all agree.

Pure decisions, no I/O: :mod:`dcounter_node._dashboard` asks the peers' HTTP APIs and
reads the gossip statistics, this module turns those facts into the ``GET /cluster``
document.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from collections.abc import Sequence

    from dcounter_crdt import CounterState

__all__ = [
    "Convergence",
    "ConvergenceStatus",
    "PeerReport",
    "PeerStatus",
    "cluster_document",
    "convergence",
]

#: ``up``/``down``: the peer's HTTP API answered or not (its HTTP address is known);
#: ``alive``/``silent``/``unknown``: no HTTP address, so only gossip tells (a message
#: exchanged recently, not recently, never).
PeerStatus = Literal["up", "down", "alive", "silent", "unknown"]
#: ``unknown``: no peer answered (or there are none) to compare with.
ConvergenceStatus = Literal["converged", "diverged", "unknown"]


@dataclass(frozen=True, slots=True)
class PeerReport:
    """What this node learned about one peer just now."""

    gossip: str
    #: The peer's HTTP API address, when this node knows it.
    http: str | None = None
    #: The counts the peer's API reported (None: not asked, or no valid answer).
    state: CounterState | None = None
    #: Why there is no state although ``http`` is known.
    error: str | None = None
    #: Seconds since a gossip message last went to or came from the peer (None: never).
    last_contact: float | None = None

    def status(self, silent_after: float) -> PeerStatus:
        """The peer's status; gossip silence longer than ``silent_after`` s is ``silent``."""
        if self.http is not None:
            return "up" if self.state is not None else "down"
        if self.last_contact is None:
            return "unknown"
        return "alive" if self.last_contact <= silent_after else "silent"


@dataclass(frozen=True, slots=True)
class Convergence:
    """Whether the peers that answered hold exactly this node's counts."""

    status: ConvergenceStatus
    #: Largest difference between this node's value and an answering peer's.
    diverged_by: int
    #: Peers whose counts were compared (those that answered).
    compared: int
    #: All peers.
    peers: int

    @property
    def label(self) -> str:
        """The badge text: "converged", "diverged by N", ..."""
        if self.status == "unknown":
            return "no peers" if self.peers == 0 else f"unknown: 0 of {self.peers} peers answered"
        partial = "" if self.compared == self.peers else f" ({self.compared} of {self.peers} peers)"
        if self.status == "converged":
            return "converged" + partial
        if self.diverged_by:
            return f"diverged by {self.diverged_by}" + partial
        return "diverged: same value, different counts" + partial


def convergence(own: CounterState, reports: Sequence[PeerReport]) -> Convergence:
    """Compare ``own`` with every peer's reported counts.

    States, not values, are compared: two replicas can show the same value while each
    misses the other's writes.
    """
    states = [report.state for report in reports if report.state is not None]
    if not states:
        return Convergence("unknown", 0, 0, len(reports))
    diverged_by = max(abs(state.value - own.value) for state in states)
    status: ConvergenceStatus = "converged" if all(state == own for state in states) else "diverged"
    return Convergence(status, diverged_by, len(states), len(reports))


def cluster_document(
    *,
    gossip: str,
    replica: str,
    own: CounterState,
    writes: int,
    reports: Sequence[PeerReport],
    silent_after: float,
) -> dict[str, Any]:
    """The ``GET /cluster`` answer (see the node's README)."""
    verdict = convergence(own, reports)
    return {
        "node": {
            "gossip": gossip,
            "replica": replica,
            "value": own.value,
            "contribution": own.increments.get(replica, 0) - own.decrements.get(replica, 0),
            "increments": dict(own.increments),
            "decrements": dict(own.decrements),
            "writes": writes,
        },
        "peers": [
            {
                "gossip": report.gossip,
                "http": report.http,
                "status": report.status(silent_after),
                "value": None if report.state is None else report.state.value,
                "in_sync": None if report.state is None else report.state == own,
                "last_contact": None
                if report.last_contact is None
                else round(report.last_contact, 3),
                "error": report.error,
            }
            for report in reports
        ],
        "convergence": {
            "status": verdict.status,
            "diverged_by": verdict.diverged_by,
            "compared": verdict.compared,
            "peers": verdict.peers,
            "label": verdict.label,
        },
    }

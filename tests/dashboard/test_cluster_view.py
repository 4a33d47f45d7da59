"""What GET /cluster concludes from the facts it gathered (pure: dcounter_node._cluster)."""

from __future__ import annotations

import pytest

from dcounter_crdt import CounterState
from dcounter_node._cluster import PeerReport, cluster_document, convergence

OWN = CounterState({"a": 5, "b": 2}, {"a": 1})  # value 6


def _answered(increments: dict[str, int], decrements: dict[str, int] | None = None) -> PeerReport:
    return PeerReport("p:1", "p:2", CounterState(increments, decrements or {}))


def test_peers_holding_the_same_counts_are_converged() -> None:
    verdict = convergence(OWN, [_answered({"a": 5, "b": 2}, {"a": 1})] * 2)
    assert (verdict.status, verdict.diverged_by, verdict.label) == ("converged", 0, "converged")


def test_divergence_is_the_largest_value_difference() -> None:
    behind = _answered({"a": 5}, {"a": 1})  # 4: misses b's 2
    ahead = _answered({"a": 5, "b": 2, "c": 3}, {"a": 1})  # 9
    verdict = convergence(OWN, [behind, ahead])
    assert (verdict.status, verdict.diverged_by, verdict.label) == ("diverged", 3, "diverged by 3")


def test_equal_values_with_different_counts_are_not_converged() -> None:
    verdict = convergence(OWN, [_answered({"a": 4, "c": 3}, {"a": 1})])  # also 6
    assert verdict.status == "diverged"
    assert verdict.label == "diverged: same value, different counts"


def test_peers_that_did_not_answer_are_left_out_and_said_so() -> None:
    silent = PeerReport("q:1", "q:2", error="unreachable: Connection refused")
    verdict = convergence(OWN, [_answered({"a": 5, "b": 2}, {"a": 1}), silent])
    assert verdict.label == "converged (1 of 2 peers)"
    assert convergence(OWN, [silent]).label == "unknown: 0 of 1 peers answered"
    assert convergence(OWN, []).label == "no peers"


@pytest.mark.parametrize(
    ("report", "status"),
    [
        (PeerReport("p:1", "p:2", CounterState()), "up"),
        (PeerReport("p:1", "p:2", error="HTTP 503", last_contact=0.1), "down"),
        (PeerReport("p:1", last_contact=4.0), "alive"),
        (PeerReport("p:1", last_contact=6.0), "silent"),
        (PeerReport("p:1"), "unknown"),
    ],
)
def test_peer_status_comes_from_http_when_known_else_from_gossip(
    report: PeerReport, status: str
) -> None:
    assert report.status(silent_after=5.0) == status


def test_the_document_describes_the_node_and_each_peer() -> None:
    peer = PeerReport("p:1", "p:2", CounterState({"a": 5}), last_contact=0.5)
    document = cluster_document(
        gossip="n:1", replica="a", own=OWN, writes=7, reports=[peer], silent_after=5.0
    )
    assert document["node"] == {
        "gossip": "n:1",
        "replica": "a",
        "value": 6,
        "contribution": 4,
        "increments": {"a": 5, "b": 2},
        "decrements": {"a": 1},
        "writes": 7,
    }
    assert document["peers"] == [
        {
            "gossip": "p:1",
            "http": "p:2",
            "status": "up",
            "value": 5,
            "in_sync": False,
            "last_contact": 0.5,
            "error": None,
        }
    ]
    assert document["convergence"] == {
        "status": "diverged",
        "diverged_by": 1,
        "compared": 1,
        "peers": 1,
        "label": "diverged by 1",
    }

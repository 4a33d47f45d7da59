"""Counting and logging what the gossip cores refused from a peer (both counters' kinds)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dcounter_node._peers import PeerManager
    from dcounter_node._ratelimit import RateLimitedLog
    from dcounter_node._stats import NodeStats

__all__ = ["Refusals"]


class Refusals:
    """Records refusals in the node's stats and logs each kind once per peer per period.

    A frame's sender is only a claim, so every address that is not a peer shares one log
    key: a flood of made-up senders logs one line per period.
    """

    def __init__(
        self,
        stats: NodeStats,
        peers: PeerManager,
        log: RateLimitedLog,
        hostile_log: RateLimitedLog,
    ) -> None:
        self._stats = stats
        self._peers = peers
        self._log = log
        self._hostile_log = hostile_log

    def report(
        self,
        sender: str,
        *,
        what: str = "push",
        rejected: str | None = None,
        forged: str | None = None,
        unknown_sender: bool = False,
    ) -> None:
        """Count and log a push ``rejected`` whole, ``forged`` own counts, a withheld reply."""
        who = sender if sender in self._peers else "<not a peer>"
        if rejected is not None:
            self._stats.record_push_rejected()
            self._hostile_log.warning(
                f"rejected:{what}:{who}", "rejected a whole %s from %s: %s", what, sender, rejected
            )
        if forged is not None:
            self._stats.record_forged_refused()
            self._hostile_log.warning(
                f"forged:{what}:{who}",
                "refused counts for our own replica from %s above what we counted: %s",
                sender,
                forged,
            )
        if unknown_sender:
            self._stats.record_unknown_sender()
            self._log.warning("unknown", "not answering %s: it is not one of our peers", sender)

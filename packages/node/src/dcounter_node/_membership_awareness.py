"""Lifeguard's local health awareness, pure: a node that seems slow gives others more time.

A node whose probes go unanswered, or that hears itself suspected, may be the slow one
itself (a starved CPU, a saturated link): then it would suspect healthy members in turn. So
it keeps a health score, 0 when all is well, raised by each such sign and lowered by each
answered probe, and multiplies its probe interval and probe timeout by ``1 + score``
(hashicorp/memberlist's awareness). The score is bounded, so a node recovers within as many
answered probes.
"""

from __future__ import annotations

from dcounter_node._errors import ConfigError

__all__ = ["Awareness"]


class Awareness:
    """A health score between 0 (healthy) and ``limit``."""

    def __init__(self, limit: int) -> None:
        if limit < 0:
            raise ConfigError("the awareness limit must be >= 0")
        self._limit = limit
        self._score = 0

    @property
    def score(self) -> int:
        return self._score

    @property
    def limit(self) -> int:
        return self._limit

    def worse(self, by: int = 1) -> None:
        """A sign that this node is slow (a probe unanswered, a suspicion to refute)."""
        self._score = min(self._limit, self._score + by)

    def better(self) -> None:
        """A sign that this node is fine (a probe answered)."""
        self._score = max(0, self._score - 1)

    def scale(self, seconds: float) -> float:
        """``seconds`` stretched by the score: ``seconds * (1 + score)``."""
        return seconds * (1 + self._score)

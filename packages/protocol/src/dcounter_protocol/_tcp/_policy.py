"""Per-peer sending decisions, as pure code: no sockets, no asyncio, times passed in.

:class:`PeerPolicy` says which wire a message to one peer takes (queue it on the stream,
offer a stream, or use the seed framing) and for how long a peer that did not confirm a
stream keeps the seed framing; :class:`Backoff` paces the re-opening of a broken stream.
The outbound side (:mod:`~dcounter_protocol._tcp._outbound`) only carries them out.
"""

from __future__ import annotations

import enum

__all__ = ["Backoff", "PeerPolicy", "Route"]


class Route(enum.Enum):
    """Where a message to a peer goes."""

    #: The peer has a stream (open, or being re-opened): queue the message for it.
    QUEUE = "queue"
    #: No stream and no reason to doubt one: dial and offer a stream (or join an offer).
    OFFER = "offer"
    #: The peer did not confirm a stream lately: the seed framing, one connection.
    SEED = "seed"


class PeerPolicy:
    """One peer's wire choice: streams unless it refused one recently."""

    __slots__ = ("_reprobe_interval", "_unanswered_retry", "seed_until")

    def __init__(self, *, reprobe_interval: float, unanswered_retry: float) -> None:
        self._reprobe_interval = reprobe_interval
        self._unanswered_retry = unanswered_retry
        #: Time until which the peer gets the seed framing without a probe.
        self.seed_until = 0.0

    def route(self, now: float, *, has_stream: bool) -> Route:
        if has_stream:
            return Route.QUEUE
        if self.seed_until > now:
            return Route.SEED
        return Route.OFFER

    def probe_due(self, now: float) -> bool:
        """Whether a stream may be offered now (not inside a seed-only period)."""
        return self.seed_until <= now

    def confirmed(self) -> None:
        """The peer confirmed a stream."""
        self.seed_until = 0.0

    def not_confirmed(self, now: float, *, refused: bool) -> float:
        """The peer did not confirm an offer; returns the seconds until the next probe.

        A refusal (a close, or other bytes than the confirmation) is how a seed-only peer
        answers: believe it for the re-probe interval. A reset or silence can also be a
        peer (or loop) too busy to answer in time, so that one is probed again sooner.
        """
        retry = self._reprobe_interval if refused else self._unanswered_retry
        self.seed_until = now + retry
        return retry


class Backoff:
    """Delays between attempts to re-open a stream: doubling from ``first`` to ``maximum``.

    An attempt that fails at the maximum delay means give up (the caller drops what waits).
    """

    __slots__ = ("_maximum", "delay")

    def __init__(self, first: float, maximum: float) -> None:
        self._maximum = maximum
        #: How long to wait before the next attempt.
        self.delay = first

    def failed(self) -> bool:
        """Record a failed attempt; True when it was the last one (made at the maximum)."""
        if self.delay >= self._maximum:
            return True
        self.delay = min(self.delay * 2, self._maximum)
        return False

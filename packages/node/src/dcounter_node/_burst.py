"""A budget of work allowed per time window (pure code, the caller passes the time)."""

from __future__ import annotations

__all__ = ["BurstBudget"]


class BurstBudget:
    """At most ``limit`` takes per ``window`` seconds; the window starts at the first take
    after the previous one ended.

    The node handles an inbound message at once (no queue hop, no wake-up of its worker)
    while this allows; a burst beyond it goes through the bounded inbound queue as before,
    so overload is still shed there.
    """

    __slots__ = ("_limit", "_since", "_taken", "_window")

    def __init__(self, limit: int, window: float) -> None:
        self._limit = limit
        self._window = window
        self._since = float("-inf")
        self._taken = 0

    def take(self, now: float) -> bool:
        """Use one unit of the budget at time ``now``; False when this window's is spent."""
        if now - self._since >= self._window:
            self._since = now
            self._taken = 0
        if self._taken >= self._limit:
            return False
        self._taken += 1
        return True

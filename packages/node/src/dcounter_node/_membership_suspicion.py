"""Lifeguard's suspicion timer, pure: a suspect's time to death shrinks as members confirm.

A member suspected by one member alone may well be fine (the one suspecting it may be the
slow one), so the suspicion starts long; each further member that says it suspects the same
member too makes a false alarm less likely, so the time left shrinks, down to a floor once
``expected`` confirmations are in. With ``c`` confirmations out of ``k`` expected the
suspicion lasts ``max(low, high - (high - low) * log(c + 1) / log(k + 1))`` from its start
(the curve of hashicorp/memberlist's suspicion timer and of the Lifeguard paper): the first
confirmations count most.

A member counts once; the member the suspicion came from (the first to tell it, or this
node) is its origin, never a confirmation; neither this node nor the suspect ever confirms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Suspicion", "SuspicionBounds", "Suspicions", "suspicion_bounds"]


@dataclass(frozen=True, slots=True)
class SuspicionBounds:
    """How long a suspicion may last: ``high`` unconfirmed, ``low`` with ``expected``
    confirmations (``expected`` 0: ``low`` at once)."""

    low: float
    high: float
    expected: int

    def timeout(self, confirmations: int) -> float:
        """The suspicion's length in seconds after ``confirmations`` confirmations."""
        if self.expected < 1 or confirmations >= self.expected:
            return self.low
        done = math.log(confirmations + 1) / math.log(self.expected + 1)
        return max(self.low, self.high - (self.high - self.low) * done)


def suspicion_bounds(
    suspect_timeout: float, members: int, *, max_factor: float, confirmations: int
) -> SuspicionBounds:
    """The bounds for a suspicion raised while ``members`` are alive or suspect (this node
    and the suspect included).

    The floor grows with the cluster as ``suspect_timeout * log10(members)`` (at least
    ``suspect_timeout``): news of the suspicion, and the suspect's refutation, take
    O(log n) rounds to spread. ``confirmations`` are expected only when enough members
    can give them: neither this node nor the suspect confirms, and the origin may be a third
    member, which leaves ``members - 3``; with fewer, the floor applies at once.
    """
    low = suspect_timeout * max(1.0, math.log10(max(1, members)))
    expected = confirmations if members - 3 >= confirmations else 0
    return SuspicionBounds(low, low * max_factor, expected)


class Suspicion:
    """One suspect's timer, started at ``started`` (caller's clock) on the word of ``origin``."""

    def __init__(self, origin: str, bounds: SuspicionBounds, started: float) -> None:
        self._bounds = bounds
        self._started = started
        self._heard = {origin}
        self._confirmations = 0

    @property
    def confirmations(self) -> int:
        return self._confirmations

    @property
    def deadline(self) -> float:
        """When the suspect is to be declared dead, given the confirmations so far."""
        return self._started + self._bounds.timeout(self._confirmations)

    def confirm(self, member: str) -> bool:
        """Count ``member``'s word that it suspects the same member too; whether it was
        news (a member, the origin included, counts once; no more than expected count)."""
        if self._confirmations >= self._bounds.expected or member in self._heard:
            return False
        self._heard.add(member)
        self._confirmations += 1
        return True


class Suspicions:
    """This node's suspicions, by suspect: started, confirmed, ended, timed out.

    A confirmation never comes from this node (``me``) nor from the suspect itself.
    """

    def __init__(
        self, me: str, *, suspect_timeout: float, max_factor: float, confirmations: int
    ) -> None:
        self._me = me
        self._suspect_timeout = suspect_timeout
        self._max_factor = max_factor
        self._expected = confirmations
        self._by_suspect: dict[str, Suspicion] = {}
        self._confirmed = 0

    @property
    def confirmed(self) -> int:
        """Confirmations counted so far, all suspicions together."""
        return self._confirmed

    def start(self, suspect: str, origin: str | None, *, members: int, now: float) -> None:
        """``suspect`` is suspected on ``origin``'s word (None: this node's own probe), while
        ``members`` are alive or suspect."""
        bounds = suspicion_bounds(
            self._suspect_timeout,
            members,
            max_factor=self._max_factor,
            confirmations=self._expected,
        )
        self._by_suspect[suspect] = Suspicion(self._me if origin is None else origin, bounds, now)

    def end(self, suspect: str) -> None:
        """``suspect`` is suspect no more (refuted, dead, left): its confirmations are spent."""
        self._by_suspect.pop(suspect, None)

    def confirm(self, suspect: str, by: str) -> None:
        """``by`` says that ``suspect`` is suspect, at the incarnation this node suspects."""
        suspicion = self._by_suspect.get(suspect)
        if suspicion is not None and by not in (self._me, suspect) and suspicion.confirm(by):
            self._confirmed += 1

    def deadline(self, suspect: str) -> float | None:
        """When ``suspect`` is to be declared dead (None: not suspected)."""
        suspicion = self._by_suspect.get(suspect)
        return None if suspicion is None else suspicion.deadline

    def next_deadline(self) -> float:
        return min((s.deadline for s in self._by_suspect.values()), default=math.inf)

    def expired(self, now: float) -> list[str]:
        """The suspects whose suspicion has timed out by ``now``."""
        return [a for a, s in self._by_suspect.items() if now >= s.deadline]

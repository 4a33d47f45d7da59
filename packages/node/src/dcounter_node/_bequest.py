"""Bequests: pruning members that left, as pure code (see "Bequests" in the node README).

A leaving node gives its replica id to exactly one heir, which alone may prune it once
``--prune-after`` has passed, unless the node comes back first and revokes it. No asyncio,
no files here: :class:`Heirloom` is what the heir holds, :class:`Bequeathed` what the
leaving node keeps in its data directory, :func:`heir_order` whom it asks, and
:func:`after_revoke` what a returning node does with the heir's answer. The edge is
:mod:`dcounter_node._bequest_service`.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    import random
    from collections.abc import Callable, Collection, Iterable, Mapping

__all__ = [
    "MAX_ATTEMPTS",
    "MAX_HELD",
    "Answer",
    "Bequeathed",
    "Bequest",
    "Given",
    "Heirloom",
    "Outcome",
    "after_revoke",
    "heir_order",
    "standing_heirs",
]

#: Most bequests one heir holds; beyond it, it refuses (the leaver tries another member).
MAX_HELD: Final = 64
#: Most heirs a leaving node asks (each after an explicit refusal of the one before).
MAX_ATTEMPTS: Final = 3
#: Revoked bequests an heir remembers (in memory), to refuse a late copy of one.
_REMEMBERED: Final = 1024


class Answer(enum.IntEnum):
    """An heir's answer to ``bequeath`` (accepted, refused) or ``revoke`` (revoked, pruned)."""

    ACCEPTED = 1
    REFUSED = 2
    REVOKED = 3
    PRUNED = 4
    #: Sent unasked by an heir that leaves: it no longer holds the standing bequest.
    RELEASED = 5


@dataclass(frozen=True, slots=True)
class Bequest:
    """A replica id handed to an heir: its final counts, and when the heir received it.

    A **standing** bequest (``standing``, counts (0, 0)) is named in advance by a running
    node at ``owner`` (its address): the heir prunes it once it has held that owner gone
    (dead, left, forgotten, or running another id) for ``--prune-after``, at the counts it
    holds for the id then.
    """

    victim: str
    counts: tuple[int, int]
    received: float = 0.0
    standing: bool = False
    owner: str = ""


class Heirloom:
    """The bequests one heir holds (``held``) and the revoked ones it remembers."""

    def __init__(self, held: Iterable[Bequest] = ()) -> None:
        self._held: dict[str, Bequest] = {b.victim: b for b in held}
        self._revoked: OrderedDict[tuple[str, int, int], None] = OrderedDict()
        # Standing victims whose owner this heir has held gone since (its clock); in
        # memory, so a restarted heir waits --prune-after again (later, never sooner).
        self._gone: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._held)

    def __contains__(self, victim: object) -> bool:
        return victim in self._held

    def held(self) -> list[Bequest]:
        """Every bequest held, oldest first."""
        return sorted(self._held.values(), key=lambda b: (b.received, b.victim))

    def refusal(self, bequest: Bequest, *, pruned: Callable[[str], bool]) -> str | None:
        """Why this heir must refuse ``bequest`` beyond its own pause (None: it may take it).

        ``pruned`` tells whether an id is a victim of a known record.
        """
        if pruned(bequest.victim):
            return "the id is pruned already"
        if bequest.victim in self._held:
            # Held already (an earlier answer was lost): the owner must hear accepted, or it
            # would name a second heir.
            return None
        if (bequest.victim, *bequest.counts) in self._revoked:
            return "a copy of a bequest revoked since"
        if bequest.victim not in self._held and len(self._held) >= MAX_HELD:
            return f"holds {MAX_HELD} bequests already"
        return None

    def take(self, bequest: Bequest) -> Bequest | None:
        """Hold ``bequest`` (a repeated one replaces the earlier: same owner, later counts;
        a final one replaces a standing one, never the reverse); the one held before."""
        previous = self._held.get(bequest.victim)
        if previous is None or not bequest.standing or previous.standing:
            self._held[bequest.victim] = bequest
        return previous

    def revoke(self, victim: str, counts: tuple[int, int]) -> Bequest | None:
        """Forget the bequest of ``victim`` (the one dropped, if held), remembering that it
        was revoked so a late copy of that bequest is refused."""
        key = (victim, *counts)
        self._revoked[key] = None
        self._revoked.move_to_end(key)
        while len(self._revoked) > _REMEMBERED:
            self._revoked.popitem(last=False)
        return self._held.pop(victim, None)

    def watch(self, gone: Callable[[Bequest], bool], now: float) -> None:
        """Note, for every standing bequest, whether its owner is ``gone`` now: the clock
        of one starts when its owner is first seen gone and stops whenever it is not."""
        for bequest in self._held.values():
            if not bequest.standing or not gone(bequest):
                self._gone.pop(bequest.victim, None)
            else:
                self._gone.setdefault(bequest.victim, now)

    def due(
        self,
        now: float,
        prune_after: float,
        counts: Callable[[str], tuple[int, int]] | None = None,
    ) -> dict[str, tuple[int, int]]:
        """The bequests to prune now, oldest first: victim to counts. A final one once it
        is ``prune_after`` old, at its counts; a standing one once its owner has been gone
        for ``prune_after`` without a break (:meth:`watch`), at ``counts(victim)`` (this
        heir's entry for it; standing bequests are never due without it)."""
        due: dict[str, tuple[int, int]] = {}
        for b in self.held():
            if not b.standing:
                if now - b.received >= prune_after:
                    due[b.victim] = b.counts
            elif (
                counts is not None
                and b.victim in self._gone
                and now - self._gone[b.victim] >= prune_after
            ):
                due[b.victim] = counts(b.victim)
        return due

    def release(self) -> list[Bequest]:
        """Forget every standing bequest (this heir leaves; their owners name another);
        the ones dropped."""
        return self.drop([b.victim for b in self.held() if b.standing])

    def drop(self, victims: Collection[str]) -> list[Bequest]:
        """Forget the bequests of ``victims`` (pruned now); the ones dropped."""
        for victim in victims:
            self._gone.pop(victim, None)
        return [self._held.pop(v) for v in victims if v in self._held]


def heir_order(
    candidates: Mapping[str, bool], capable: Collection[str], rng: random.Random
) -> list[str]:
    """Whom a leaving node asks, in order: members alive (``candidates`` maps each member
    believed alive or suspect to whether it is suspect), not suspect, that speak pruning;
    shuffled so leaving nodes spread their bequests; at most MAX_ATTEMPTS."""
    order = sorted(a for a, suspect in candidates.items() if not suspect and a in capable)
    rng.shuffle(order)
    return order[:MAX_ATTEMPTS]


@dataclass(frozen=True, slots=True)
class Given:
    """A bequest this node made of one of its ids, as ``bequest.json`` keeps it.

    ``resumable``: the id is the one its data directory resumes after a clean shutdown, so a
    start asks the heir to revoke it; False once a start went on without the heir's answer
    (the id is then the heir's for good, and never collapsed by this node's lineage).
    ``standing``: named in advance (counts (0, 0)); a start asks no revoke for it (a resumed
    id is its heir's to prune only once this node is gone, and so is the id a new
    incarnation leaves behind). ``confirmed``: the heir answered ``accepted``; until then
    (an answer lost) the heir may hold it, so it is the only heir this id is offered to.
    """

    victim: str
    heir: str
    counts: tuple[int, int]
    resumable: bool = True
    standing: bool = False
    confirmed: bool = True


class Bequeathed:
    """What a node bequeathed (its ``bequest.json``), and the rules around it."""

    def __init__(self, given: Iterable[Given] = (), own: Iterable[str] = ()) -> None:
        self._given: dict[str, Given] = {g.victim: g for g in given}
        self._own: set[str] = set(own)

    def __len__(self) -> int:
        return len(self._given)

    def given(self) -> list[Given]:
        return sorted(self._given.values(), key=lambda g: g.victim)

    def kept(self) -> frozenset[str]:
        """Ids this node must never collapse by lineage: they are their heir's to prune."""
        return frozenset(self._given)

    def to_revoke(self) -> Given | None:
        """The bequest a start asks its heir to revoke (the resumable one), if any."""
        return next((g for g in self._given.values() if g.resumable and not g.standing), None)

    def get(self, victim: str) -> Given | None:
        return self._given.get(victim)

    def own(self) -> frozenset[str]:
        """Every id this data directory counted under (its incarnations), as recorded."""
        return frozenset(self._own)

    def claim(self, replica_id: str) -> bool:
        """Record that this data directory counts under ``replica_id``; whether it is new."""
        new = replica_id not in self._own
        self._own.add(replica_id)
        return new

    def record(self, given: Given) -> None:
        """Remember a bequest about to be sent (written before the send, see the README)."""
        self._given[given.victim] = given

    def forget(self, victim: str) -> None:
        """Drop a bequest: refused by every heir asked, revoked, or pruned."""
        self._given.pop(victim, None)

    def released(self, victim: str, heir: str) -> bool:
        """``heir`` says it no longer holds the standing bequest of ``victim`` (it deleted it
        durably first): forget it, so another heir can be named; whether it was ours."""
        given = self._given.get(victim)
        if given is None or not given.standing or given.heir != heir:
            return False
        del self._given[victim]
        return True

    def abandon(self, victim: str) -> None:
        """The heir did not answer a start's revoke: the id stays the heir's."""
        given = self._given.get(victim)
        if given is not None:
            self._given[victim] = replace(given, resumable=False)

    def settle(self, pruned: Callable[[str], bool]) -> bool:
        """Forget the bequests whose id a known record prunes; whether any went."""
        gone = [v for v in self._given if pruned(v)]
        for victim in gone:
            del self._given[victim]
        return bool(gone)


class Outcome(enum.Enum):
    """How a node with a resumable bequest starts."""

    #: The heir revoked it: resume the id from the data directory.
    RESUME = "resume"
    #: A record prunes it: resume, and the records move the node to the id's successor.
    ADOPT = "adopt"
    #: No (usable) answer: start a new incarnation; the id stays the heir's.
    NEW_INCARNATION = "new incarnation"


def standing_heirs(
    given: Given | None,
    candidates: Mapping[str, bool],
    capable: Collection[str],
    rng: random.Random,
) -> list[str]:
    """Whom a running node offers a standing bequest of its id now, in order, given what
    it gave of that id already (``given``): no one while an heir holds it; only that heir
    while its answer is outstanding (it may hold it: a second heir could prune it too);
    else as :func:`heir_order`."""
    if given is None:
        return heir_order(candidates, capable, rng)
    if given.standing and not given.confirmed and candidates.get(given.heir) is False:
        return [given.heir]
    return []


def after_revoke(answer: Answer | None, *, pruned: bool) -> Outcome:
    """What a start does after asking the heir to revoke: ``answer`` is the heir's (None:
    none within the wait), ``pruned`` whether a known record names the id by now."""
    if pruned:
        return Outcome.ADOPT  # whatever the heir said: the record is what counts
    if answer is Answer.REVOKED:
        return Outcome.RESUME
    # PRUNED without the record is useless (it comes by anti-entropy, but the node must
    # not write under the id before); ACCEPTED or REFUSED answer no revoke.
    return Outcome.NEW_INCARNATION

"""A grow-only counter (G-Counter): one monotone total per replica, merged by maximum."""

from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING

from dcounter_crdt._errors import CountOverflowError, InvalidAmountError
from dcounter_crdt._state import MAX_COUNT, _canonical, _check_replica_id

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["GCounter"]


class GCounter:
    """A mutable grow-only counter; the building block of :class:`~dcounter_crdt.PNCounter`.

    Totals are kept in canonical form (no zero entries) and within ``0..MAX_COUNT``.
    Not thread-safe: callers serialize access.
    """

    __slots__ = ("_counts",)

    def __init__(self, counts: Mapping[str, int] | None = None) -> None:
        self._counts: dict[str, int] = {} if counts is None else _canonical(counts, "counts")

    @property
    def value(self) -> int:
        """The sum of every replica's total."""
        return sum(self._counts.values())

    def count(self, replica_id: str) -> int:
        """One replica's total (0 when it has none)."""
        return self._counts.get(replica_id, 0)

    def counts(self) -> Mapping[str, int]:
        """A read-only copy of the totals per replica."""
        return MappingProxyType(dict(self._counts))

    def increment(self, replica_id: str, by: int = 1) -> int:
        """Add ``by`` (an int >= 1) to ``replica_id``'s total and return the new total."""
        _check_replica_id(replica_id)
        by = _check_amount(by)
        total = self._counts.get(replica_id, 0) + by
        if total > MAX_COUNT:
            raise CountOverflowError(
                f"incrementing {replica_id!r} by {by} would exceed the maximum count {MAX_COUNT}"
            )
        self._counts[replica_id] = total
        return total

    def merge(self, other: GCounter | Mapping[str, int]) -> bool:
        """Raise every total to at least ``other``'s; True if any total changed."""
        theirs = other._counts if isinstance(other, GCounter) else _canonical(other, "other")
        return _raise_to(self._counts, theirs)

    def __repr__(self) -> str:
        return f"GCounter({dict(sorted(self._counts.items()))!r})"


# The two trusted merges below take totals that are already valid (a CounterState's, say):
# they are the hot paths of every merge, so they skip validation.


def _raise_to(mine: dict[str, int], theirs: Mapping[str, int]) -> bool:
    """Raise the totals of ``mine`` to ``theirs`` in place; True if any changed."""
    get = mine.get
    changed = False
    for replica_id, count in theirs.items():
        if count > get(replica_id, 0):
            mine[replica_id] = count
            changed = True
    return changed


def _raise_to_won(mine: dict[str, int], theirs: Mapping[str, int]) -> dict[str, int]:
    """Raise the totals of ``mine`` to ``theirs`` in place; return the entries that won."""
    get = mine.get
    won: dict[str, int] = {}
    for replica_id, count in theirs.items():
        if count > get(replica_id, 0):
            mine[replica_id] = count
            won[replica_id] = count
    return won


def _check_amount(by: object) -> int:
    """``by`` as a plain int if it is an int >= 1 (bool excluded), else InvalidAmountError."""
    if isinstance(by, bool) or not isinstance(by, int):
        raise InvalidAmountError(f"amount must be an int, not {type(by).__name__}")
    if by < 1:
        raise InvalidAmountError(f"amount must be at least 1, got {by}")
    return int(by)

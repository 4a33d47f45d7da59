"""Named counters in the node's database (issue 20): one row per (name, replica).

``named_counts(name, replica, inc, dec, checksum)`` holds both sides of one replica's count
under one name, as 20-digit strings like the default counter's ``counts`` table (see
:mod:`._storage_schema`). Staged changes carry only the side that changed, so the upsert
keeps each column's maximum in SQL and recomputes the row's CRC-32 with
:data:`CHECKSUM_FUNCTION`, a function registered on the connection: a row never goes
down, whatever order transactions land in, and the checksum always covers what is stored.

:class:`NamedCounts` is the event-loop side: the per-row maxima staged for the next
transaction, and the committed view the HTTP API shows while writes fail.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from dcounter_crdt import CounterMapState, CounterState, CRDTError
from dcounter_node._errors import CorruptStorageError
from dcounter_node._storage_schema import crc, decode_count, encode_count, mismatch

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Iterator, Mapping
    from pathlib import Path

__all__ = [
    "CHECKSUM_FUNCTION",
    "NamedCounts",
    "load_named",
    "named_checksum",
    "register_functions",
    "upsert_named",
]

#: The SQL function the upsert computes a merged row's checksum with.
CHECKSUM_FUNCTION: Final = "dcounter_named_crc"

_UPSERT: Final = (
    "INSERT INTO named_counts (name, replica, inc, dec, checksum) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (name, replica) DO UPDATE SET"
    " inc = max(inc, excluded.inc), dec = max(dec, excluded.dec),"
    f" checksum = {CHECKSUM_FUNCTION}(name, replica,"
    " max(inc, excluded.inc), max(dec, excluded.dec))"
    " WHERE excluded.inc > inc OR excluded.dec > dec"
)

_Row = tuple[str, str, str, str, int]


def named_checksum(name: str, replica: str, inc: str, dec: str) -> int:
    """The CRC-32 of one stored row's fields."""
    return crc(name, replica, inc, dec)


def register_functions(conn: sqlite3.Connection) -> None:
    """Make :data:`CHECKSUM_FUNCTION` available to ``conn``'s statements."""
    conn.create_function(CHECKSUM_FUNCTION, 4, named_checksum, deterministic=True)


class NamedCounts:
    """Per (name, replica), the largest increments and decrements seen; mutable."""

    __slots__ = ("_counts",)

    def __init__(self) -> None:
        # name -> (increments by replica, decrements by replica)
        self._counts: dict[str, tuple[dict[str, int], dict[str, int]]] = {}

    def __bool__(self) -> bool:
        return bool(self._counts)

    def __len__(self) -> int:
        """How many rows writing these takes."""
        return sum(len(inc.keys() | dec.keys()) for inc, dec in self._counts.values())

    def stage(self, changes: CounterMapState) -> None:
        """Raise each entry to ``changes``' where that is higher."""
        for name, state in changes.counters.items():
            self._raise(name, state.increments, state.decrements)

    def absorb(self, other: NamedCounts) -> None:
        """Raise each entry to ``other``'s where that is higher."""
        for name, (inc, dec) in other._counts.items():
            self._raise(name, inc, dec)

    def _raise(self, name: str, inc: Mapping[str, int], dec: Mapping[str, int]) -> None:
        held = self._counts.get(name)
        if held is None:
            held = self._counts[name] = ({}, {})
        for target, counts in ((held[0], inc), (held[1], dec)):
            get = target.get
            for replica, count in counts.items():
                if count > get(replica, 0):
                    target[replica] = count

    def counter(self, name: str) -> CounterState:
        """One name's counts (empty when none are held)."""
        held = self._counts.get(name)
        return CounterState.empty() if held is None else CounterState.from_maps(*held)

    def rows(self) -> Iterator[_Row]:
        """The rows to upsert: a side not held here is written as 0 (the upsert keeps the max)."""
        zero = encode_count(0)
        for name, (inc, dec) in self._counts.items():
            for replica in inc.keys() | dec.keys():
                i = encode_count(inc[replica]) if replica in inc else zero
                d = encode_count(dec[replica]) if replica in dec else zero
                yield name, replica, i, d, named_checksum(name, replica, i, d)


def upsert_named(conn: sqlite3.Connection, counts: NamedCounts) -> None:
    """Write ``counts``, each column kept as the max of stored and new (in a transaction)."""
    conn.executemany(_UPSERT, counts.rows())


def load_named(conn: sqlite3.Connection, path: Path) -> CounterMapState:
    """Every named counter stored, each row's checksum verified (CorruptStorageError if not)."""
    counts: dict[str, tuple[dict[str, int], dict[str, int]]] = {}
    rows = conn.execute("SELECT name, replica, inc, dec, checksum FROM named_counts")
    for name, replica, inc, dec, checksum in rows:
        where = f"the count of {name!r} by replica {replica!r}"
        if not isinstance(name, str) or not isinstance(replica, str):
            raise CorruptStorageError(f"{path}: {where} is not keyed by text")
        try:
            increments, decrements = decode_count(inc), decode_count(dec)
        except ValueError as exc:
            raise CorruptStorageError(f"{path}: {where}: {exc}") from exc
        if checksum != named_checksum(name, replica, inc, dec):
            raise mismatch(path, where)
        held = counts.setdefault(name, ({}, {}))
        if increments:
            held[0][replica] = increments
        if decrements:
            held[1][replica] = decrements
    try:
        return CounterMapState(
            {name: CounterState.from_maps(inc, dec) for name, (inc, dec) in counts.items()}
        )
    except CRDTError as exc:
        raise CorruptStorageError(f"{path}: the stored named counts are invalid: {exc}") from exc

"""The SQLite schema of a node's state: tables, row checksums, validation and migration.

Layout (schema version 2)::

    meta(key, value, checksum)                  schema_version, replica_id, database_id,
                                                created, node_address (when known) and
                                                clean_shutdown (only while shut down cleanly)
    counts(replica, kind 'inc'|'dec', value, checksum)
    idempotency(key, op, amount, value, created, checksum)

A count is stored as exactly 20 decimal digits, zero-padded. SQLite's INTEGER is a signed
64-bit number and cannot hold every uint64, while fixed-width digit strings hold all of
them, stay readable in the ``sqlite3`` shell and order like the numbers they spell, so the
upsert keeps the larger count without converting anything.

Every row carries a CRC-32 of its fields, verified when the database is loaded: a flipped
digit (a bad sector the disk did not notice, a hand edit) is refused instead of being served
and gossiped to every peer as a legitimate count.

Schema version 1 (dcounter-node 0.x before issue 12) had no checksums, no database id, no
clean-shutdown marker and no idempotency table; :func:`migrate` upgrades it in one
transaction. Every schema keeps the ``meta`` table and its ``schema_version`` key, so an
older dcounter can always tell that it is too old.

Everything here runs on the store's worker thread; nothing touches the event loop.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from dcounter_crdt import MAX_COUNT, CounterState, CRDTError
from dcounter_node._errors import CorruptStorageError, UnsupportedSchemaError

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Iterable
    from pathlib import Path

__all__ = [
    "APPLICATION_ID",
    "SCHEMA_VERSION",
    "Loaded",
    "StoredKey",
    "create_schema",
    "decode_count",
    "encode_count",
    "key_row",
    "load",
    "meta_row",
    "migrate",
]

#: The schema this code writes, and the newest one it can read.
SCHEMA_VERSION: Final = 2
APPLICATION_ID: Final = 0x64436E74  # "dCnt"
_COUNT_WIDTH: Final = 20  # len(str(MAX_COUNT))
_OPS: Final = ("increment", "decrement")

_COUNT_CHECK: Final = f"CHECK (length(value) = {_COUNT_WIDTH} AND value NOT GLOB '*[^0-9]*')"
_TABLES: Final = (
    "CREATE TABLE meta ("
    " key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL, checksum INTEGER NOT NULL"
    ") WITHOUT ROWID",
    "CREATE TABLE counts ("
    " replica TEXT NOT NULL CHECK (length(replica) > 0),"
    " kind TEXT NOT NULL CHECK (kind IN ('inc', 'dec')),"
    f" value TEXT NOT NULL {_COUNT_CHECK},"
    " checksum INTEGER NOT NULL,"
    " PRIMARY KEY (replica, kind)"
    ") WITHOUT ROWID",
    "CREATE TABLE idempotency ("
    " key TEXT PRIMARY KEY NOT NULL,"
    " op TEXT NOT NULL CHECK (op IN ('increment', 'decrement')),"
    " amount TEXT NOT NULL,"
    " value TEXT NOT NULL,"
    " created REAL NOT NULL,"
    " checksum INTEGER NOT NULL"
    ") WITHOUT ROWID",
    "CREATE INDEX idempotency_created ON idempotency (created)",
)
#: Keeps the larger count: digit strings of one width order like their numbers.
UPSERT_COUNT: Final = (
    "INSERT INTO counts (replica, kind, value, checksum) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (replica, kind) DO UPDATE SET value = excluded.value,"
    " checksum = excluded.checksum WHERE excluded.value > counts.value"
)
INSERT_KEY: Final = (
    "INSERT OR REPLACE INTO idempotency (key, op, amount, value, created, checksum)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)
UPSERT_META: Final = "INSERT OR REPLACE INTO meta (key, value, checksum) VALUES (?, ?, ?)"


@dataclass(frozen=True, slots=True)
class StoredKey:
    """An Idempotency-Key and the answer its write got."""

    key: str
    op: str
    amount: int
    value: int
    #: Wall-clock time (``time.time()``) the key was first seen.
    created: float


@dataclass(frozen=True, slots=True)
class Loaded:
    """A validated database: its metadata, counts and idempotency keys."""

    version: int
    meta: dict[str, str]
    state: CounterState
    keys: list[StoredKey]

    @property
    def replica_id(self) -> str:
        return self.meta["replica_id"]

    @property
    def clean_shutdown(self) -> bool:
        return self.meta.get("clean_shutdown") == self.meta["replica_id"]


def _crc(*fields: str) -> int:
    return zlib.crc32("\x1f".join(fields).encode("utf-8", "surrogatepass"))


def encode_count(count: int) -> str:
    return f"{count:0{_COUNT_WIDTH}d}"


def decode_count(value: object) -> int:
    """The count spelled by a stored value; ValueError unless it is 20 digits <= MAX_COUNT."""
    if not (
        isinstance(value, str)
        and len(value) == _COUNT_WIDTH
        and value.isascii()
        and value.isdigit()
    ):
        raise ValueError(f"expected {_COUNT_WIDTH} decimal digits, found {value!r}")
    count = int(value)
    if count > MAX_COUNT:
        raise ValueError(f"{count} exceeds the maximum count {MAX_COUNT}")
    return count


def meta_row(key: str, value: str) -> tuple[str, str, int]:
    return key, value, _crc(key, value)


def count_row(replica: str, kind: str, count: int) -> tuple[str, str, str, int]:
    value = encode_count(count)
    return replica, kind, value, _crc(replica, kind, value)


def key_row(key: StoredKey) -> tuple[str, str, str, str, float, int]:
    amount, value, created = str(key.amount), str(key.value), float(key.created)
    return (
        key.key,
        key.op,
        amount,
        value,
        created,
        _crc(key.key, key.op, amount, value, repr(created)),
    )


def create_schema(conn: sqlite3.Connection, meta: dict[str, str]) -> None:
    """Create every table of a new database and fill ``meta`` (inside a transaction)."""
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    for statement in _TABLES:
        conn.execute(statement)
    conn.executemany(UPSERT_META, [meta_row(k, v) for k, v in meta.items()])


def migrate(conn: sqlite3.Connection, loaded: Loaded, database_id: str) -> Loaded:
    """Upgrade a version 1 database to the current schema (inside a transaction)."""
    meta = {**loaded.meta, "schema_version": str(SCHEMA_VERSION), "database_id": database_id}
    conn.execute("DROP TABLE meta")
    conn.execute("DROP TABLE counts")
    for statement in _TABLES:
        conn.execute(statement)
    conn.executemany(UPSERT_META, [meta_row(k, v) for k, v in meta.items()])
    rows = [count_row(r, "inc", c) for r, c in loaded.state.increments.items()]
    rows += [count_row(r, "dec", c) for r, c in loaded.state.decrements.items()]
    conn.executemany(UPSERT_COUNT, rows)
    return Loaded(SCHEMA_VERSION, meta, loaded.state, [])


def load(conn: sqlite3.Connection, path: Path) -> Loaded | None:
    """The validated contents, None for a database with nothing in it, or a StorageError."""
    problems = [row[0] for row in conn.execute("PRAGMA quick_check").fetchall()]
    if problems != ["ok"]:
        raise CorruptStorageError(
            f"{path}: integrity check failed: {'; '.join(map(str, problems[:5]))}"
        )
    (application_id,) = conn.execute("PRAGMA application_id").fetchone()
    tables = {
        name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    }
    if not tables and application_id in (0, APPLICATION_ID):
        # Never bound (the schema is created in one transaction): nothing to lose.
        return None
    if application_id != APPLICATION_ID:
        raise CorruptStorageError(
            f"{path}: not a dcounter database (application_id {application_id:#x}, "
            f"tables {', '.join(sorted(tables)) or 'none'})"
        )
    for table in ("meta", "counts"):
        if table not in tables:
            raise CorruptStorageError(f"{path}: the {table} table is missing")
    version = _schema_version(conn, path)
    checked = version >= 2
    meta = _load_meta(conn, path, checked=checked)
    if not meta.get("replica_id"):
        raise CorruptStorageError(f"{path}: meta replica_id is {meta.get('replica_id')!r}")
    state = _load_counts(conn, path, checked=checked)
    keys = _load_keys(conn, path) if checked else []
    return Loaded(version, meta, state, keys)


def _schema_version(conn: sqlite3.Connection, path: Path) -> int:
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    text = row[0] if row is not None else None
    if not isinstance(text, str) or not text.isascii() or not text.isdigit() or int(text) < 1:
        raise CorruptStorageError(f"{path}: meta schema_version is {text!r}")
    version = int(text)
    if version > SCHEMA_VERSION:
        raise UnsupportedSchemaError(
            f"{path}: schema version {version} is newer than this dcounter supports "
            f"({SCHEMA_VERSION}); upgrade dcounter to use this database"
        )
    return version


def _mismatch(path: Path, what: str) -> CorruptStorageError:
    return CorruptStorageError(
        f"{path}: checksum mismatch in {what}: the stored row was altered or damaged"
    )


def _load_meta(conn: sqlite3.Connection, path: Path, *, checked: bool) -> dict[str, str]:
    columns = "key, value, checksum" if checked else "key, value, NULL"
    meta: dict[str, str] = {}
    for key, value, checksum in conn.execute(f"SELECT {columns} FROM meta"):
        if not isinstance(key, str) or not isinstance(value, str):
            raise CorruptStorageError(f"{path}: meta entry {key!r} = {value!r} is not text")
        if checked and checksum != _crc(key, value):
            raise _mismatch(path, f"meta {key!r}")
        meta[key] = value
    return meta


def _load_counts(conn: sqlite3.Connection, path: Path, *, checked: bool) -> CounterState:
    columns = "replica, kind, value, checksum" if checked else "replica, kind, value, NULL"
    maps: dict[str, dict[str, int]] = {"inc": {}, "dec": {}}
    for replica, kind, value, checksum in conn.execute(f"SELECT {columns} FROM counts"):
        if kind not in maps:
            raise CorruptStorageError(f"{path}: count of {replica!r} has kind {kind!r}")
        try:
            count = decode_count(value)
        except ValueError as exc:
            raise CorruptStorageError(
                f"{path}: {kind} count of replica {replica!r}: {exc}"
            ) from exc
        if checked and checksum != _crc(str(replica), kind, value):
            raise _mismatch(path, f"the {kind} count of replica {replica!r}")
        maps[kind][replica] = count
    try:
        return CounterState.from_maps(maps["inc"], maps["dec"])
    except CRDTError as exc:
        raise CorruptStorageError(f"{path}: the stored counts are invalid: {exc}") from exc


def _load_keys(conn: sqlite3.Connection, path: Path) -> list[StoredKey]:
    keys: list[StoredKey] = []
    rows: Iterable[tuple[object, ...]] = conn.execute(
        "SELECT key, op, amount, value, created, checksum FROM idempotency ORDER BY created"
    )
    for key, op, amount, value, created, checksum in rows:
        try:
            stored = StoredKey(
                _text(key),
                _text(op),
                int(_text(amount)),
                int(_text(value)),
                _real(created),
            )
        except (TypeError, ValueError) as exc:
            raise CorruptStorageError(f"{path}: idempotency key {key!r}: {exc}") from exc
        if stored.op not in _OPS or checksum != key_row(stored)[-1]:
            raise _mismatch(path, f"idempotency key {key!r}")
        keys.append(stored)
    return keys


def _real(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, found {value!r}")
    return float(value)


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected text, found {value!r}")
    return value


def upsert_counts(conn: sqlite3.Connection, inc: dict[str, int], dec: dict[str, int]) -> None:
    rows = [count_row(r, "inc", c) for r, c in inc.items()]
    rows += [count_row(r, "dec", c) for r, c in dec.items()]
    conn.executemany(UPSERT_COUNT, rows)

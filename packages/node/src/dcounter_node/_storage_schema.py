"""The SQLite schema of a node's state: tables, row checksums, validation and migration.

Layout (schema version 3)::

    meta(key, value, checksum)                  schema_version, replica_id, database_id,
                                                created, node_address (when known) and
                                                clean_shutdown (only while shut down cleanly)
    counts(replica, kind 'inc'|'dec', value, checksum)      the default counter
    named_counts(name, replica, inc, dec, checksum)         every other counter (issue 20)
    idempotency(key, op, amount, value, created, checksum, counter)

The default counter keeps the ``counts`` table it always had: a database of schema 2 is
upgraded by adding a table and a column, without rewriting a row, and the default counter's
write path (one row per commit) stays what it was. Named counters have one row per (name,
replica) holding both sides; see :mod:`._storage_named`.

A count is stored as exactly 20 decimal digits, zero-padded. SQLite's INTEGER is a signed
64-bit number and cannot hold every uint64, while fixed-width digit strings hold all of
them, stay readable in the ``sqlite3`` shell and order like the numbers they spell, so the
upsert keeps the larger count without converting anything.

Every row carries a CRC-32 of its fields, verified when the database is loaded: a flipped
digit (a bad sector the disk did not notice, a hand edit) is refused instead of being served
and gossiped to every peer as a legitimate count.

Schema version 1 (dcounter-node 0.x before issue 12) had no checksums, no database id, no
clean-shutdown marker and no idempotency table; :func:`migrate` upgrades it in one
transaction. Schema version 2 (before issue 20) had no named counters and no ``counter``
column in ``idempotency``; :func:`migrate` adds them in place. Every schema keeps the
``meta`` table and its ``schema_version`` key, so an older dcounter can always tell that it
is too old.

Everything here runs on the store's worker thread; nothing touches the event loop.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from dcounter_crdt import (
    DEFAULT_KEY,
    MAX_COUNT,
    CounterMapState,
    CounterState,
    CRDTError,
)
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
    "crc",
    "create_schema",
    "decode_count",
    "encode_count",
    "key_row",
    "load",
    "meta_row",
    "migrate",
    "mismatch",
]

#: The schema this code writes, and the newest one it can read.
SCHEMA_VERSION: Final = 3
APPLICATION_ID: Final = 0x64436E74  # "dCnt"
_COUNT_WIDTH: Final = 20  # len(str(MAX_COUNT))
_OPS: Final = ("increment", "decrement")


def _count_check(column: str) -> str:
    return f"CHECK (length({column}) = {_COUNT_WIDTH} AND {column} NOT GLOB '*[^0-9]*')"


_TABLES: Final = (
    "CREATE TABLE meta ("
    " key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL, checksum INTEGER NOT NULL"
    ") WITHOUT ROWID",
    "CREATE TABLE counts ("
    " replica TEXT NOT NULL CHECK (length(replica) > 0),"
    " kind TEXT NOT NULL CHECK (kind IN ('inc', 'dec')),"
    f" value TEXT NOT NULL {_count_check('value')},"
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
#: What schema 3 added to schema 2 (the fresh tables above are schema 2's).
_SCHEMA_3: Final = (
    "CREATE TABLE named_counts ("
    " name TEXT NOT NULL CHECK (length(name) > 0),"
    " replica TEXT NOT NULL CHECK (length(replica) > 0),"
    f" inc TEXT NOT NULL {_count_check('inc')},"
    f" dec TEXT NOT NULL {_count_check('dec')},"
    " checksum INTEGER NOT NULL,"
    " PRIMARY KEY (name, replica)"
    ") WITHOUT ROWID",
    # Idempotency-Keys of named counters; the default counter's rows keep their checksums.
    f"ALTER TABLE idempotency ADD COLUMN counter TEXT NOT NULL DEFAULT '{DEFAULT_KEY}'"
    " CHECK (length(counter) > 0)",
)
#: Keeps the larger count: digit strings of one width order like their numbers.
UPSERT_COUNT: Final = (
    "INSERT INTO counts (replica, kind, value, checksum) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (replica, kind) DO UPDATE SET value = excluded.value,"
    " checksum = excluded.checksum WHERE excluded.value > counts.value"
)
INSERT_KEY: Final = (
    "INSERT OR REPLACE INTO idempotency (key, op, amount, value, created, checksum, counter)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
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
    #: The name of the counter it counted.
    counter: str = DEFAULT_KEY


@dataclass(frozen=True, slots=True)
class Loaded:
    """A validated database: its metadata, counts and idempotency keys."""

    version: int
    meta: dict[str, str]
    state: CounterState
    keys: list[StoredKey]
    #: The named counters (:func:`._storage_named.load_named`, loaded after this).
    named: CounterMapState = field(default_factory=CounterMapState.empty)

    @property
    def replica_id(self) -> str:
        return self.meta["replica_id"]

    @property
    def clean_shutdown(self) -> bool:
        return self.meta.get("clean_shutdown") == self.meta["replica_id"]


def crc(*fields: str) -> int:
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
    return key, value, crc(key, value)


def count_row(replica: str, kind: str, count: int) -> tuple[str, str, str, int]:
    value = encode_count(count)
    return replica, kind, value, crc(replica, kind, value)


def key_row(key: StoredKey) -> tuple[str, str, str, str, float, int, str]:
    amount, value, created = str(key.amount), str(key.value), float(key.created)
    return (key.key, key.op, amount, value, created, _key_checksum(key), key.counter)


def _key_checksum(key: StoredKey) -> int:
    fields = [key.key, key.op, str(key.amount), str(key.value), repr(float(key.created))]
    if key.counter != DEFAULT_KEY:
        # Only named counters' keys cover the name: schema 2's rows keep their checksums.
        fields.append(key.counter)
    return crc(*fields)


def create_schema(conn: sqlite3.Connection, meta: dict[str, str]) -> None:
    """Create every table of a new database and fill ``meta`` (inside a transaction)."""
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    for statement in (*_TABLES, *_SCHEMA_3):
        conn.execute(statement)
    conn.executemany(UPSERT_META, [meta_row(k, v) for k, v in meta.items()])


def migrate(conn: sqlite3.Connection, loaded: Loaded, database_id: str) -> Loaded:
    """Upgrade a version 1 or 2 database to the current schema (inside a transaction).

    Version 1 is rewritten (its rows had no checksums) and gets ``database_id``; version 2
    only gains the named counters' table and the idempotency keys' ``counter`` column.
    """
    meta = {**loaded.meta, "schema_version": str(SCHEMA_VERSION)}
    if loaded.version == 1:
        meta["database_id"] = database_id
        conn.execute("DROP TABLE meta")
        conn.execute("DROP TABLE counts")
        for statement in _TABLES:
            conn.execute(statement)
        rows = [count_row(r, "inc", c) for r, c in loaded.state.increments.items()]
        rows += [count_row(r, "dec", c) for r, c in loaded.state.decrements.items()]
        conn.executemany(UPSERT_COUNT, rows)
    for statement in _SCHEMA_3:
        conn.execute(statement)
    conn.executemany(UPSERT_META, [meta_row(k, v) for k, v in meta.items()])
    return Loaded(SCHEMA_VERSION, meta, loaded.state, loaded.keys, loaded.named)


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
    version = _schema_version(conn, path)
    required = ("meta", "counts", "named_counts") if version >= 3 else ("meta", "counts")
    for table in required:
        if table not in tables:
            raise CorruptStorageError(f"{path}: the {table} table is missing")
    checked = version >= 2
    meta = _load_meta(conn, path, checked=checked)
    if not meta.get("replica_id"):
        raise CorruptStorageError(f"{path}: meta replica_id is {meta.get('replica_id')!r}")
    state = _load_counts(conn, path, checked=checked)
    keys = _load_keys(conn, path, version) if checked else []
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


def mismatch(path: Path, what: str) -> CorruptStorageError:
    return CorruptStorageError(
        f"{path}: checksum mismatch in {what}: the stored row was altered or damaged"
    )


def _load_meta(conn: sqlite3.Connection, path: Path, *, checked: bool) -> dict[str, str]:
    columns = "key, value, checksum" if checked else "key, value, NULL"
    meta: dict[str, str] = {}
    for key, value, checksum in conn.execute(f"SELECT {columns} FROM meta"):
        if not isinstance(key, str) or not isinstance(value, str):
            raise CorruptStorageError(f"{path}: meta entry {key!r} = {value!r} is not text")
        if checked and checksum != crc(key, value):
            raise mismatch(path, f"meta {key!r}")
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
        if checked and checksum != crc(str(replica), kind, value):
            raise mismatch(path, f"the {kind} count of replica {replica!r}")
        maps[kind][replica] = count
    try:
        return CounterState.from_maps(maps["inc"], maps["dec"])
    except CRDTError as exc:
        raise CorruptStorageError(f"{path}: the stored counts are invalid: {exc}") from exc


def _load_keys(conn: sqlite3.Connection, path: Path, version: int) -> list[StoredKey]:
    keys: list[StoredKey] = []
    counter = "counter" if version >= 3 else f"'{DEFAULT_KEY}'"
    rows: Iterable[tuple[object, ...]] = conn.execute(
        f"SELECT key, op, amount, value, created, checksum, {counter} FROM idempotency"
        " ORDER BY created"
    )
    for key, op, amount, value, created, checksum, name in rows:
        try:
            stored = StoredKey(
                _text(key),
                _text(op),
                int(_text(amount)),
                int(_text(value)),
                _real(created),
                _text(name),
            )
        except (TypeError, ValueError) as exc:
            raise CorruptStorageError(f"{path}: idempotency key {key!r}: {exc}") from exc
        if stored.op not in _OPS or checksum != _key_checksum(stored):
            raise mismatch(path, f"idempotency key {key!r}")
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

"""Named counters in the database (issue 20): rows per (name, replica), schema 3."""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from typing import TYPE_CHECKING, Any

import pytest

from dcounter_crdt import CounterMapState, CounterState
from dcounter_node import Node, NodeConfig
from dcounter_node._errors import CorruptStorageError, StorageError
from dcounter_node._storage_schema import APPLICATION_ID, SCHEMA_VERSION, StoredKey, crc
from dcounter_node._storage_sqlite import SQLiteStore
from dcounter_protocol import MemoryNetwork

from .test_durable_node import stored_state

if TYPE_CHECKING:
    from pathlib import Path

    from .conftest import RawDatabase

REPLICA = "127.0.0.1:7001#a1b2"


def named(**counters: tuple[dict[str, int], dict[str, int]]) -> CounterMapState:
    return CounterMapState(
        {name: CounterState.from_maps(inc, dec) for name, (inc, dec) in counters.items()}
    )


async def new_store(path: Path, **options: Any) -> SQLiteStore:
    store = SQLiteStore(path, **options)
    assert await store.open() is None
    await store.bind(REPLICA)
    return store


@pytest.mark.parametrize("durability", ["always", "batched"])
async def test_named_counts_survive_a_restart(db_path: Path, durability: str) -> None:
    store = await new_store(db_path, durability=durability)
    store.stage_named(named(pages=({REPLICA: 3}, {}), stock=({"peer#1": 5}, {REPLICA: 2})))
    await store.commit()
    await store.close()

    stored = await stored_state(db_path)
    assert stored.named == named(pages=({REPLICA: 3}, {}), stock=({"peer#1": 5}, {REPLICA: 2}))
    assert stored.state == CounterState.empty()  # the default counter is apart


async def test_each_row_keeps_the_largest_count_of_each_side(
    db_path: Path, raw_database: RawDatabase
) -> None:
    store = await new_store(db_path)
    store.stage_named(named(a=({REPLICA: 9}, {REPLICA: 1})))
    await store.commit()
    # A lower increment and a higher decrement, in later transactions.
    store.stage_named(named(a=({REPLICA: 4}, {})))
    await store.commit()
    store.stage_named(named(a=({}, {REPLICA: 6})))
    await store.commit()
    await store.close()

    assert (await stored_state(db_path)).named == named(a=({REPLICA: 9}, {REPLICA: 6}))
    with raw_database(db_path) as conn:
        rows = conn.execute("SELECT name, replica, inc, dec FROM named_counts").fetchall()
    assert rows == [("a", REPLICA, f"{9:020d}", f"{6:020d}")]


async def test_one_transaction_holds_named_and_default_counts_and_keys(db_path: Path) -> None:
    store = await new_store(db_path, durability="always")
    store.stage(CounterState.from_maps({REPLICA: 1}))
    store.stage_named(named(x=({REPLICA: 2}, {})))
    store.stage_key(StoredKey("k", "increment", 2, 2, time.time(), counter="x"))
    await store.commit()
    assert store.flushes == 1
    await store.close()

    stored = await stored_state(db_path)
    assert (stored.state.value, stored.named.value("x")) == (1, 2)


async def test_names_with_any_text_are_stored_exactly(db_path: Path) -> None:
    names = ["a/b", "with space", "ünïcödé", "emoji 🙂", "x" * 256, "%2F", "default2"]
    store = await new_store(db_path)
    store.stage_named(CounterMapState({n: CounterState.from_maps({REPLICA: 1}) for n in names}))
    await store.commit()
    await store.close()

    assert sorted((await stored_state(db_path)).named.counters) == sorted(names)


async def test_committed_counter_shows_only_committed_counts(db_path: Path) -> None:
    store = await new_store(db_path)
    store.stage_named(named(a=({REPLICA: 2}, {})))
    await store.commit()
    store.stage_named(named(a=({REPLICA: 5}, {})))
    assert store.committed_counter("a") == CounterState.from_maps({REPLICA: 2})
    assert store.committed_counter("never") == CounterState.empty()
    await store.commit()
    assert store.committed_counter("a") == CounterState.from_maps({REPLICA: 5})
    await store.close()


async def test_an_idempotency_key_of_a_named_counter_keeps_its_name(db_path: Path) -> None:
    store = await new_store(db_path)
    store.stage_key(StoredKey("k1", "decrement", 3, -3, time.time(), counter="stock/42"))
    await store.commit()
    await store.close()

    store = SQLiteStore(db_path)
    await store.open()
    assert [(k.key, k.counter) for k in store.stored_keys()] == [("k1", "stock/42")]
    await store.close()


# -- corruption ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        "UPDATE named_counts SET inc = '00000000000000000009'",
        "UPDATE named_counts SET dec = '00000000000000000001'",
        "UPDATE named_counts SET replica = 'other#1'",
        "UPDATE named_counts SET name = 'pagez'",
    ],
)
async def test_an_altered_named_row_fails_its_checksum(
    db_path: Path, raw_database: RawDatabase, change: str
) -> None:
    store = await new_store(db_path)
    store.stage_named(named(pages=({REPLICA: 3}, {})))
    await store.commit()
    await store.close()
    with raw_database(db_path) as conn:
        assert conn.execute(change).rowcount == 1

    with pytest.raises(CorruptStorageError, match="checksum mismatch in the count of"):
        await stored_state(db_path)


async def test_a_named_count_that_is_not_twenty_digits_is_refused(
    db_path: Path, raw_database: RawDatabase
) -> None:
    store = await new_store(db_path)
    store.stage_named(named(pages=({REPLICA: 3}, {})))
    await store.commit()
    await store.close()
    with raw_database(db_path, ignore_checks=True) as conn:
        conn.execute("UPDATE named_counts SET inc = '3'")

    # SQLite's own integrity check sees it first: the column's CHECK constraint.
    with pytest.raises(CorruptStorageError, match="CHECK constraint failed in named_counts"):
        await stored_state(db_path)


async def test_a_schema_3_database_without_its_named_table_is_refused(
    db_path: Path, raw_database: RawDatabase
) -> None:
    await (await new_store(db_path)).close()
    with raw_database(db_path) as conn:
        conn.execute("DROP TABLE named_counts")

    with pytest.raises(CorruptStorageError, match="the named_counts table is missing"):
        await stored_state(db_path)


# -- migration from schema 2 --------------------------------------------------------------


def write_schema_2(path: Path, *, key_created: float) -> None:
    """A database as dcounter wrote it before issue 20 (schema 2), closed cleanly."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(
            "CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL,"
            " checksum INTEGER NOT NULL) WITHOUT ROWID"
        )
        conn.execute(
            "CREATE TABLE counts (replica TEXT NOT NULL, kind TEXT NOT NULL, value TEXT NOT NULL,"
            " checksum INTEGER NOT NULL, PRIMARY KEY (replica, kind)) WITHOUT ROWID"
        )
        conn.execute(
            "CREATE TABLE idempotency (key TEXT PRIMARY KEY NOT NULL, op TEXT NOT NULL,"
            " amount TEXT NOT NULL, value TEXT NOT NULL, created REAL NOT NULL,"
            " checksum INTEGER NOT NULL) WITHOUT ROWID"
        )
        meta = {
            "schema_version": "2",
            "replica_id": REPLICA,
            "database_id": "0123456789abcdef",
            "created": "2026-01-01T00:00:00+00:00",
            "clean_shutdown": REPLICA,
        }
        conn.executemany(
            "INSERT INTO meta VALUES (?, ?, ?)", [(k, v, crc(k, v)) for k, v in meta.items()]
        )
        value = f"{7:020d}"
        conn.execute(
            "INSERT INTO counts VALUES (?, 'inc', ?, ?)",
            (REPLICA, value, crc(REPLICA, "inc", value)),
        )
        fields = ("order-1", "increment", "7", "7", repr(key_created))
        conn.execute(
            "INSERT INTO idempotency VALUES (?, ?, ?, ?, ?, ?)",
            (*fields[:4], key_created, crc(*fields)),
        )


async def test_a_schema_2_database_is_upgraded_in_place(
    db_path: Path, raw_database: RawDatabase
) -> None:
    created = time.time()
    write_schema_2(db_path, key_created=created)

    store = SQLiteStore(db_path)
    stored = await store.open()
    assert stored is not None
    assert (stored.replica_id, stored.clean_shutdown) == (REPLICA, True)
    assert stored.state == CounterState.from_maps({REPLICA: 7})
    assert stored.named == CounterMapState.empty()
    # The old key keeps its checksum and means the default counter.
    assert store.stored_keys() == [StoredKey("order-1", "increment", 7, 7, created)]
    store.stage_named(named(fresh=({REPLICA: 1}, {})))
    await store.commit()
    await store.close()

    with raw_database(db_path) as conn:
        version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        database_id = conn.execute("SELECT value FROM meta WHERE key = 'database_id'").fetchone()
    assert version == (str(SCHEMA_VERSION),)
    assert database_id == ("0123456789abcdef",)  # an upgrade, not a new database
    again = await stored_state(db_path)
    assert (again.state.value, again.named) == (7, named(fresh=({REPLICA: 1}, {})))


# -- the node -----------------------------------------------------------------------------


def memory_node(network: MemoryNetwork, store: SQLiteStore, **config: Any) -> Node:
    return Node(network.transport("n1:1"), NodeConfig(**config), store=store)


async def test_a_node_commits_named_writes_and_restarts_with_them(db_path: Path) -> None:
    network = MemoryNetwork()
    async with memory_node(network, SQLiteStore(db_path, durability="always")) as node:
        node.counters.increment("pages/home", 5)
        node.counters.decrement("stock", 2)
        await node.commit()
        replica = node.replica_id
    stored = await stored_state(db_path)
    assert stored.named == named(**{"pages/home": ({replica: 5}, {}), "stock": ({}, {replica: 2})})

    async with memory_node(network, SQLiteStore(db_path)) as node:
        assert node.replica_id == replica
        assert (node.counters.value("pages/home"), node.counters.value("stock")) == (5, -2)
        node.counters.increment("pages/home")
        assert node.counters.value("pages/home") == 6


async def test_a_node_refuses_to_start_when_stored_names_pass_its_key_limit(
    db_path: Path,
) -> None:
    network = MemoryNetwork()
    async with memory_node(network, SQLiteStore(db_path)) as node:
        for name in ("a", "b", "c"):
            node.counters.increment(name)
    with pytest.raises(StorageError, match="do not fit this node's key limits"):
        async with memory_node(network, SQLiteStore(db_path), max_keys=2):
            pass

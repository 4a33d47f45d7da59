"""Schema 2: migration from schema 1, row checksums, identity, incarnations, durable keys."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from contextlib import closing
from typing import TYPE_CHECKING, Any

import pytest

from dcounter_crdt import CounterState
from dcounter_node._errors import CorruptStorageError
from dcounter_node._storage import StoredState
from dcounter_node._storage_schema import APPLICATION_ID, SCHEMA_VERSION, StoredKey
from dcounter_node._storage_sqlite import SQLiteStore

if TYPE_CHECKING:
    from pathlib import Path

    from .conftest import RawDatabase

REPLICA = "127.0.0.1:7001#a1b2"
ADDRESS = "127.0.0.1:7001"


def counts(inc: dict[str, int], dec: dict[str, int] | None = None) -> CounterState:
    return CounterState.from_maps(inc, dec)


def write_schema_1(path: Path) -> None:
    """A database as dcounter wrote it before schema 2, closed cleanly."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID")
        conn.execute(
            "CREATE TABLE counts (replica TEXT, kind TEXT, value TEXT,"
            " PRIMARY KEY (replica, kind)) WITHOUT ROWID"
        )
        meta = {"schema_version": "1", "replica_id": REPLICA, "created": "2026-01-01T00:00:00"}
        conn.executemany(
            "INSERT INTO meta VALUES (?, ?)", [*meta.items(), ("node_address", ADDRESS)]
        )
        conn.executemany(
            "INSERT INTO counts VALUES (?, ?, ?)",
            [(REPLICA, "inc", f"{7:020d}"), ("peer#1", "dec", f"{2**64 - 1:020d}")],
        )


def replace_file(target: Path, source: Path) -> None:
    target.write_bytes(source.read_bytes())


async def open_and_close(path: Path, **options: Any) -> StoredState | None:
    store = SQLiteStore(path, **options)
    try:
        return await store.open()
    finally:
        await store.close()


async def new_store(path: Path, **options: Any) -> SQLiteStore:
    store = SQLiteStore(path, **options)
    assert await store.open() is None
    await store.bind(REPLICA)
    return store


# -- migration --------------------------------------------------------------------------


async def test_a_cleanly_closed_schema_1_database_is_upgraded_in_place(
    db_path: Path, raw_database: RawDatabase
) -> None:
    write_schema_1(db_path)
    expected = counts({REPLICA: 7}, {"peer#1": 2**64 - 1})

    assert await open_and_close(db_path, node_address=ADDRESS) == StoredState(REPLICA, expected)
    with raw_database(db_path) as conn:
        version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        assert version == (str(SCHEMA_VERSION),)
        assert conn.execute("SELECT count(*) FROM counts WHERE checksum IS NULL").fetchone() == (0,)
    assert db_path.with_name("state.identity.json").exists()
    # Once upgraded it opens like any schema 2 database.
    assert await open_and_close(db_path) == StoredState(REPLICA, expected)


async def test_a_schema_1_database_with_a_log_left_behind_is_an_unclean_shutdown(
    db_path: Path,
) -> None:
    write_schema_1(db_path)
    db_path.with_name(db_path.name + "-wal").write_bytes(b"")
    stored = await open_and_close(db_path)
    assert stored is not None
    assert (stored.replica_id, stored.clean_shutdown) == (REPLICA, False)


# -- checksums and identity -------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "change", "message"),
    [
        (
            "meta",
            "UPDATE meta SET value = value || 'x' WHERE key = 'replica_id'",
            "meta 'replica_id'",
        ),
        ("counts", "UPDATE counts SET value = '00000000000000000009'", "the inc count of replica"),
        ("idempotency", "UPDATE idempotency SET value = '12'", "idempotency key 'k'"),
    ],
)
async def test_an_altered_row_fails_its_checksum(
    db_path: Path, raw_database: RawDatabase, table: str, change: str, message: str
) -> None:
    store = await new_store(db_path)
    store.stage(counts({REPLICA: 3}))
    store.stage_key(StoredKey("k", "increment", 3, 3, time.time()))
    await store.commit()
    await store.close()
    with raw_database(db_path) as conn:
        assert conn.execute(change).rowcount == 1

    with pytest.raises(CorruptStorageError, match=f"checksum mismatch in {message}"):
        await open_and_close(db_path)


async def test_a_replaced_database_is_refused(db_path: Path, tmp_path: Path) -> None:
    await (await new_store(db_path)).close()
    other = tmp_path / "other" / db_path.name
    await (await new_store(other)).close()
    replace_file(db_path, other)

    with pytest.raises(CorruptStorageError, match="it was replaced"):
        await open_and_close(db_path)


async def test_a_damaged_identity_file_is_refused(db_path: Path) -> None:
    await (await new_store(db_path)).close()
    identity = db_path.with_name("state.identity.json")
    document = json.loads(identity.read_text())
    assert document["database"] == db_path.name
    identity.write_text("{")

    with pytest.raises(CorruptStorageError, match="identity file is damaged"):
        await open_and_close(db_path)


# -- incarnations -----------------------------------------------------------------------


async def test_a_new_incarnation_keeps_the_old_counts_and_resumes_cleanly_after(
    db_path: Path,
) -> None:
    store = await new_store(db_path)
    store.stage(counts({REPLICA: 4}))
    await store.commit()
    # No close(): as after a crash, nothing recorded a clean shutdown.
    await store._run(store._db.close)

    store = SQLiteStore(db_path)
    stored = await store.open()
    assert stored == StoredState(REPLICA, counts({REPLICA: 4}), clean_shutdown=False)
    await store.bind("new#1")
    store.stage(counts({"new#1": 1}))
    await store.close()

    expected = StoredState("new#1", counts({REPLICA: 4, "new#1": 1}))
    assert await open_and_close(db_path) == expected


# -- commits ----------------------------------------------------------------------------


async def test_a_cancelled_commit_leaves_the_others_waiting_for_the_same_transaction(
    db_path: Path,
) -> None:
    # Transactions at least a second apart: the second one is still pending when one of
    # its two waiters is cancelled.
    store = await new_store(db_path, batch_interval=1.0)
    store.stage(counts({REPLICA: 1}))
    await store.commit()
    store.stage(counts({REPLICA: 2}))
    first = asyncio.ensure_future(store.commit())
    second = asyncio.ensure_future(store.commit())
    await asyncio.sleep(0)
    assert not first.done()
    first.cancel()
    await second
    with pytest.raises(asyncio.CancelledError):
        await first
    assert store.committed_state() == counts({REPLICA: 2})
    await store.close()


# -- idempotency keys -------------------------------------------------------------------


async def test_keys_commit_with_the_counts_and_come_back_at_open(db_path: Path) -> None:
    now = time.time()
    store = await new_store(db_path)
    key = StoredKey("order-1", "decrement", 2, -2, now)
    store.stage(counts({}, {REPLICA: 2}))
    store.stage_key(key)
    await store.commit()
    await store.close()

    reopened = SQLiteStore(db_path)
    await reopened.open()
    assert reopened.stored_keys() == [key]
    await reopened.close()


async def test_expired_keys_and_keys_beyond_the_cap_are_not_restored(db_path: Path) -> None:
    now = time.time()
    store = await new_store(db_path)
    store.stage_key(StoredKey("old", "increment", 1, 1, now - 100.0))
    for i in range(3):
        store.stage_key(StoredKey(f"k{i}", "increment", 1, i, now + i))
    await store.commit()
    await store.close()

    reopened = SQLiteStore(db_path, key_ttl=50.0, max_keys=2)
    await reopened.open()
    assert [key.key for key in reopened.stored_keys()] == ["k1", "k2"]
    await reopened.close()

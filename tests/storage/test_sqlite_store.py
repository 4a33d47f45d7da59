"""SQLiteStore: what it keeps, what it refuses, and how it commits."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any

import pytest

from dcounter_crdt import MAX_COUNT, CounterState, InvalidReplicaIdError
from dcounter_node._errors import (
    ConfigError,
    CorruptStorageError,
    ForeignStorageError,
    StorageError,
    UnsupportedSchemaError,
)
from dcounter_node._storage import StateStore, StoredState
from dcounter_node._storage_sqlite import SCHEMA_VERSION, Durability, SQLiteStore

if TYPE_CHECKING:
    from pathlib import Path

RawDatabase = Callable[..., AbstractContextManager[sqlite3.Connection]]

REPLICA = "127.0.0.1:7001#a1b2"
ADDRESS = "127.0.0.1:7001"


def state(inc: dict[str, int] | None = None, dec: dict[str, int] | None = None) -> CounterState:
    return CounterState.from_maps(inc, dec)


@asynccontextmanager
async def opened(path: Path, **options: Any) -> AsyncIterator[SQLiteStore]:
    """An open store (bound to REPLICA when new), closed on exit."""
    store = SQLiteStore(path, **options)
    try:
        if await store.open() is None:
            await store.bind(REPLICA)
        yield store
    finally:
        await store.close()


async def saved(path: Path, changes: CounterState, **options: Any) -> None:
    """Create (or extend) a database holding ``changes``, and close it."""
    async with opened(path, **options) as store:
        store.stage(changes)
        await store.commit()


# Small synchronous file operations: test setup, not work for the event loop.
def write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def read_file(path: Path) -> bytes:
    return path.read_bytes()


def exists(path: Path) -> bool:
    return path.exists()


async def reopen(path: Path, **options: Any) -> StoredState | None:
    store = SQLiteStore(path, **options)
    try:
        return await store.open()
    finally:
        await store.close()


class Tracer:
    """Runs ``hook`` for each SQL statement of every connection opened during the test."""

    def __init__(self) -> None:
        self.hook: Callable[[str], None] | None = None

    def __call__(self, sql: str) -> None:
        if self.hook is not None:
            self.hook(sql)


@pytest.fixture
def tracer(monkeypatch: pytest.MonkeyPatch) -> Tracer:
    """Trace the statements of the connections the stores open (on their own threads)."""
    trace = Tracer()
    real_connect = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn: sqlite3.Connection = real_connect(*args, **kwargs)
        conn.set_trace_callback(trace)
        return conn

    monkeypatch.setattr(sqlite3, "connect", connect)
    return trace


# -- lifecycle --------------------------------------------------------------------------


def test_sqlite_store_satisfies_the_state_store_protocol(db_path: Path) -> None:
    store: StateStore = SQLiteStore(db_path)
    assert isinstance(store, SQLiteStore)


async def test_new_database_opens_empty_then_binds(db_path: Path) -> None:
    store = SQLiteStore(db_path, node_address=ADDRESS)
    assert await store.open() is None
    await store.bind(REPLICA)
    assert store.replica_id == REPLICA
    await store.close()

    assert await reopen(db_path, node_address=ADDRESS) == StoredState(REPLICA, state())


async def test_reopen_resumes_replica_id_and_counts(db_path: Path) -> None:
    await saved(db_path, state({REPLICA: 7, "peer#1": 3}, {REPLICA: 2}))

    assert await reopen(db_path) == StoredState(
        REPLICA, state({REPLICA: 7, "peer#1": 3}, {REPLICA: 2})
    )


async def test_bind_without_open_is_refused(db_path: Path) -> None:
    store = SQLiteStore(db_path)
    with pytest.raises(StorageError, match="bind"):
        await store.bind(REPLICA)
    await store.close()


async def test_bind_on_an_existing_database_is_refused(db_path: Path) -> None:
    await saved(db_path, state({REPLICA: 1}))
    async with opened(db_path) as store:
        with pytest.raises(StorageError, match="bind"):
            await store.bind("someone-else#1")


async def test_bind_rejects_an_empty_replica_id(db_path: Path) -> None:
    store = SQLiteStore(db_path)
    assert await store.open() is None
    with pytest.raises(InvalidReplicaIdError):
        await store.bind("")
    await store.close()


async def test_open_twice_is_refused(db_path: Path) -> None:
    async with opened(db_path) as store:
        with pytest.raises(StorageError, match="once"):
            await store.open()


async def test_stage_before_bind_is_refused(db_path: Path) -> None:
    store = SQLiteStore(db_path)
    assert await store.open() is None
    with pytest.raises(StorageError, match="bound"):
        store.stage(state({REPLICA: 1}))
    await store.close()


async def test_stage_after_close_is_refused(db_path: Path) -> None:
    async with opened(db_path) as store:
        pass
    with pytest.raises(StorageError, match="bound"):
        store.stage(state({REPLICA: 1}))


async def test_close_is_idempotent(db_path: Path) -> None:
    async with opened(db_path) as store:
        store.stage(state({REPLICA: 1}))
    await store.close()
    await store.close()
    assert await reopen(db_path) == StoredState(REPLICA, state({REPLICA: 1}))


async def test_close_without_open_leaves_no_file(db_path: Path) -> None:
    store = SQLiteStore(db_path)
    await store.close()
    await store.close()
    assert not exists(db_path)


async def test_close_commits_what_is_staged(db_path: Path) -> None:
    async with opened(db_path, durability="batched", batch_interval=60.0) as store:
        store.stage(state({REPLICA: 1}))
        await store.commit()  # starts the 60 s batch pacing
        store.stage(state({REPLICA: 2}, {"peer#1": 5}))

    assert await reopen(db_path) == StoredState(REPLICA, state({REPLICA: 2}, {"peer#1": 5}))


async def test_close_cuts_a_batch_interval_short(db_path: Path) -> None:
    loop = asyncio.get_running_loop()
    store = SQLiteStore(db_path, durability="batched", batch_interval=60.0)
    assert await store.open() is None
    await store.bind(REPLICA)
    store.stage(state({REPLICA: 1}))
    await store.commit()  # the next batch may start only 60 s after this one
    store.stage(state({REPLICA: 2}))
    await asyncio.sleep(0)  # lets the writer begin waiting out the interval
    started = loop.time()
    await store.close()

    assert loop.time() - started < 10.0
    assert await reopen(db_path) == StoredState(REPLICA, state({REPLICA: 2}))


async def test_commit_with_nothing_staged_returns_at_once(db_path: Path) -> None:
    async with opened(db_path) as store:
        await store.commit()
        assert store.flushes == 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"durability": "sometimes"}, "durability"),
        ({"batch_interval": -0.001}, "batch_interval"),
        ({"batch_interval": float("nan")}, "batch_interval"),
        ({"batch_interval": True}, "batch_interval"),
        ({"node_address": ""}, "node_address"),
    ],
)
def test_invalid_options_are_rejected(db_path: Path, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SQLiteStore(db_path, **options)


# -- what is kept -----------------------------------------------------------------------


async def test_staging_keeps_the_max_of_pending_counts(db_path: Path) -> None:
    async with opened(db_path) as store:
        store.stage(state({REPLICA: 7}, {"peer#1": 2}))
        store.stage(state({REPLICA: 4}, {"peer#1": 9}))
        await store.commit()

    assert await reopen(db_path) == StoredState(REPLICA, state({REPLICA: 7}, {"peer#1": 9}))


async def test_commit_keeps_the_max_of_stored_and_new_counts(db_path: Path) -> None:
    await saved(db_path, state({REPLICA: 5, "peer#1": 1}))
    await saved(db_path, state({REPLICA: 3, "peer#1": 8}))

    assert await reopen(db_path) == StoredState(REPLICA, state({REPLICA: 5, "peer#1": 8}))


async def test_uint64_extremes_round_trip(db_path: Path) -> None:
    extremes = state(
        {"a": 1, "b": 2**63 - 1, "c": 2**63, "d": MAX_COUNT},
        {"a": MAX_COUNT, "b": 2**63, "c": 2**32},
    )
    await saved(db_path, extremes)

    assert await reopen(db_path) == StoredState(REPLICA, extremes)


async def test_counts_above_int64_keep_their_order_in_the_upsert(db_path: Path) -> None:
    await saved(db_path, state({"big": MAX_COUNT - 1}))
    await saved(db_path, state({"big": 2**63}))
    await saved(db_path, state({"big": MAX_COUNT}))

    assert await reopen(db_path) == StoredState(REPLICA, state({"big": MAX_COUNT}))


async def test_non_ascii_replica_ids_round_trip(db_path: Path) -> None:
    await saved(db_path, state({"nœud-é#1": 3}, {"узел#2": 4}))

    assert await reopen(db_path) == StoredState(REPLICA, state({"nœud-é#1": 3}, {"узел#2": 4}))


# -- what is refused --------------------------------------------------------------------


async def test_random_bytes_are_refused_as_corrupt_and_left_alone(db_path: Path) -> None:
    garbage = random.Random(7).randbytes(8192)
    write_file(db_path, garbage)

    with pytest.raises(CorruptStorageError, match="not a database") as caught:
        await reopen(db_path)
    assert str(db_path) in str(caught.value)
    assert read_file(db_path) == garbage


async def test_a_damaged_page_is_refused_as_corrupt(db_path: Path) -> None:
    await saved(db_path, state({f"replica-{i}#x": i + 1 for i in range(2000)}))
    data = bytearray(read_file(db_path))
    page_size = int.from_bytes(data[16:18], "big")
    # Page 3 is the root of the counts b-tree: scribble over the middle of it.
    start = 2 * page_size + 8
    data[start : start + 200] = random.Random(3).randbytes(200)
    write_file(db_path, bytes(data))

    with pytest.raises(CorruptStorageError, match=r"integrity check failed|malformed"):
        await reopen(db_path)


async def test_another_applications_database_is_refused(
    db_path: Path, raw_database: RawDatabase
) -> None:
    db_path.parent.mkdir(parents=True)
    with raw_database(db_path) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")

    with pytest.raises(CorruptStorageError, match="not a dcounter database"):
        await reopen(db_path)
    with raw_database(db_path) as conn:
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == [("invoices",)]


async def test_missing_replica_id_is_refused_as_corrupt(
    db_path: Path, raw_database: RawDatabase
) -> None:
    await saved(db_path, state({REPLICA: 1}))
    with raw_database(db_path) as conn:
        conn.execute("DELETE FROM meta WHERE key = 'replica_id'")

    with pytest.raises(CorruptStorageError, match="replica_id"):
        await reopen(db_path)


async def test_missing_counts_table_is_refused_as_corrupt(
    db_path: Path, raw_database: RawDatabase
) -> None:
    await saved(db_path, state({REPLICA: 1}))
    with raw_database(db_path) as conn:
        conn.execute("DROP TABLE counts")

    with pytest.raises(CorruptStorageError, match="counts table is missing"):
        await reopen(db_path)


@pytest.mark.parametrize(
    ("column", "bad_value", "message"),
    [
        ("value", "99999999999999999999", "exceeds the maximum count"),
        # The integrity check verifies the table's CHECK constraints as well.
        ("value", "0000000000000000001x", "CHECK constraint failed in counts"),
        ("value", "42", "CHECK constraint failed in counts"),
        ("value", 42, "CHECK constraint failed in counts"),
        ("replica", "", "CHECK constraint failed in counts"),
        ("kind", "mul", "CHECK constraint failed in counts"),
    ],
)
async def test_invalid_counts_are_refused_as_corrupt(
    db_path: Path, raw_database: RawDatabase, column: str, bad_value: object, message: str
) -> None:
    await saved(db_path, state({REPLICA: 1}))
    with raw_database(db_path, ignore_checks=True) as conn:
        conn.execute(f"UPDATE counts SET {column} = ?", (bad_value,))

    with pytest.raises(CorruptStorageError, match=message):
        await reopen(db_path)


async def test_a_foreign_node_address_is_refused(db_path: Path) -> None:
    await saved(db_path, state({REPLICA: 4}), node_address=ADDRESS)

    with pytest.raises(ForeignStorageError) as caught:
        await reopen(db_path, node_address="127.0.0.1:7002")
    message = str(caught.value)
    assert str(db_path) in message
    assert "'127.0.0.1:7001'" in message
    assert "'127.0.0.1:7002'" in message


async def test_a_database_without_an_address_is_foreign_to_an_addressed_node(
    db_path: Path,
) -> None:
    await saved(db_path, state({REPLICA: 4}))

    with pytest.raises(ForeignStorageError):
        await reopen(db_path, node_address=ADDRESS)


async def test_a_newer_schema_is_refused(db_path: Path, raw_database: RawDatabase) -> None:
    await saved(db_path, state({REPLICA: 1}))
    with raw_database(db_path) as conn:
        conn.execute(
            "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),)
        )

    with pytest.raises(UnsupportedSchemaError, match=f"schema version {SCHEMA_VERSION + 1}"):
        await reopen(db_path)


async def test_a_database_open_in_another_store_is_refused_as_in_use(db_path: Path) -> None:
    async with opened(db_path):
        with pytest.raises(StorageError, match="in use") as caught:
            await reopen(db_path)
    assert type(caught.value) is StorageError


# -- how it commits ---------------------------------------------------------------------


@pytest.mark.parametrize("durability", ["always", "batched"])
async def test_concurrent_commits_share_one_transaction(
    db_path: Path, durability: Durability
) -> None:
    async with opened(db_path, durability=durability) as store:

        async def write(i: int) -> None:
            store.stage(state({f"r{i}": i + 1}))
            await store.commit()

        await asyncio.gather(*(write(i) for i in range(50)))
        assert store.flushes == 1

    assert await reopen(db_path) == StoredState(REPLICA, state({f"r{i}": i + 1 for i in range(50)}))


async def test_batched_commit_waits_for_the_next_batch_interval(db_path: Path) -> None:
    loop = asyncio.get_running_loop()
    async with opened(db_path, durability="batched", batch_interval=0.2) as store:
        started = loop.time()
        store.stage(state({REPLICA: 1}))
        await store.commit()  # the first batch after idling starts at once
        store.stage(state({REPLICA: 2}))
        await store.commit()
        elapsed = loop.time() - started
        assert store.flushes == 2
    assert elapsed >= 0.19


async def test_a_failed_write_fails_every_commit_after_it(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deny = threading.Event()
    real_connect = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn: sqlite3.Connection = real_connect(*args, **kwargs)

        def authorize(action: int, arg1: str | None, *_: str | None) -> int:
            denied = deny.is_set() and action == sqlite3.SQLITE_INSERT and arg1 == "counts"
            return sqlite3.SQLITE_DENY if denied else sqlite3.SQLITE_OK

        conn.set_authorizer(authorize)
        return conn

    monkeypatch.setattr(sqlite3, "connect", connect)
    store = SQLiteStore(db_path)
    assert await store.open() is None
    await store.bind(REPLICA)
    deny.set()
    store.stage(state({REPLICA: 1}))
    with pytest.raises(StorageError, match="write failed"):
        await store.commit()
    with pytest.raises(StorageError, match="write failed"):
        await store.commit()
    with pytest.raises(StorageError, match="write failed"):
        await store.close()
    await store.close()


async def test_sqlite_never_runs_on_the_event_loop_thread(db_path: Path, tracer: Tracer) -> None:
    threads: set[int] = set()
    tracer.hook = lambda _sql: threads.add(threading.get_ident())
    async with opened(db_path, durability="always") as store:
        store.stage(state({REPLICA: 1}))
        await store.commit()

    assert threads
    assert threading.get_ident() not in threads


async def test_event_loop_keeps_running_during_a_slow_commit(db_path: Path, tracer: Tracer) -> None:
    async with opened(db_path, durability="always") as store:
        # A disk that takes 50 ms per statement: the commit takes >= 150 ms.
        tracer.hook = lambda _sql: time.sleep(0.05)
        ticks = 0
        committed = False

        async def ticker() -> None:
            nonlocal ticks
            while not committed:
                ticks += 1
                await asyncio.sleep(0)

        ticking = asyncio.create_task(ticker())
        store.stage(state({REPLICA: 1}))
        await store.commit()
        committed = True
        await ticking
        tracer.hook = None
    assert ticks >= 100


async def test_batched_mode_keeps_the_log_bounded_with_its_own_checkpoints(
    db_path: Path,
) -> None:
    wal = db_path.with_name(db_path.name + "-wal")
    async with opened(db_path, durability="batched") as store:
        # One page per transaction: 1,500 of them are about 6 MiB of log unless folded in.
        for i in range(1, 1501):
            store.stage(state({REPLICA: i}))
            await store.commit()
        size = wal.stat().st_size
    assert 0 < size < 4 * 1024 * 1024
    assert await reopen(db_path) == StoredState(REPLICA, state({REPLICA: 1500}))


async def test_batched_mode_writes_small_batches_on_the_loop_and_large_ones_on_the_worker(
    db_path: Path, tracer: Tracer
) -> None:
    threads: dict[int, set[int]] = {1: set(), 1000: set()}
    rows = 0

    def record(sql: str) -> None:
        if "INSERT" in sql:
            threads[rows].add(threading.get_ident())

    async with opened(db_path, durability="batched") as store:
        tracer.hook = record
        for rows in threads:
            store.stage(state({f"r{i}": 1 for i in range(rows)}))
            await store.commit()
        tracer.hook = None
    assert threads[1] == {threading.get_ident()}
    assert threads[1000]
    assert threading.get_ident() not in threads[1000]

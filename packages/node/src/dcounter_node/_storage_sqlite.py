"""A :class:`~dcounter_node._storage.StateStore` on SQLite: one WAL database per node.

Layout (schema version 1)::

    meta(key TEXT PRIMARY KEY, value TEXT)      schema_version, replica_id, created
                                                and node_address (when known)
    counts(replica TEXT, kind 'inc'|'dec', value TEXT, PRIMARY KEY (replica, kind))

A count is stored as exactly 20 decimal digits, zero-padded. SQLite's INTEGER is a signed
64-bit number and cannot hold every uint64, while fixed-width digit strings hold all of
them, stay readable in the ``sqlite3`` shell and order like the numbers they spell, so
``max()`` in the upsert keeps the larger count without converting anything.

The database header carries ``application_id`` 0x64436E74 ("dCnt"), which tells a dcounter
database from any other SQLite file. Future schemas keep the ``meta`` table and its
``schema_version`` key, so an older dcounter can always tell that it is too old.

Every sqlite3 call runs on one worker thread owned by the store, so a commit waiting on the
disk never blocks the event loop. The connection holds an exclusive lock on the database
for as long as the store is open: a second process that opens the same file is refused
instead of writing the same replica's counts behind this one's back.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import math
import os
import re
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal, TypeVar

from dcounter_crdt import MAX_COUNT, CounterState, CRDTError, InvalidReplicaIdError
from dcounter_node._errors import (
    ConfigError,
    CorruptStorageError,
    ForeignStorageError,
    StorageError,
    UnsupportedSchemaError,
)
from dcounter_node._storage import StoredState

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = [
    "DATABASE_FILENAME",
    "DURABILITY_MODES",
    "SCHEMA_VERSION",
    "Durability",
    "SQLiteStore",
    "default_data_dir",
]

_log = logging.getLogger(__name__)

Durability = Literal["always", "batched"]
DURABILITY_MODES: Final[tuple[Durability, ...]] = ("always", "batched")

#: The schema this code writes, and the newest one it can read.
SCHEMA_VERSION: Final = 1
#: The file name a node uses inside its data directory.
DATABASE_FILENAME: Final = "state.sqlite3"

_APPLICATION_ID: Final = 0x64436E74  # "dCnt"
_COUNT_WIDTH: Final = 20  # len(str(MAX_COUNT))

_SCHEMA: Final = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL) WITHOUT ROWID",
    "CREATE TABLE counts ("
    " replica TEXT NOT NULL CHECK (length(replica) > 0),"
    " kind TEXT NOT NULL CHECK (kind IN ('inc', 'dec')),"
    f" value TEXT NOT NULL CHECK (length(value) = {_COUNT_WIDTH} AND value NOT GLOB '*[^0-9]*'),"
    " PRIMARY KEY (replica, kind)"
    ") WITHOUT ROWID",
)
_UPSERT: Final = (
    "INSERT INTO counts (replica, kind, value) VALUES (?, ?, ?)"
    " ON CONFLICT (replica, kind) DO UPDATE SET value = max(value, excluded.value)"
)

_Phase = Literal["created", "opening", "unbound", "ready", "closing", "closed"]
_T = TypeVar("_T")


def default_data_dir(listen: str, environ: Mapping[str, str] | None = None) -> Path:
    """Where ``dcounter-node`` keeps a node's state when no data directory is configured.

    ``$XDG_DATA_HOME/dcounter/<listen>`` (``~/.local/share`` when XDG_DATA_HOME is unset or
    not absolute, as the XDG spec says), the listen address lowercased with every character
    other than ``a-z 0-9 . _ -`` turned into ``_``: ``127.0.0.1:7946`` -> ``127.0.0.1_7946``.
    Two addresses that clash this way are still told apart by the address in the database.
    """
    env = os.environ if environ is None else environ
    base = env.get("XDG_DATA_HOME", "")
    if os.path.isabs(base):
        root = Path(base)
    else:
        home = env.get("HOME")
        root = (Path(home) if home else Path.home()) / ".local" / "share"
    return root / "dcounter" / re.sub(r"[^a-z0-9._-]", "_", listen.lower())


def _encode_count(count: int) -> str:
    return f"{count:0{_COUNT_WIDTH}d}"


def _decode_count(value: object) -> int:
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


def _is_seconds(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


def _is_text(value: object) -> bool:
    """True for a non-empty str (callers may pass anything despite the annotations)."""
    return isinstance(value, str) and bool(value)


def _consume_exception(future: asyncio.Future[None]) -> None:
    # Every caller of commit() sees a failed flush; this only keeps asyncio from logging
    # "exception was never retrieved" for a flush that nobody happened to wait for.
    if not future.cancelled():
        future.exception()


class SQLiteStore:
    """Durable node state in a SQLite database (WAL journal), safe against process crashes.

    ``durability`` decides what a finished :meth:`commit` guarantees and how writes are
    grouped; in both modes a commit returns only after its changes are in a committed
    SQLite transaction, so an acknowledged write survives the process being killed:

    ``"always"``
        Every commit starts a transaction at once (callers arriving while one is being
        written share the next one: group commit) and uses ``synchronous=FULL``: the WAL is
        fsynced at each commit, so acknowledged writes also survive an OS crash or a power
        loss (as far as the disk honours fsync).
    ``"batched"``
        Transactions start at most once per ``batch_interval`` seconds (the first after an
        idle period at once) and carry everything staged meanwhile; commit() waits for the
        one holding its changes. ``synchronous=NORMAL``: a commit is written to the WAL file
        (into the OS page cache) but fsynced only at checkpoints, so it survives a crash of
        the process, not of the machine: a power loss may roll back the latest batches.

    ``node_address`` is recorded by :meth:`bind`; when given to a later :meth:`open`, the
    database must hold the same address (or :class:`ForeignStorageError` is raised).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durability: Durability = "batched",
        batch_interval: float = 0.005,
        node_address: str | None = None,
    ) -> None:
        if durability not in DURABILITY_MODES:
            raise ConfigError(f"durability must be 'always' or 'batched', not {durability!r}")
        if not _is_seconds(batch_interval):
            raise ConfigError(
                f"batch_interval must be a finite number of seconds >= 0, not {batch_interval!r}"
            )
        if node_address is not None and not _is_text(node_address):
            raise ConfigError(f"node_address must be a non-empty str, not {node_address!r}")
        self._path = Path(path)
        self._durability: Durability = durability
        self._batch_interval = float(batch_interval)
        self._node_address = node_address
        self._phase: _Phase = "created"
        self._replica_id: str | None = None
        self._failure: StorageError | None = None
        self._flushes = 0
        # Staged but not yet handed to a transaction; each count is the max seen.
        self._pending_inc: dict[str, int] = {}
        self._pending_dec: dict[str, int] = {}
        # `_next_flush` resolves when the transaction that will take the pending entries is
        # committed; `_inflight` when the one being written now is.
        self._next_flush: asyncio.Future[None] | None = None
        self._inflight: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._wakeup: asyncio.Event | None = None
        self._closing = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closed: asyncio.Event | None = None
        # Used on the worker thread only.
        self._conn: sqlite3.Connection | None = None

    # -- properties ---------------------------------------------------------------------

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    @property
    def durability(self) -> Durability:
        """``"always"`` or ``"batched"`` (see the class docstring)."""
        return self._durability

    @property
    def batch_interval(self) -> float:
        """Minimum seconds between two transactions in ``batched`` mode."""
        return self._batch_interval

    @property
    def node_address(self) -> str | None:
        """The node address this store checks and records, if any."""
        return self._node_address

    @property
    def replica_id(self) -> str | None:
        """The replica id the database belongs to, once opened (or bound)."""
        return self._replica_id

    @property
    def flushes(self) -> int:
        """How many write transactions have been committed since open()."""
        return self._flushes

    # -- StateStore ---------------------------------------------------------------------

    async def open(self) -> StoredState | None:
        """Open and validate the database; return its state, or None when it is new.

        Raises :class:`CorruptStorageError` (unreadable file, not a dcounter database,
        failed integrity check, bad metadata or counts), :class:`ForeignStorageError`
        (recorded for another node address), :class:`UnsupportedSchemaError` (written by a
        newer dcounter) or :class:`StorageError` (in use by another process). A refused
        database is never rewritten or replaced.
        """
        if self._phase != "created":
            raise StorageError(f"{self._path}: open() may be called only once")
        self._phase = "opening"
        self._loop = asyncio.get_running_loop()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dcounter-sqlite")
        try:
            stored = await self._run(self._open_sync)
        except BaseException:
            await self._release()
            self._phase = "closed"
            raise
        if stored is None:
            self._phase = "unbound"
            return None
        self._replica_id = stored.replica_id
        self._start_writer()
        _log.debug("opened %s: replica %s", self._path, stored.replica_id)
        return stored

    async def bind(self, replica_id: str) -> None:
        """Create the schema for a new database and record ``replica_id`` in it."""
        if self._phase != "unbound":
            raise StorageError(
                f"{self._path}: bind() is only valid once, after open() found a new database"
            )
        if not _is_text(replica_id):
            raise InvalidReplicaIdError(f"replica id must be a non-empty str, not {replica_id!r}")
        await self._run(self._bind_sync, replica_id)
        self._replica_id = replica_id
        self._start_writer()
        _log.debug("created %s for replica %s", self._path, replica_id)

    def stage(self, changes: CounterState) -> None:
        """Queue ``changes`` for the next transaction; each count keeps the max staged."""
        if self._phase != "ready":
            raise StorageError(f"{self._path}: stage() needs an open, bound store")
        for pending, counts in (
            (self._pending_inc, changes.increments),
            (self._pending_dec, changes.decrements),
        ):
            get = pending.get
            for replica_id, count in counts.items():
                if count > get(replica_id, 0):
                    pending[replica_id] = count
        if self._wakeup is not None and (self._pending_inc or self._pending_dec):
            self._wakeup.set()

    async def commit(self) -> None:
        """Return once everything staged so far is committed (raise StorageError if not)."""
        if self._failure is not None:
            raise StorageError(str(self._failure)) from self._failure
        if self._pending_inc or self._pending_dec:
            if self._next_flush is None:
                self._next_flush = self._new_flush_future()
            waiter = self._next_flush
        elif self._inflight is not None:
            waiter = self._inflight
        else:
            return
        # Shielded: one caller giving up must not cancel the transaction others wait for.
        await asyncio.shield(waiter)

    async def close(self) -> None:
        """Commit what is staged, then release the database and the worker; idempotent."""
        if self._closed is not None:
            # Only the first call reports a failure to flush; later ones wait for it to end.
            await self._closed.wait()
            return
        self._closed = asyncio.Event()
        try:
            await self._close()
        finally:
            self._closed.set()

    async def _close(self) -> None:
        self._phase = "closing"
        try:
            if self._writer is not None:
                assert self._wakeup is not None  # set together with the writer
                self._closing.set()
                self._wakeup.set()
                await self._writer
        finally:
            await self._release()
            self._phase = "closed"
        if self._failure is not None:
            raise self._failure

    # -- writer -------------------------------------------------------------------------

    def _start_writer(self) -> None:
        self._phase = "ready"
        self._wakeup = asyncio.Event()
        self._writer = asyncio.create_task(self._write_loop(), name=f"sqlite-writer {self._path}")

    def _new_flush_future(self) -> asyncio.Future[None]:
        assert self._loop is not None  # opened
        future: asyncio.Future[None] = self._loop.create_future()
        future.add_done_callback(_consume_exception)
        return future

    async def _write_loop(self) -> None:
        assert self._loop is not None
        assert self._wakeup is not None
        loop, wakeup = self._loop, self._wakeup
        last_start = -math.inf
        while True:
            await wakeup.wait()
            wakeup.clear()
            closing = self._phase == "closing"
            if not (self._pending_inc or self._pending_dec):
                if closing:
                    return
                continue
            if self._durability == "batched" and not closing:
                delay = last_start + self._batch_interval - loop.time()
                if delay > 0:
                    # Pacing, not synchronization: what is staged meanwhile joins this
                    # batch. close() cuts the wait short.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(delay):
                            await self._closing.wait()
            last_start = loop.time()
            inc, self._pending_inc = self._pending_inc, {}
            dec, self._pending_dec = self._pending_dec, {}
            done = self._next_flush or self._new_flush_future()
            self._next_flush = None
            self._inflight = done
            try:
                await self._run(self._write_sync, inc, dec)
            except Exception as exc:
                failure = (
                    exc
                    if isinstance(exc, StorageError)
                    else StorageError(f"{self._path}: write failed: {exc}")
                )
                _log.error("%s", failure)
                self._failure = failure
                for future in (done, self._next_flush):
                    if future is not None and not future.done():
                        future.set_exception(failure)
                self._next_flush = None
                return
            finally:
                self._inflight = None
            self._flushes += 1
            done.set_result(None)
            if self._pending_inc or self._pending_dec or self._phase == "closing":
                wakeup.set()

    # -- worker thread ------------------------------------------------------------------

    async def _run(self, func: Callable[..., _T], *args: object) -> _T:
        assert self._loop is not None
        assert self._executor is not None
        return await self._loop.run_in_executor(self._executor, func, *args)

    async def _release(self) -> None:
        if self._executor is None:
            return
        try:
            await self._run(self._close_sync)
        finally:
            # The worker is idle now, so this only joins a thread that is about to exit.
            self._executor.shutdown(wait=True)
            self._executor = None

    def _storage_error(self, exc: sqlite3.Error, doing: str) -> StorageError:
        if exc.sqlite_errorname in ("SQLITE_BUSY", "SQLITE_LOCKED"):
            return StorageError(
                f"{self._path}: database is in use by another process "
                "(is another dcounter-node running on this data directory?)"
            )
        return CorruptStorageError(f"{self._path}: cannot {doing}: {exc}")

    def _open_sync(self) -> StoredState | None:
        path = self._path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"{path}: cannot create the directory: {exc}") from exc
        try:
            # Autocommit (isolation_level=None): transactions are begun explicitly. No busy
            # timeout: a database locked by another process is refused at once.
            self._conn = conn = sqlite3.connect(path, isolation_level=None, timeout=0)
        except sqlite3.Error as exc:
            raise self._storage_error(exc, "open the database") from exc
        try:
            # Exclusive: the lock is taken at the first read and kept until close().
            conn.execute("PRAGMA locking_mode = EXCLUSIVE")
            stored = self._validate(conn)
            self._configure(conn)
        except sqlite3.Error as exc:
            raise self._storage_error(exc, "read the database") from exc
        return stored

    def _validate(self, conn: sqlite3.Connection) -> StoredState | None:
        """The stored state, None for a database with nothing in it, or a StorageError."""
        path = self._path
        problems = [row[0] for row in conn.execute("PRAGMA quick_check").fetchall()]
        if problems != ["ok"]:
            raise CorruptStorageError(
                f"{path}: integrity check failed: {'; '.join(map(str, problems[:5]))}"
            )
        (application_id,) = conn.execute("PRAGMA application_id").fetchone()
        tables = {
            name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        if not tables and application_id in (0, _APPLICATION_ID):
            # Never bound (bind() creates everything in one transaction): nothing to lose.
            return None
        if application_id != _APPLICATION_ID:
            raise CorruptStorageError(
                f"{path}: not a dcounter database (application_id {application_id:#x}, "
                f"tables {', '.join(sorted(tables)) or 'none'})"
            )
        if "meta" not in tables:
            raise CorruptStorageError(f"{path}: the meta table is missing")
        meta: dict[str, str] = {}
        for key, value in conn.execute("SELECT key, value FROM meta"):
            if not isinstance(key, str) or not isinstance(value, str):
                raise CorruptStorageError(f"{path}: meta entry {key!r} = {value!r} is not text")
            meta[key] = value
        version_text = meta.get("schema_version")
        if version_text is None or not version_text.isascii() or not version_text.isdigit():
            raise CorruptStorageError(f"{path}: meta schema_version is {version_text!r}")
        version = int(version_text)
        if version > SCHEMA_VERSION:
            raise UnsupportedSchemaError(
                f"{path}: schema version {version} is newer than this dcounter supports "
                f"({SCHEMA_VERSION}); upgrade dcounter to use this database"
            )
        if version < 1:
            raise CorruptStorageError(f"{path}: meta schema_version is {version_text!r}")
        replica_id = meta.get("replica_id")
        if not replica_id:
            raise CorruptStorageError(f"{path}: meta replica_id is {replica_id!r}")
        stored_address = meta.get("node_address")
        if self._node_address is not None and stored_address != self._node_address:
            raise ForeignStorageError(
                f"{path}: the database belongs to node {stored_address!r} (replica "
                f"{replica_id!r}), not to {self._node_address!r}"
            )
        if "counts" not in tables:
            raise CorruptStorageError(f"{path}: the counts table is missing")
        maps: dict[str, dict[str, int]] = {"inc": {}, "dec": {}}
        for replica, kind, value in conn.execute("SELECT replica, kind, value FROM counts"):
            if kind not in maps:
                raise CorruptStorageError(f"{path}: count of {replica!r} has kind {kind!r}")
            try:
                maps[kind][replica] = _decode_count(value)
            except ValueError as exc:
                raise CorruptStorageError(
                    f"{path}: {kind} count of replica {replica!r}: {exc}"
                ) from exc
        try:
            state = CounterState.from_maps(maps["inc"], maps["dec"])
        except CRDTError as exc:
            raise CorruptStorageError(f"{path}: the stored counts are invalid: {exc}") from exc
        return StoredState(replica_id=replica_id, state=state)

    def _configure(self, conn: sqlite3.Connection) -> None:
        (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
        if mode != "wal":
            raise StorageError(f"{self._path}: cannot use WAL journal mode (got {mode!r})")
        if self._durability == "always":
            conn.execute("PRAGMA synchronous = FULL")
            # macOS: a plain fsync() leaves the data in the drive's cache.
            conn.execute("PRAGMA fullfsync = ON")
            conn.execute("PRAGMA checkpoint_fullfsync = ON")
        else:
            conn.execute("PRAGMA synchronous = NORMAL")

    def _bind_sync(self, replica_id: str) -> None:
        conn = self._conn
        assert conn is not None  # open() succeeded
        meta = {
            "schema_version": str(SCHEMA_VERSION),
            "replica_id": replica_id,
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }
        if self._node_address is not None:
            meta["node_address"] = self._node_address
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(f"PRAGMA application_id = {_APPLICATION_ID}")
                for statement in _SCHEMA:
                    conn.execute(statement)
                conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", meta.items())
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StorageError(f"{self._path}: cannot initialise the database: {exc}") from exc

    def _write_sync(self, inc: dict[str, int], dec: dict[str, int]) -> None:
        conn = self._conn
        assert conn is not None  # open() succeeded
        rows = [(r, "inc", _encode_count(c)) for r, c in inc.items()]
        rows += [(r, "dec", _encode_count(c)) for r, c in dec.items()]
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(_UPSERT, rows)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StorageError(f"{self._path}: write failed: {exc}") from exc

    def _close_sync(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __repr__(self) -> str:
        return (
            f"SQLiteStore({str(self._path)!r}, durability={self._durability!r}, "
            f"phase={self._phase!r})"
        )

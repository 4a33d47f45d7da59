"""A :class:`~dcounter_node._storage.StateStore` on SQLite: one WAL database per node.

The schema, its row checksums and its migrations live in :mod:`._storage_schema`; the files
kept beside the database (identity, ``-running``) in :mod:`._storage_files`.

Every sqlite3 call runs on one worker thread owned by the store, so a commit waiting on the
disk never blocks the event loop. The connection holds an exclusive lock on the database
for as long as the store is open: a second process that opens the same file is refused
instead of writing the same replica's counts behind this one's back.

**Incarnations (issue 12, Riak's "kv679").** A store proves that its state is complete only
with a clean-shutdown marker, written as the last transaction of :meth:`SQLiteStore.close`
and removed (durably) when the database is opened again. A database opened without it may
have lost the tail of its write-ahead log (an OS crash in ``batched`` mode, a torn disk)
while peers already hold those counts; resuming the same replica id below them would let
their higher count swallow the next acknowledged writes. :meth:`SQLiteStore.open` therefore
reports ``clean_shutdown=False`` and the node binds a new replica id: the old id's counts
stay as stored and peers restore the rest by merge.
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
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal, TypeVar

from dcounter_crdt import CounterState, InvalidReplicaIdError
from dcounter_node import _storage_files as files
from dcounter_node._errors import (
    ConfigError,
    CorruptStorageError,
    ForeignStorageError,
    StorageError,
)
from dcounter_node._storage import StoredState
from dcounter_node._storage_schema import (
    INSERT_KEY,
    SCHEMA_VERSION,
    UPSERT_META,
    Loaded,
    StoredKey,
    create_schema,
    key_row,
    load,
    meta_row,
    migrate,
    upsert_counts,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = [
    "DATABASE_FILENAME",
    "DURABILITY_MODES",
    "SCHEMA_VERSION",
    "Durability",
    "SQLiteStore",
    "StoredKey",
    "default_data_dir",
]

_log = logging.getLogger(__name__)

Durability = Literal["always", "batched"]
DURABILITY_MODES: Final[tuple[Durability, ...]] = ("always", "batched")

#: The file name a node uses inside its data directory.
DATABASE_FILENAME: Final = "state.sqlite3"
#: Default lifetime and number of the Idempotency-Keys kept (see --idempotency-ttl).
DEFAULT_KEY_TTL: Final = 24 * 3600.0
DEFAULT_MAX_KEYS: Final = 100_000

#: Retries of a failed write start after this long and back off up to the maximum.
_RETRY_FIRST: Final = 0.05
_RETRY_MAX: Final = 1.0
#: Old idempotency rows are deleted at most this often (and when over the cap).
_PRUNE_EVERY: Final = 60.0

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


def _raise_max(target: dict[str, int], counts: Mapping[str, int]) -> None:
    get = target.get
    for replica_id, count in counts.items():
        if count > get(replica_id, 0):
            target[replica_id] = count


class _Flush(asyncio.Future[None]):
    """The outcome of one transaction, awaited by every commit() it covers.

    It refuses cancellation: a waiter that is cancelled gets its CancelledError when the
    transaction ends (asyncio delivers it then), and the others still get the outcome.
    Cheaper than an ``asyncio.shield`` per waiter, which matters at 100,000 commits/s.
    """

    def cancel(self, msg: object = None) -> bool:
        return False


class _Batch:
    """What one transaction writes: counts (each the max staged) and idempotency keys."""

    __slots__ = ("dec", "inc", "keys")

    def __init__(self) -> None:
        self.inc: dict[str, int] = {}
        self.dec: dict[str, int] = {}
        self.keys: dict[str, StoredKey] = {}

    def __bool__(self) -> bool:
        return bool(self.inc or self.dec or self.keys)

    def absorb(self, other: _Batch) -> None:
        """Add ``other``'s entries (a failed batch takes back what was staged since)."""
        _raise_max(self.inc, other.inc)
        _raise_max(self.dec, other.dec)
        self.keys.update(other.keys)

    def size(self) -> int:
        return len(self.inc) + len(self.dec) + len(self.keys)


class SQLiteStore:
    """Durable node state in a SQLite database (WAL journal), safe against process crashes.

    ``durability`` decides what a finished :meth:`commit` guarantees; in both modes a
    commit returns only after its changes are in a committed SQLite transaction, so an
    acknowledged write survives the process being killed. Commits are grouped: one
    transaction is written at a time, and everything staged meanwhile goes into the next.

    ``"always"``
        ``synchronous=FULL``: the WAL is fsynced at each commit, so acknowledged writes also
        survive an OS crash or a power loss (as far as the disk honours fsync).
    ``"batched"``
        ``synchronous=NORMAL``: a commit is written to the WAL file (the OS page cache) but
        fsynced only at checkpoints, so it survives a crash of the process, not of the
        machine (the next start is then a new incarnation, see the module docstring).
        ``batch_interval`` (default 0) spaces transactions at least that far apart.

    A write that fails (disk full, I/O error) fails the commits waiting for it and makes
    :attr:`problem` say why; its changes stay staged and are retried, with backoff up to a
    second, until a write succeeds, which clears :attr:`problem`. Meanwhile commit() fails
    at once.

    ``node_address`` is recorded by :meth:`bind`; when given to a later :meth:`open`, the
    database must hold the same address (or :class:`ForeignStorageError` is raised).
    Idempotency-Keys staged with :meth:`stage_key` are kept ``key_ttl`` seconds, at most the
    ``max_keys`` newest.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durability: Durability = "batched",
        batch_interval: float = 0.0,
        node_address: str | None = None,
        key_ttl: float = DEFAULT_KEY_TTL,
        max_keys: int = DEFAULT_MAX_KEYS,
    ) -> None:
        if durability not in DURABILITY_MODES:
            raise ConfigError(f"durability must be 'always' or 'batched', not {durability!r}")
        if not _is_seconds(batch_interval):
            raise ConfigError(
                f"batch_interval must be a finite number of seconds >= 0, not {batch_interval!r}"
            )
        if node_address is not None and not _is_text(node_address):
            raise ConfigError(f"node_address must be a non-empty str, not {node_address!r}")
        if not _is_seconds(key_ttl) or not key_ttl > 0:
            raise ConfigError(f"key_ttl must be a finite number of seconds > 0, not {key_ttl!r}")
        if isinstance(max_keys, bool) or max_keys < 1:
            raise ConfigError(f"max_keys must be an int >= 1, not {max_keys!r}")
        self._path = Path(path)
        self._durability: Durability = durability
        self._batch_interval = float(batch_interval)
        self._node_address = node_address
        self._key_ttl = float(key_ttl)
        self._max_keys = max_keys
        self._phase: _Phase = "created"
        self._replica_id: str | None = None
        self._loaded: Loaded | None = None
        self._problem: StorageError | None = None
        self._problem_since = 0.0
        self._flushes = 0
        # Staged but not yet handed to a transaction.
        self._pending = _Batch()
        # Everything committed so far (what /counter shows while writes fail).
        self._committed_inc: dict[str, int] = {}
        self._committed_dec: dict[str, int] = {}
        self._stored_keys: list[StoredKey] = []
        self._key_rows = 0
        self._last_prune = 0.0
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
        self._marked_running = False

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

    @property
    def problem(self) -> str | None:
        """Why writes currently fail (they are being retried), or None while they succeed."""
        return None if self._problem is None else str(self._problem)

    @property
    def key_ttl(self) -> float:
        """Seconds an Idempotency-Key is kept."""
        return self._key_ttl

    @property
    def max_keys(self) -> int:
        """How many Idempotency-Keys are kept at most (the newest)."""
        return self._max_keys

    def committed_state(self) -> CounterState:
        """The counts of every committed transaction (staged ones not included)."""
        return CounterState.from_maps(self._committed_inc, self._committed_dec)

    def stored_keys(self) -> list[StoredKey]:
        """The unexpired Idempotency-Keys found by open(), oldest first."""
        return list(self._stored_keys)

    # -- StateStore ---------------------------------------------------------------------

    async def open(self) -> StoredState | None:
        """Open and validate the database; return its state, or None when it is new.

        After an unclean shutdown the state comes back with ``clean_shutdown=False`` and
        the store waits for :meth:`bind` with the replica id of a new incarnation.

        Raises :class:`CorruptStorageError` (unreadable file, not a dcounter database,
        failed integrity check or checksum, bad metadata or counts, a database or
        write-ahead log missing though state existed), :class:`ForeignStorageError`
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
            loaded = await self._run(self._open_sync)
        except BaseException:
            await self._release()
            self._phase = "closed"
            raise
        if loaded is None:
            self._phase = "unbound"
            return None
        self._loaded = loaded
        self._committed_inc = dict(loaded.state.increments)
        self._committed_dec = dict(loaded.state.decrements)
        clean = loaded.clean_shutdown
        if clean:
            self._replica_id = loaded.replica_id
            self._start_writer()
        else:
            self._phase = "unbound"
        _log.debug("opened %s: replica %s (clean: %s)", self._path, loaded.replica_id, clean)
        return StoredState(loaded.replica_id, loaded.state, clean_shutdown=clean)

    async def bind(self, replica_id: str) -> None:
        """Record ``replica_id``: of a new database, or of a new incarnation after open()
        returned a state with ``clean_shutdown=False``."""
        if self._phase != "unbound":
            raise StorageError(
                f"{self._path}: bind() is only valid once, after open() found a new database"
                " or an unclean shutdown"
            )
        if not _is_text(replica_id):
            raise InvalidReplicaIdError(f"replica id must be a non-empty str, not {replica_id!r}")
        await self._run(self._bind_sync, replica_id)
        self._replica_id = replica_id
        self._start_writer()
        _log.debug("bound %s to replica %s", self._path, replica_id)

    def stage(self, changes: CounterState) -> None:
        """Queue ``changes`` for the next transaction; each count keeps the max staged."""
        if self._phase != "ready":
            raise StorageError(f"{self._path}: stage() needs an open, bound store")
        pending = self._pending
        _raise_max(pending.inc, changes.increments)
        _raise_max(pending.dec, changes.decrements)
        if pending and self._wakeup is not None:
            self._wakeup.set()

    def stage_key(self, key: StoredKey) -> None:
        """Queue an Idempotency-Key and its answer; it commits with the counts staged so far."""
        if self._phase != "ready":
            raise StorageError(f"{self._path}: stage_key() needs an open, bound store")
        self._pending.keys[key.key] = key
        if self._wakeup is not None:
            self._wakeup.set()

    async def commit(self) -> None:
        """Return once everything staged so far is committed (raise StorageError if not)."""
        if self._problem is not None:
            raise StorageError(f"change not persisted yet: {self._problem}")
        if self._pending:
            if self._next_flush is None:
                self._next_flush = self._new_flush_future()
            waiter = self._next_flush
        elif self._inflight is not None:
            waiter = self._inflight
        else:
            return
        # A _Flush: one caller giving up cannot cancel the transaction others wait for.
        await waiter

    async def close(self) -> None:
        """Commit what is staged, mark a clean shutdown and release the database; idempotent.

        Raises StorageError when the staged changes cannot be written (the next open() then
        sees an unclean shutdown).
        """
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
        was_ready = self._phase == "ready"
        self._phase = "closing"
        try:
            if self._writer is not None:
                assert self._wakeup is not None  # set together with the writer
                self._closing.set()
                self._wakeup.set()
                await self._writer
            if was_ready and self._problem is None:
                await self._run(self._mark_clean_sync)
        finally:
            await self._release()
            self._phase = "closed"
        if self._problem is not None:
            lost = self._pending.size()
            raise StorageError(
                f"{self._path}: {lost} staged change(s) could not be saved: {self._problem}"
            )

    # -- writer -------------------------------------------------------------------------

    def _start_writer(self) -> None:
        self._phase = "ready"
        self._wakeup = asyncio.Event()
        self._writer = asyncio.create_task(self._write_loop(), name=f"sqlite-writer {self._path}")

    def _new_flush_future(self) -> asyncio.Future[None]:
        future = _Flush(loop=self._loop)
        future.add_done_callback(_consume_exception)
        return future

    async def _write_loop(self) -> None:
        assert self._loop is not None
        assert self._wakeup is not None
        loop, wakeup = self._loop, self._wakeup
        last_start = -math.inf
        retry_delay = _RETRY_FIRST
        while True:
            await wakeup.wait()
            wakeup.clear()
            closing = self._phase == "closing"
            if not self._pending:
                if closing:
                    return
                continue
            if self._batch_interval and not closing:
                await self._pause(last_start + self._batch_interval - loop.time())
            last_start = loop.time()
            batch, self._pending = self._pending, _Batch()
            done = self._next_flush or self._new_flush_future()
            self._next_flush = None
            self._inflight = done
            try:
                await self._run(self._write_sync, batch)
            except Exception as exc:
                self._inflight = None
                batch.absorb(self._pending)
                self._pending = batch
                self._failed(exc, done)
                if closing:
                    return  # close() reports what could not be saved
                await self._pause(retry_delay)
                retry_delay = min(retry_delay * 2, _RETRY_MAX)
                wakeup.set()
                continue
            self._inflight = None
            retry_delay = _RETRY_FIRST
            _raise_max(self._committed_inc, batch.inc)
            _raise_max(self._committed_dec, batch.dec)
            self._flushes += 1
            if self._problem is not None:
                _log.warning(
                    "%s: writes succeed again after %.1f s; storage recovered",
                    self._path,
                    loop.time() - self._problem_since,
                )
                self._problem = None
            done.set_result(None)
            if self._pending or self._phase == "closing":
                wakeup.set()

    async def _pause(self, delay: float) -> None:
        """Wait ``delay`` seconds (pacing or retry backoff); close() cuts it short."""
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._closing.wait()

    def _failed(self, exc: Exception, done: asyncio.Future[None]) -> None:
        assert self._loop is not None
        failure = (
            exc
            if isinstance(exc, StorageError)
            else StorageError(f"{self._path}: write failed: {exc}")
        )
        if self._problem is None:
            self._problem_since = self._loop.time()
            _log.error("%s (retrying until it succeeds)", failure)
        elif str(self._problem) != str(failure):
            _log.error("%s (still retrying)", failure)
        self._problem = failure
        error = StorageError(f"change not persisted yet: {failure}")
        for future in (done, self._next_flush):
            if future is not None and not future.done():
                future.set_exception(error)
        self._next_flush = None

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

    def _open_sync(self) -> Loaded | None:
        path = self._path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"{path}: cannot create the directory: {exc}") from exc
        # Looked at before SQLite runs: opening creates a missing write-ahead log.
        facts = files.FileFacts.look(path)
        identity = files.Identity.read(files.identity_path(path))
        if identity is not None and not facts.database_size:
            raise self._lost(identity, "is missing" if facts.database_size is None else "is empty")
        try:
            # Autocommit (isolation_level=None): transactions are begun explicitly. No busy
            # timeout: a database locked by another process is refused at once.
            self._conn = conn = sqlite3.connect(path, isolation_level=None, timeout=0)
        except sqlite3.Error as exc:
            raise self._storage_error(exc, "open the database") from exc
        try:
            # Exclusive: the lock is taken at the first read and kept until close().
            conn.execute("PRAGMA locking_mode = EXCLUSIVE")
            loaded = load(conn, path)
            if loaded is None:
                if identity is not None:
                    raise self._lost(identity, "holds no state")
                self._configure(conn)
                return None
            self._check(loaded, identity, facts)
            self._configure(conn)
            if not facts.wal_exists and loaded.version == 1:
                # Schema 1 kept no marker; SQLite deletes the log only at a clean close.
                loaded.meta["clean_shutdown"] = loaded.replica_id
            loaded = self._start_sync(conn, loaded)
        except sqlite3.Error as exc:
            raise self._storage_error(exc, "read the database") from exc
        if identity is None:
            self._identity(loaded.meta).write(files.identity_path(path))
        self._stored_keys = self._live_keys(loaded.keys)
        self._key_rows = len(loaded.keys)
        return loaded

    def _lost(self, identity: files.Identity, what: str) -> CorruptStorageError:
        return CorruptStorageError(
            f"{self._path}: the database {what}, but {files.identity_path(self._path).name}"
            f" shows this node kept state here since {identity.created}: refusing to start"
            " a new node over it (restore the database from a backup, or remove the data"
            " directory to start over with a new replica id)"
        )

    def _check(
        self, loaded: Loaded, identity: files.Identity | None, facts: files.FileFacts
    ) -> None:
        path, meta = self._path, loaded.meta
        stored_address = meta.get("node_address")
        if self._node_address is not None and stored_address != self._node_address:
            raise ForeignStorageError(
                f"{path}: the database belongs to node {stored_address!r} (replica "
                f"{loaded.replica_id!r}), not to {self._node_address!r}"
            )
        if identity is not None and meta.get("database_id", identity.database_id) != (
            identity.database_id
        ):
            raise CorruptStorageError(
                f"{path}: the database is not the one {files.identity_path(path).name} names"
                f" (database id {meta.get('database_id')!r}, expected"
                f" {identity.database_id!r}): it was replaced"
            )
        if facts.running_exists and not facts.wal_exists:
            raise CorruptStorageError(
                f"{path}: the write-ahead log {files.wal_path(path).name} is missing after an"
                " unclean shutdown: committed changes were lost with it, refusing to start"
                " (restore the file, or remove the data directory to start over with a new"
                " replica id)"
            )

    def _identity(self, meta: Mapping[str, str]) -> files.Identity:
        return files.Identity(meta["database_id"], meta["created"], meta.get("node_address"))

    def _live_keys(self, keys: list[StoredKey]) -> list[StoredKey]:
        oldest = time.time() - self._key_ttl
        return [key for key in keys if key.created > oldest][-self._max_keys :]

    def _configure(self, conn: sqlite3.Connection) -> None:
        (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
        if mode != "wal":
            raise StorageError(f"{self._path}: cannot use WAL journal mode (got {mode!r})")
        if self._durability == "always":
            # macOS: a plain fsync() leaves the data in the drive's cache.
            conn.execute("PRAGMA fullfsync = ON")
            conn.execute("PRAGMA checkpoint_fullfsync = ON")
        self._synchronous(conn)

    def _synchronous(self, conn: sqlite3.Connection, *, full: bool = False) -> None:
        level = "FULL" if full or self._durability == "always" else "NORMAL"
        conn.execute(f"PRAGMA synchronous = {level}")

    def _durably(self, conn: sqlite3.Connection, write: Callable[[], object]) -> None:
        """Run ``write`` in a transaction that is fsynced, then fold the log into the file."""
        self._synchronous(conn, full=True)
        try:
            self._transaction(conn, write)
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            self._synchronous(conn)

    def _start_sync(self, conn: sqlite3.Connection, loaded: Loaded) -> Loaded:
        """Migrate an old schema and remove the clean-shutdown marker, durably.

        From here until close() writes it again, a crash leaves the database without the
        marker. The log is then folded into the file, and the ``-running`` file says that a
        missing log means lost commits.
        """
        result = loaded

        def write() -> None:
            nonlocal result
            if loaded.version < SCHEMA_VERSION:
                result = migrate(conn, loaded, uuid.uuid4().hex)
                _log.warning(
                    "%s: upgraded the schema from version %d to %d",
                    self._path,
                    loaded.version,
                    SCHEMA_VERSION,
                )
            conn.execute("DELETE FROM meta WHERE key = 'clean_shutdown'")

        self._durably(conn, write)
        self._mark_running()
        return result

    def _mark_running(self) -> None:
        files.mark_running(self._path)
        self._marked_running = True

    def _bind_sync(self, replica_id: str) -> None:
        conn = self._conn
        assert conn is not None  # open() succeeded
        if self._loaded is not None:
            # A new incarnation of an existing database.
            self._durably(
                conn, lambda: conn.execute(UPSERT_META, meta_row("replica_id", replica_id))
            )
            self._loaded = None
            return
        meta = {
            "schema_version": str(SCHEMA_VERSION),
            "replica_id": replica_id,
            "database_id": uuid.uuid4().hex,
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }
        if self._node_address is not None:
            meta["node_address"] = self._node_address
        try:
            self._durably(conn, lambda: create_schema(conn, meta))
        except sqlite3.Error as exc:
            raise StorageError(f"{self._path}: cannot initialise the database: {exc}") from exc
        self._mark_running()
        # After the database: a crash in between leaves a database the next open() adopts.
        self._identity(meta).write(files.identity_path(self._path))

    def _transaction(self, conn: sqlite3.Connection, write: Callable[[], object]) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            write()
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _write_sync(self, batch: _Batch) -> None:
        conn = self._conn
        assert conn is not None  # open() succeeded

        def write() -> None:
            upsert_counts(conn, batch.inc, batch.dec)
            if batch.keys:
                conn.executemany(INSERT_KEY, [key_row(key) for key in batch.keys.values()])
                self._key_rows += len(batch.keys)
                self._prune_keys(conn)

        try:
            self._transaction(conn, write)
        except sqlite3.Error as exc:
            raise StorageError(f"{self._path}: write failed: {exc}") from exc

    def _prune_keys(self, conn: sqlite3.Connection) -> None:
        now = time.time()
        over = self._key_rows - self._max_keys
        if over <= max(100, self._max_keys // 10) and now - self._last_prune < _PRUNE_EVERY:
            return
        self._last_prune = now
        conn.execute("DELETE FROM idempotency WHERE created <= ?", (now - self._key_ttl,))
        conn.execute(
            "DELETE FROM idempotency WHERE key IN"
            " (SELECT key FROM idempotency ORDER BY created DESC LIMIT -1 OFFSET ?)",
            (self._max_keys,),
        )
        (self._key_rows,) = conn.execute("SELECT count(*) FROM idempotency").fetchone()

    def _mark_clean_sync(self) -> None:
        conn = self._conn
        assert conn is not None
        replica_id = self._replica_id
        assert replica_id is not None  # the store was ready
        try:
            self._durably(
                conn, lambda: conn.execute(UPSERT_META, meta_row("clean_shutdown", replica_id))
            )
        except sqlite3.Error as exc:
            _log.error("%s: cannot record the clean shutdown: %s", self._path, exc)

    def _close_sync(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
            if self._marked_running:
                # SQLite folded the log into the file and removed it, unless that failed.
                files.clear_running(self._path)

    def __repr__(self) -> str:
        return (
            f"SQLiteStore({str(self._path)!r}, durability={self._durability!r}, "
            f"phase={self._phase!r})"
        )

"""A :class:`~dcounter_node._storage.StateStore` on SQLite: one WAL database per node.

This module is the event-loop side: staging, group commit, retries and health (a batch
and the committed counts: :mod:`._storage_batch`). The SQLite connection lives in
:mod:`._storage_database` (on the store's worker thread), the schema, row checksums and
migrations in :mod:`._storage_schema` (named counters' rows: :mod:`._storage_named`), and
the files kept beside the database (identity, ``-running``) in :mod:`._storage_files`.

Every sqlite3 call that may wait on the disk runs on one worker thread owned by the
store, so an fsync never blocks the event loop: opening, closing, checkpoints, and every
commit in ``always`` mode. A ``batched`` commit (no fsync) runs on the event loop itself.
The connection holds an exclusive lock on the database for as long as the store is open: a
second process that opens the same file is refused instead of writing the same replica's
counts behind this one's back.

Why a store opened after an unclean shutdown asks for a new replica id (incarnations): see
:mod:`._storage_database`, which keeps the clean-shutdown marker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal, TypeVar

from dcounter_crdt import CounterMapState, CounterState, InvalidReplicaIdError
from dcounter_node._errors import ConfigError, StorageError
from dcounter_node._storage import StoredState
from dcounter_node._storage_batch import Batch, Committed, Flush
from dcounter_node._storage_database import Database
from dcounter_node._storage_files import default_data_dir
from dcounter_node._storage_schema import SCHEMA_VERSION, StoredKey

if TYPE_CHECKING:
    import os
    from collections.abc import Callable

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

#: In batched mode the log is folded into the database (on the worker) beyond this size.
_CHECKPOINT_BYTES: Final = 4 * 1024 * 1024
#: ... looked at every this many transactions (a stat() per commit is a measurable cost).
_CHECKPOINT_CHECK_EVERY: Final = 16
#: Batched transactions of at most this many rows are written on the event loop itself.
_INLINE_ROWS: Final = 256
#: Retries of a failed write start after this long and back off up to the maximum.
_RETRY_FIRST: Final = 0.05
_RETRY_MAX: Final = 1.0

_Phase = Literal["created", "opening", "unbound", "ready", "closing", "closed"]
_T = TypeVar("_T")


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
        #: False (set before open()): a clean shutdown is not resumed either, so the node
        #: binds a new incarnation (its id was bequeathed and not revoked, see "Pruning").
        self.resume = True
        self._replica_id: str | None = None
        self._problem: StorageError | None = None
        self._problem_since = 0.0
        self._flushes = 0
        # Staged but not yet handed to a transaction.
        self._pending = Batch()
        # Everything committed so far (what /counter shows while writes fail).
        self._committed = Committed()
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
        self._db = Database(
            self._path,
            durability=durability,
            node_address=node_address,
            key_ttl=self._key_ttl,
            max_keys=max_keys,
        )

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
        return self._committed.counter()

    def committed_counter(self, name: str) -> CounterState:
        """Like :meth:`committed_state`, for the counter ``name`` (the default one too)."""
        return self._committed.counter(name)

    def stored_keys(self) -> list[StoredKey]:
        """The unexpired Idempotency-Keys found by open(), oldest first."""
        return list(self._db.stored_keys)

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
            loaded = await self._run(self._db.open)
        except BaseException:
            await self._release()
            self._phase = "closed"
            raise
        if loaded is None:
            self._phase = "unbound"
            return None
        self._committed = Committed(loaded.state, loaded.named)
        clean = loaded.clean_shutdown and self.resume
        if clean:
            self._replica_id = loaded.replica_id
            self._start_writer()
        else:
            self._phase = "unbound"
        _log.debug("opened %s: replica %s (clean: %s)", self._path, loaded.replica_id, clean)
        return StoredState(
            loaded.replica_id, loaded.state, clean_shutdown=clean, named=loaded.named
        )

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
        await self._run(self._db.bind, replica_id)
        self._replica_id = replica_id
        self._start_writer()
        _log.debug("bound %s to replica %s", self._path, replica_id)

    def stage(self, changes: CounterState) -> None:
        """Queue ``changes`` for the next transaction; each count keeps the max staged."""
        if self._phase != "ready":
            raise StorageError(f"{self._path}: stage() needs an open, bound store")
        # On every write's path: _raise_max inlined, an empty side skipped.
        pending = self._pending
        for target, counts in (
            (pending.inc, changes.increments),
            (pending.dec, changes.decrements),
        ):
            if counts:
                get = target.get
                for replica_id, count in counts.items():
                    if count > get(replica_id, 0):
                        target[replica_id] = count
        if self._wakeup is not None:
            self._wakeup.set()  # a spurious wakeup (nothing staged) is harmless

    def stage_named(self, changes: CounterMapState) -> None:
        """Queue named counters' entries for the next transaction, like :meth:`stage`."""
        if self._phase != "ready":
            raise StorageError(f"{self._path}: stage_named() needs an open, bound store")
        if changes:
            self._pending.named.stage(changes)
            if self._wakeup is not None:
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
                assert self._replica_id is not None  # set when the store became ready
                await self._run(self._db.mark_clean, self._replica_id)
        finally:
            await self._release()
            self._phase = "closed"
        if self._problem is not None:
            lost = self._pending.size()
            # The problem names the database already.
            raise StorageError(f"{lost} staged change(s) could not be saved: {self._problem}")

    # -- writer -------------------------------------------------------------------------

    def _start_writer(self) -> None:
        self._phase = "ready"
        self._wakeup = asyncio.Event()
        self._writer = asyncio.create_task(self._write_loop(), name=f"sqlite-writer {self._path}")

    def _new_flush_future(self) -> asyncio.Future[None]:
        return Flush(loop=self._loop)

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
            if self._batch_interval:
                if not closing:
                    await self._pause(last_start + self._batch_interval - loop.time())
                last_start = loop.time()
            batch, self._pending = self._pending, Batch()
            done = self._next_flush or self._new_flush_future()
            self._next_flush = None
            self._inflight = done
            try:
                await self._write(batch)
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
            self._committed.absorb(batch)
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
            if (
                self._durability == "batched"
                and self._flushes % _CHECKPOINT_CHECK_EVERY == 0
                and self._db.log_size() >= _CHECKPOINT_BYTES
            ):
                # The fsyncs of batched mode; commits staged meanwhile wait for it.
                await self._run(self._db.checkpoint)

    async def _write(self, batch: Batch) -> None:
        keys = list(batch.keys.values())
        if self._durability == "batched" and batch.size() <= _INLINE_ROWS:
            # Inline, as Redis writes its append-only file: without fsync a commit is a
            # write() into the page cache (tens of microseconds), cheaper than handing it
            # to the worker thread and back. Checkpoints, which fsync, stay on the worker,
            # and so do large batches (a merge of thousands of replicas).
            self._db.write(batch.inc, batch.dec, keys, batch.named)
        else:
            await self._run(self._db.write, batch.inc, batch.dec, keys, batch.named)

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
                # Every waiter sees it; this keeps asyncio from logging "exception was
                # never retrieved" for a flush that nobody happened to wait for.
                future.exception()
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
            await self._run(self._db.close)
        finally:
            # The worker is idle now, so this only joins a thread that is about to exit.
            self._executor.shutdown(wait=True)
            self._executor = None

    def __repr__(self) -> str:
        return (
            f"SQLiteStore({str(self._path)!r}, durability={self._durability!r}, "
            f"phase={self._phase!r})"
        )

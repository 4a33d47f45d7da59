"""The worker-thread side of :class:`~dcounter_node._storage_sqlite.SQLiteStore`: the
SQLite connection, and the files kept beside the database.

:class:`Database` is used from one thread at a time (the store's worker); none of its
methods touch the event loop. Opening checks, in order: the identity file against the
database (missing, empty or replaced), the node address, a log lost after an unclean
shutdown, then loads and verifies every row (:mod:`._storage_schema`), migrates an old
schema and removes the clean-shutdown marker durably.

**Incarnations (issue 12, Riak's "kv679").** A store proves that its state is complete only
with a clean-shutdown marker, written as the last transaction of
:meth:`~dcounter_node._storage_sqlite.SQLiteStore.close` (:meth:`Database.mark_clean`) and
removed (durably) when the database is opened again. A database opened without it may have
lost the tail of its write-ahead log (an OS crash in ``batched`` mode, a torn disk) while
peers already hold those counts; resuming the same replica id below them would let their
higher count swallow the next acknowledged writes. ``SQLiteStore.open`` therefore reports
``clean_shutdown=False`` and the node binds a new replica id: the old id's counts stay as
stored and peers restore the rest by merge.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import sqlite3
import time
import uuid
from typing import TYPE_CHECKING, Literal

from dcounter_node import _storage_files as files
from dcounter_node._errors import CorruptStorageError, ForeignStorageError, StorageError
from dcounter_node._storage_named import load_named, register_functions, upsert_named
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
    from pathlib import Path

    from dcounter_node._storage_named import NamedCounts

__all__ = ["Database"]

_log = logging.getLogger("dcounter_node._storage_sqlite")

#: Old idempotency rows are deleted at most this often (and when over the cap).
_PRUNE_EVERY = 60.0


def _set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute(UPSERT_META, meta_row(key, value))


class Database:
    """One node's SQLite database and the files beside it (see the module docstring)."""

    def __init__(
        self,
        path: Path,
        *,
        durability: Literal["always", "batched"],
        node_address: str | None,
        key_ttl: float,
        max_keys: int,
    ) -> None:
        self._path = path
        self._durability = durability
        self._node_address = node_address
        self._key_ttl = key_ttl
        self._max_keys = max_keys
        self._conn: sqlite3.Connection | None = None
        self._wal = files.wal_path(path)
        self._marked_running = False
        self._key_rows = 0
        self._last_prune = 0.0
        #: What open() found (None for a new database, or once a new incarnation is bound).
        self.loaded: Loaded | None = None
        #: The unexpired Idempotency-Keys open() found, oldest first.
        self.stored_keys: list[StoredKey] = []

    def _storage_error(self, exc: sqlite3.Error, doing: str) -> StorageError:
        if exc.sqlite_errorname in ("SQLITE_BUSY", "SQLITE_LOCKED"):
            return StorageError(
                f"{self._path}: database is in use by another process "
                "(is another dcounter-node running on this data directory?)"
            )
        return CorruptStorageError(f"{self._path}: cannot {doing}: {exc}")

    def open(self) -> Loaded | None:
        """Open, validate, migrate and mark running; the contents, or None when new."""
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
            # Not same-thread: batched commits run on the event loop's thread (the store
            # never uses the connection from two threads at once).
            self._conn = conn = sqlite3.connect(
                path, isolation_level=None, timeout=0, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise self._storage_error(exc, "open the database") from exc
        try:
            # Exclusive: the lock is taken at the first read and kept until close().
            conn.execute("PRAGMA locking_mode = EXCLUSIVE")
            register_functions(conn)
            loaded = load(conn, path)
            if loaded is None:
                if identity is not None:
                    raise self._lost(identity, "holds no state")
                self._configure(conn)
                return None
            self._check(loaded, identity, facts)
            if loaded.version >= 3:
                loaded = dataclasses.replace(loaded, named=load_named(conn, path))
            self._configure(conn)
            if not facts.wal_exists and loaded.version == 1:
                # Schema 1 kept no marker; SQLite deletes the log only at a clean close.
                loaded.meta["clean_shutdown"] = loaded.replica_id
            loaded = self._start_sync(conn, loaded)
        except sqlite3.Error as exc:
            raise self._storage_error(exc, "read the database") from exc
        if identity is None:
            self._identity(loaded.meta).write(path)
        self.stored_keys = self._live_keys(loaded.keys)
        self._key_rows = len(loaded.keys)
        self.loaded = loaded
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
        else:
            # A checkpoint fsyncs: the store runs them on its worker thread instead of
            # letting a commit on the event loop trigger one (see SQLiteStore._write).
            conn.execute("PRAGMA wal_autocheckpoint = 0")
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

    def bind(self, replica_id: str) -> None:
        """Record the replica id of a new database or of a new incarnation."""
        conn = self._conn
        assert conn is not None  # open() succeeded
        if self.loaded is not None:
            # A new incarnation of an existing database.
            self._durably(conn, lambda: _set_meta(conn, "replica_id", replica_id))
            self.loaded = None
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
        self._identity(meta).write(self._path)

    def _transaction(self, conn: sqlite3.Connection, write: Callable[[], object]) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            write()
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def write(
        self,
        inc: dict[str, int],
        dec: dict[str, int],
        keys: list[StoredKey],
        named: NamedCounts | None = None,
    ) -> None:
        """Commit counts (each kept as the max of old and new), named counts (likewise) and
        keys in one transaction."""
        conn = self._conn
        assert conn is not None  # open() succeeded

        def write() -> None:
            if inc or dec:
                upsert_counts(conn, inc, dec)
            if named:
                upsert_named(conn, named)
            if keys:
                conn.executemany(INSERT_KEY, [key_row(key) for key in keys])
                self._key_rows += len(keys)
                self._prune_keys(conn)

        counts = len(inc) + len(dec)
        try:
            # One statement is a transaction of its own: no BEGIN and COMMIT needed.
            if counts == 1 and not keys and not named:
                upsert_counts(conn, inc, dec)
            elif not counts and not keys and named and len(named) == 1:
                upsert_named(conn, named)
            else:
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

    def mark_clean(self, replica_id: str) -> None:
        """Record a clean shutdown of ``replica_id`` (logged, not raised, if it fails)."""
        conn = self._conn
        assert conn is not None
        try:
            self._durably(conn, lambda: _set_meta(conn, "clean_shutdown", replica_id))
        except sqlite3.Error as exc:
            _log.error("%s: cannot record the clean shutdown: %s", self._path, exc)

    def log_size(self) -> int:
        """The size of the write-ahead log in bytes (0 if there is none)."""
        try:
            return os.stat(self._wal).st_size
        except OSError:
            return 0

    def checkpoint(self) -> None:
        """Fold the log into the database and empty it (a failure is logged, not raised:
        the log only keeps growing until the next checkpoint succeeds)."""
        conn = self._conn
        assert conn is not None
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            _log.warning("%s: checkpoint failed (will retry): %s", self._path, exc)

    def close(self) -> None:
        """Close the connection (SQLite checkpoints and removes the log); idempotent."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
            if self._marked_running:
                # SQLite folded the log into the file and removed it, unless that failed.
                files.clear_running(self._path)

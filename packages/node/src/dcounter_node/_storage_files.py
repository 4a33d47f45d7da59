"""The files beside a node's database that tell what happened to it while it was closed.

``<db>.identity.json``
    Written once, right after the database is created, and never changed: it names the
    database (its ``database_id``, also kept in the database's ``meta``). Its presence proves
    that state existed here, so a missing, empty or replaced database is refused instead of
    silently starting a new node with value 0.
``<db>-running``
    Present while a store has the database open. SQLite deletes the write-ahead log only when
    it has copied all of it into the database (a close), so a ``-running`` file without a
    ``-wal`` beside it means the log was lost after a crash: committed changes are missing
    and the node must not start on what is left.

All of this runs on the store's worker thread.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dcounter_node._errors import CorruptStorageError, StorageError

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "FileFacts",
    "Identity",
    "default_data_dir",
    "identity_path",
    "running_path",
    "wal_path",
]

_IDENTITY_FORMAT = "dcounter-node identity 1"


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


def identity_path(database: Path) -> Path:
    return database.with_name(database.stem + ".identity.json")


def running_path(database: Path) -> Path:
    return database.with_name(database.name + "-running")


def wal_path(database: Path) -> Path:
    return database.with_name(database.name + "-wal")


@dataclass(frozen=True, slots=True)
class Identity:
    """What the identity file records about the database it stands beside."""

    database_id: str
    created: str
    node_address: str | None

    @classmethod
    def read(cls, path: Path) -> Identity | None:
        """The identity in ``path``; None if there is none; CorruptStorageError if unreadable."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise CorruptStorageError(f"{path}: cannot read the identity file: {exc}") from exc
        try:
            data = json.loads(text)
            if data["format"] != _IDENTITY_FORMAT:
                raise ValueError(f"unknown format {data['format']!r}")
            address = data.get("node_address")
            return cls(str(data["database_id"]), str(data["created"]), address and str(address))
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptStorageError(f"{path}: the identity file is damaged: {exc}") from exc

    def write(self, database: Path) -> None:
        """Write beside ``database``, atomically and durably (temporary file, fsync, rename,
        fsync the directory)."""
        path = identity_path(database)
        data = {
            "format": _IDENTITY_FORMAT,
            "database": database.name,
            "database_id": self.database_id,
            "created": self.created,
            "node_address": self.node_address,
        }
        temporary = path.with_name(path.name + ".tmp")
        try:
            with temporary.open("w", encoding="utf-8") as file:
                json.dump(data, file, indent=2)
                file.write("\n")
                file.flush()
                os.fsync(file.fileno())
            temporary.replace(path)
            sync_directory(path.parent)
        except OSError as exc:
            raise StorageError(f"{path}: cannot write the identity file: {exc}") from exc


@dataclass(frozen=True, slots=True)
class FileFacts:
    """What was on disk before SQLite touched anything (opening creates a missing ``-wal``)."""

    database_size: int | None
    wal_exists: bool
    running_exists: bool

    @classmethod
    def look(cls, database: Path) -> FileFacts:
        try:
            size: int | None = database.stat().st_size
        except FileNotFoundError:
            size = None
        return cls(size, wal_path(database).exists(), running_path(database).exists())


def mark_running(database: Path) -> None:
    path = running_path(database)
    try:
        with path.open("w", encoding="utf-8") as file:
            file.write(f"{os.getpid()}\n")
            file.flush()
            os.fsync(file.fileno())
        sync_directory(path.parent)
    except OSError as exc:
        raise StorageError(f"{path}: cannot write: {exc}") from exc


def clear_running(database: Path) -> None:
    """Remove the ``-running`` file once SQLite has folded the log into the database."""
    if not wal_path(database).exists():
        with contextlib.suppress(OSError):
            running_path(database).unlink(missing_ok=True)
            sync_directory(database.parent)


def sync_directory(directory: Path) -> None:
    """Make created, renamed and removed names in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

"""Fixtures for the durable-state tests: database paths, raw file access, node processes.

Nothing here sleeps in place of synchronization: waits poll a condition against a deadline,
and every node process started through the ``nodes`` fixture is stopped at teardown.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, closing, contextmanager
from typing import TYPE_CHECKING

import aiohttp
import pytest

from dcounter_node._storage_sqlite import DATABASE_FILENAME

if TYPE_CHECKING:
    from pathlib import Path

    from tests.conftest import NodeProcesses

#: Generous bound for things that normally take well under a second (2 busy cores).
TIMEOUT = 30.0

RawDatabase = Callable[..., AbstractContextManager[sqlite3.Connection]]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Where a test's database lives (the file does not exist yet)."""
    return tmp_path / "data" / DATABASE_FILENAME


@contextmanager
def _raw_database(path: Path, *, ignore_checks: bool = False) -> Iterator[sqlite3.Connection]:
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        if ignore_checks:
            conn.execute("PRAGMA ignore_check_constraints = ON")
        yield conn


@pytest.fixture
def raw_database() -> RawDatabase:
    """Open a store's file with plain sqlite3 (autocommit) to inspect or tamper with it."""
    return _raw_database


#: Every node here binds free ports, syncs quickly and logs only warnings.
QUICK_NODE = (
    "--listen",
    "127.0.0.1:0",
    "--http",
    "127.0.0.1:0",
    "--sync-interval",
    "0.1",
    "--log-level",
    "warning",
)


@pytest.fixture
def nodes(node_processes: NodeProcesses) -> NodeProcesses:
    """Node processes with :data:`QUICK_NODE` flags; each still running is stopped after."""
    node_processes.defaults = QUICK_NODE
    return node_processes


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client session (closed at teardown)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session:
        yield session

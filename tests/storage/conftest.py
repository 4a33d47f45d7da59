"""Fixtures for the durable-state tests: database paths, raw file access, node processes.

Nothing here sleeps in place of synchronization: waits poll a condition against a deadline,
and every node process started through the ``nodes`` fixture is stopped at teardown.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, closing, contextmanager
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

import aiohttp
import pytest

from dcounter_node._storage_sqlite import DATABASE_FILENAME

if TYPE_CHECKING:
    from pathlib import Path

#: Generous bound for things that normally take well under a second (2 busy cores).
TIMEOUT = 30.0
READY = b"dcounter-node ready "

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


async def wait_for(
    check: Callable[[], Awaitable[bool]],
    what: str,
    timeout: float = TIMEOUT,  # noqa: ASYNC109 - the deadline is the point
) -> None:
    """Poll ``check`` until it returns True; fail the test after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)


@dataclass
class NodeProcess:
    """A ``python -m dcounter_node`` child process, from its ready line on."""

    process: asyncio.subprocess.Process
    log: Path
    gossip: str = ""
    http: str = ""
    replica: str = ""

    @property
    def url(self) -> str:
        return f"http://{self.http}"

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    async def stop(self) -> int:
        """SIGTERM (a clean shutdown) and the exit status."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.process.wait(), TIMEOUT)

    async def kill(self) -> int:
        """SIGKILL: no shutdown code runs at all."""
        if self.process.returncode is None:
            self.process.kill()
        return await asyncio.wait_for(self.process.wait(), TIMEOUT)


def _open_log(path: Path) -> IO[bytes]:
    return path.open("ab")


class NodeLauncher:
    """Starts node processes on free ports, each logging to its own file in tmp_path."""

    def __init__(self, tmp_path: Path) -> None:
        self._tmp_path = tmp_path
        self.started: list[NodeProcess] = []

    async def spawn(self, name: str, *args: str, env: dict[str, str] | None = None) -> NodeProcess:
        """Run ``dcounter-node`` (ports 0, quick sync) with extra ``args``; do not wait."""
        log = self._tmp_path / f"{name}.log"
        with _open_log(log) as stderr:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "dcounter_node",
                "--listen",
                "127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
                "--sync-interval",
                "0.1",
                "--log-level",
                "warning",
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                env=env,
            )
        node = NodeProcess(process, log)
        self.started.append(node)
        return node

    async def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> NodeProcess:
        """Spawn a node and wait for its ready line (fail with its log if it exits)."""
        node = await self.spawn(name, *args, env=env)
        assert node.process.stdout is not None
        line = await asyncio.wait_for(node.process.stdout.readline(), TIMEOUT)
        if not line.startswith(READY):
            status = await node.kill()
            raise AssertionError(f"node {name} exited ({status}): {node.log_text()}")
        fields = dict(item.split("=", 1) for item in line[len(READY) :].decode().split())
        node.gossip, node.http, node.replica = fields["gossip"], fields["http"], fields["replica"]
        return node

    async def close(self) -> None:
        for node in self.started:
            with contextlib.suppress(ProcessLookupError):
                await node.stop()


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[NodeLauncher]:
    """Launch node processes; each still running is stopped at teardown."""
    launcher = NodeLauncher(tmp_path)
    yield launcher
    await launcher.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client session (closed at teardown)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session:
        yield session

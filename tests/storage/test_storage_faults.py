"""Issue 12 item 4: a disk that fails (full, then freed) never loses or invents a count.

The store-level tests inject a writer fault (an SQLite authorizer that denies writes); the
node-process tests run a node on a real, tiny tmpfs that they fill up (root only).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import sqlite3
import subprocess
import threading
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from dcounter_crdt import CounterState
from dcounter_node import Node
from dcounter_node._cli import EXIT_STORAGE
from dcounter_node._errors import StorageError
from dcounter_node._http import create_app, start_http_server
from dcounter_node._storage import StoredState
from dcounter_node._storage_named import upsert_named as real_upsert_named
from dcounter_node._storage_schema import upsert_counts
from dcounter_node._storage_sqlite import SQLiteStore
from dcounter_node.testing import wait_until
from dcounter_protocol._tcp import TCPTransport

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

    from tests.conftest import NodeProcesses

    from dcounter_node._storage_named import NamedCounts
    from dcounter_node.testing import NodeProcess

REPLICA = "127.0.0.1:7001#a1b2"


@pytest.fixture
def deny_writes(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """While set, every write transaction fails as SQLite fails it on a full disk (counts
    of the default counter and of named ones alike)."""
    deny = threading.Event()

    def upsert(conn: sqlite3.Connection, inc: dict[str, int], dec: dict[str, int]) -> None:
        if deny.is_set():
            raise sqlite3.OperationalError("database or disk is full")
        upsert_counts(conn, inc, dec)

    def upsert_named(conn: sqlite3.Connection, counts: NamedCounts) -> None:
        if deny.is_set():
            raise sqlite3.OperationalError("database or disk is full")
        real_upsert_named(conn, counts)

    monkeypatch.setattr("dcounter_node._storage_database.upsert_counts", upsert)
    monkeypatch.setattr("dcounter_node._storage_database.upsert_named", upsert_named)
    return deny


async def failing_store(db_path: Path, deny_writes: threading.Event) -> SQLiteStore:
    """A store that committed {REPLICA: 1}, then failed to commit {REPLICA: 2}."""
    store = SQLiteStore(db_path)
    assert await store.open() is None
    await store.bind(REPLICA)
    store.stage(CounterState.from_maps({REPLICA: 1}))
    await store.commit()
    deny_writes.set()
    store.stage(CounterState.from_maps({REPLICA: 2}))
    with pytest.raises(StorageError, match="not persisted yet"):
        await store.commit()
    return store


async def test_a_failing_writer_is_retried_until_it_recovers(
    db_path: Path, deny_writes: threading.Event
) -> None:
    store = await failing_store(db_path, deny_writes)
    assert store.problem is not None
    assert "database or disk is full" in store.problem
    # Fails at once while the problem lasts; shows only what was committed.
    with pytest.raises(StorageError, match="not persisted yet"):
        await store.commit()
    assert store.committed_state() == CounterState.from_maps({REPLICA: 1})

    deny_writes.clear()

    async def recovered() -> bool:
        return store.problem is None

    await wait_until(recovered, what="the store to write again")
    assert store.committed_state() == CounterState.from_maps({REPLICA: 2})
    await store.close()
    reopened = SQLiteStore(db_path)
    assert await reopened.open() == StoredState(REPLICA, CounterState.from_maps({REPLICA: 2}))
    await reopened.close()


async def test_closing_while_writes_fail_reports_it_and_leaves_an_unclean_shutdown(
    db_path: Path, deny_writes: threading.Event
) -> None:
    store = await failing_store(db_path, deny_writes)
    with pytest.raises(StorageError, match=r"1 staged change\(s\) could not be saved"):
        await store.close()
    deny_writes.clear()

    reopened = SQLiteStore(db_path)
    stored = await reopened.open()
    await reopened.close()
    assert stored == StoredState(
        REPLICA, CounterState.from_maps({REPLICA: 1}), clean_shutdown=False
    )


# -- what the API shows while writes fail ----------------------------------------------


async def _watched(stream: aiohttp.StreamReader) -> int:
    """The value of the next ``data:`` event of a /counter/watch stream."""
    while True:
        line = await asyncio.wait_for(stream.readline(), 30)
        assert line, "the stream ended"
        if line.startswith(b"data: "):
            value = json.loads(line[6:])["value"]
            assert isinstance(value, int)
            return value


@contextlib.asynccontextmanager
async def served_store(
    db_path: Path, deny_writes: threading.Event
) -> AsyncIterator[tuple[Node, str, aiohttp.ClientSession]]:
    """A node on a SQLite store with its HTTP API: (node, base URL, a client session)."""
    store = SQLiteStore(db_path)
    node = Node(TCPTransport("127.0.0.1:0"), store=store)
    await node.start()
    server = await start_http_server(create_app(node, storage=store), "127.0.0.1:0")
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
            yield node, f"http://{server.address}", http
    finally:
        deny_writes.clear()  # so that closing commits what is staged
        await server.close()
        await node.close()


async def test_every_view_shows_only_committed_counts_while_writes_fail(
    db_path: Path, deny_writes: threading.Event
) -> None:
    async with served_store(db_path, deny_writes) as (node, url, http):

        async def text(path: str) -> str:
            async with http.get(url + path) as response:
                return await response.text()

        async def metric(name: str) -> float:
            lines = (await text("/metrics")).splitlines()
            return float(next(x for x in lines if x.startswith(name + " ")).split()[1])

        async with http.post(url + "/increment") as response:
            assert response.status == 200
        deny_writes.set()
        async with http.post(url + "/increment") as response:
            assert response.status == 503  # counted, not committed: in doubt
        assert node.value == 2
        assert json.loads(await text("/counter"))["value"] == 1
        assert await text("/counter/value") == "1\n"
        assert await metric("dcounter_value") == 1.0
        assert await metric("dcounter_storage_failing") == 1.0
        assert json.loads(await text("/cluster"))["node"]["value"] == 1
        async with http.get(url + "/counter/watch") as watch:
            assert await _watched(watch.content) == 1
            deny_writes.clear()  # the retried commit now succeeds: the stream says so
            assert await _watched(watch.content) == 2
        assert await metric("dcounter_value") == 2.0
        assert await metric("dcounter_storage_failing") == 0.0
        assert await text("/counter/value") == "2\n"


async def test_a_named_counter_shows_only_committed_counts_while_writes_fail(
    db_path: Path, deny_writes: threading.Event
) -> None:
    async with served_store(db_path, deny_writes) as (node, url, http):
        url += "/counters/pages"
        async with http.post(url + "/increment") as response:
            assert response.status == 200
        deny_writes.set()
        async with http.post(url + "/increment") as response:
            assert response.status == 503  # counted, not committed: in doubt
        assert node.counters.value("pages") == 2
        async with http.get(url) as response:
            assert (await response.json())["value"] == 1
        async with http.get(url + "/watch") as watch:
            assert await _watched(watch.content) == 1
            deny_writes.clear()  # the retried commit now succeeds: the stream says so
            assert await _watched(watch.content) == 2


# -- a node on a tiny file system -------------------------------------------------------


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        # Lazy: a node still running is stopped by the nodes fixture after this.
        subprocess.run(["umount", "-l", str(path)], check=True)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB file system (a tmpfs mounted for the test)."""
    with tmpfs(tmp_path / "small", "2m") as path:
        yield path


def fill(disk: Path) -> Path:
    """Write a file until the file system is full; return it."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
    finally:
        os.close(fd)
    return filler


async def post(http: aiohttp.ClientSession, node: NodeProcess, key: str) -> tuple[int, Any]:
    headers = {"Idempotency-Key": key}
    async with http.post(f"{node.url}/increment", json={"by": 1}, headers=headers) as response:
        return response.status, await response.json()


async def get(http: aiohttp.ClientSession, node: NodeProcess, path: str) -> tuple[int, Any]:
    async with http.get(f"{node.url}{path}") as response:
        return response.status, await response.json()


@pytest.mark.slow
async def test_a_full_disk_fails_writes_until_space_returns(
    nodes: NodeProcesses, http: aiohttp.ClientSession, small_disk: Path
) -> None:
    node = await nodes.start("a", "--data-dir", str(small_disk / "data"))
    for i in range(3):
        assert (await post(http, node, f"k{i}"))[0] == 200
    filler = fill(small_disk)

    status, answer = await post(http, node, "in-doubt")
    assert status == 503
    assert "not persisted" in answer["error"]
    status, health = await get(http, node, "/health")
    assert status == 503
    assert health["status"] == "storage failing"
    assert "full" in health["reason"]
    # Only committed counts are shown; new writes are refused before they count.
    assert (await get(http, node, "/counter"))[1]["value"] == 3
    status, answer = await post(http, node, "refused")
    assert (status, "storage is failing" in answer["error"]) == (503, True)

    filler.unlink()

    async def healthy() -> bool:
        return (await get(http, node, "/health"))[0] == 200

    await wait_until(healthy, what="the node to recover once space returns")
    # The write in doubt was committed on recovery; its retry is answered, not counted.
    assert await post(http, node, "in-doubt") == (200, {"value": 4})
    assert await post(http, node, "after") == (200, {"value": 5})
    assert (await get(http, node, "/counter"))[1]["value"] == 5
    assert await node.stop() == 0


@pytest.mark.slow
async def test_sigterm_while_the_disk_is_full_exits_with_one_line(
    nodes: NodeProcesses, http: aiohttp.ClientSession, small_disk: Path
) -> None:
    node = await nodes.start("a", "--data-dir", str(small_disk / "data"))
    assert (await post(http, node, "first"))[0] == 200
    fill(small_disk)
    assert (await post(http, node, "lost"))[0] == 503

    assert await node.stop() == EXIT_STORAGE
    log = node.log_text()
    assert "Traceback" not in log
    errors = [line for line in log.splitlines() if line.startswith("dcounter-node: error:")]
    assert len(errors) == 1, log
    assert "stopped without saving every change" in errors[0]

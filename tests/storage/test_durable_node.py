"""Node processes on a data directory: kill -9, restart, and exact convergence."""

from __future__ import annotations

import asyncio
import os
import random
import signal
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from dcounter_crdt import CounterState
from dcounter_node._cli import EXIT_STORAGE
from dcounter_node._storage_sqlite import DATABASE_FILENAME, SQLiteStore
from dcounter_node.testing import wait_until

if TYPE_CHECKING:
    from pathlib import Path

    from tests.conftest import NodeProcesses

    from dcounter_node._storage import StoredState
    from dcounter_node.testing import NodeProcess

    from .conftest import RawDatabase

pytestmark = pytest.mark.slow


@dataclass
class Ledger:
    """What a client was told: acknowledged amounts, and amounts left without an answer."""

    increments: int = 0
    decrements: int = 0
    unanswered: int = 0

    @property
    def total(self) -> int:
        return self.increments - self.decrements


async def count(
    http: aiohttp.ClientSession, node: NodeProcess, ledger: Ledger, op: str, by: int
) -> None:
    """One write; the ledger records it only once the node has acknowledged it."""
    async with http.post(f"{node.url}/{op}", json={"by": by}) as response:
        assert response.status == 200, await response.text()
        await response.json()
    if op == "increment":
        ledger.increments += by
    else:
        ledger.decrements += by


async def write_until_refused(
    http: aiohttp.ClientSession, node: NodeProcess, ledger: Ledger
) -> None:
    """Increment by 1, one request at a time, until a request gets no answer."""
    while True:
        try:
            await count(http, node, ledger, "increment", 1)
        except aiohttp.ClientError:
            ledger.unanswered += 1
            return


async def write_until_stopped(
    http: aiohttp.ClientSession, node: NodeProcess, ledger: Ledger, stop: asyncio.Event
) -> None:
    """Random increments and decrements (seeded), one at a time, until ``stop`` is set
    (or 40 writes are done: the node under test should get most of the CPU)."""
    rng = random.Random(7)
    for _ in range(40):
        if stop.is_set():
            return
        await count(http, node, ledger, rng.choice(["increment", "decrement"]), rng.randint(1, 5))


async def counter(http: aiohttp.ClientSession, node: NodeProcess) -> dict[str, Any]:
    async with http.get(f"{node.url}/counter") as response:
        assert response.status == 200
        result: dict[str, Any] = await response.json()
        return result


async def add_peer(http: aiohttp.ClientSession, node: NodeProcess, peer: str) -> None:
    async with http.post(f"{node.url}/peers", json={"addr": peer}) as response:
        assert response.status in (200, 201)


async def converged(http: aiohttp.ClientSession, nodes: list[NodeProcess], value: int) -> None:
    async def check() -> bool:
        return all([(await counter(http, node))["value"] == value for node in nodes])

    await wait_until(check, what=f"every node to reach {value}")


async def start_pair(
    nodes: NodeProcesses, http: aiohttp.ClientSession, *a_args: str
) -> tuple[NodeProcess, NodeProcess]:
    """Node a (with ``a_args``) and an in-memory node b, started together, peers of each other."""
    a, b = await asyncio.gather(nodes.start("a", *a_args), nodes.start("b", "--in-memory"))
    await add_peer(http, a, b.gossip)
    await add_peer(http, b, a.gossip)
    return a, b


async def stored_state(path: Path) -> StoredState:
    store = SQLiteStore(path)
    try:
        stored = await store.open()
    finally:
        await store.close()
    assert stored is not None
    return stored


@pytest.mark.parametrize("durability", ["always", "batched"])
async def test_kill_9_mid_stream_then_restart_on_the_data_dir_converges_exactly(
    nodes: NodeProcesses, http: aiohttp.ClientSession, tmp_path: Path, durability: str
) -> None:
    data = tmp_path / "a-data"
    a_args = ("--data-dir", str(data), "--durability", durability)
    a, b = await start_pair(nodes, http, *a_args)
    on_a, on_b = Ledger(), Ledger()
    stop_b = asyncio.Event()
    writing_b = asyncio.create_task(write_until_stopped(http, b, on_b, stop_b))
    writing_a = asyncio.create_task(write_until_refused(http, a, on_a))

    async def enough_acknowledged() -> bool:
        return on_a.increments >= 60

    await wait_until(enough_acknowledged, what="60 acknowledged increments on a")
    assert await a.kill() == -signal.SIGKILL
    await writing_a
    stop_b.set()
    await writing_b
    assert on_a.unanswered == 1

    # The one request in doubt is settled by what the dead node committed: every
    # acknowledged increment is there, and at most the unanswered one besides.
    stored = await stored_state(data / DATABASE_FILENAME)
    assert stored.replica_id == a.replica
    committed = stored.state.increments[a.replica]
    assert on_a.increments <= committed <= on_a.increments + on_a.unanswered

    # Killed, so not provably complete: a new incarnation, the old id's counts kept.
    restarted = await nodes.start("a-restarted", *a_args, "--peers", b.gossip)
    assert restarted.replica != a.replica
    await add_peer(http, b, restarted.gossip)
    after_restart = Ledger()
    for _ in range(20):
        await count(http, restarted, after_restart, "increment", 1)

    await converged(http, [restarted, b], committed + after_restart.total + on_b.total)
    for node in (restarted, b):
        increments = (await counter(http, node))["increments"]
        assert (increments[a.replica], increments[restarted.replica]) == (committed, 20)


async def test_restart_without_the_data_dir_is_exact_with_a_new_replica_id(
    nodes: NodeProcesses, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    a, b = await start_pair(nodes, http, "--data-dir", str(tmp_path / "a-data"))
    first, on_b = Ledger(), Ledger()
    for i in range(20):
        await count(http, a, first, "increment", i % 4 + 1)
        await count(http, b, on_b, "decrement", 1)
    await converged(http, [a, b], first.total + on_b.total)
    assert await a.stop() == 0

    fresh = await nodes.start("a-fresh", "--in-memory", "--peers", b.gossip)
    assert fresh.replica != a.replica
    await add_peer(http, b, fresh.gossip)
    second = Ledger()
    for i in range(20):
        await count(http, fresh, second, "increment", i % 3 + 1)

    await converged(http, [fresh, b], first.total + second.total + on_b.total)
    state = await counter(http, fresh)
    assert state["increments"][a.replica] == first.increments
    assert state["increments"][fresh.replica] == second.increments


# -- refusals ---------------------------------------------------------------------------


def write_garbage(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    garbage = random.Random(11).randbytes(4096)
    path.write_bytes(garbage)
    return garbage


async def saved_database(path: Path, node_address: str) -> None:
    store = SQLiteStore(path, node_address=node_address)
    assert await store.open() is None
    await store.bind(f"{node_address}#0001")
    store.stage(CounterState.from_maps({f"{node_address}#0001": 5}))
    await store.close()


async def test_unusable_databases_stop_the_node_with_exit_3(
    nodes: NodeProcesses, tmp_path: Path, raw_database: RawDatabase
) -> None:
    corrupt = tmp_path / "corrupt" / DATABASE_FILENAME
    garbage = write_garbage(corrupt)
    foreign = tmp_path / "foreign" / DATABASE_FILENAME
    await saved_database(foreign, "127.0.0.1:7001")
    newer = tmp_path / "newer" / DATABASE_FILENAME
    await saved_database(newer, "127.0.0.1:0")
    with raw_database(newer) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    expected = {
        corrupt: f"dcounter-node: error: {corrupt}: cannot read the database",
        foreign: f"dcounter-node: error: {foreign}: the database belongs to node '127.0.0.1:7001'",
        newer: f"dcounter-node: error: {newer}: schema version 99 is newer",
    }

    # Started together: each exits at once, so they need not wait for one another.
    refused = await asyncio.gather(
        *(nodes.spawn(path.parent.name, "--data-dir", str(path.parent)) for path in expected)
    )
    for node, (path, message) in zip(refused, expected.items(), strict=True):
        assert await node.wait_exit() == EXIT_STORAGE == 3, path
        assert message in node.log_text()
    assert corrupt.read_bytes() == garbage
    assert (await stored_state(foreign)).replica_id == "127.0.0.1:7001#0001"


async def test_a_data_dir_in_use_stops_a_second_node_with_exit_3(
    nodes: NodeProcesses, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    first = await nodes.start("first", "--data-dir", str(data))

    second = await nodes.spawn("second", "--data-dir", str(data))
    assert await second.wait_exit() == EXIT_STORAGE
    assert "in use by another process" in second.log_text()
    assert await first.stop() == 0


async def test_listen_port_0_without_a_data_dir_runs_in_memory_with_a_warning(
    nodes: NodeProcesses, tmp_path: Path
) -> None:
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "xdg")}
    node = await nodes.start("a", env=env)
    assert await node.stop() == 0
    assert "running in memory" in node.log_text()
    assert not (tmp_path / "xdg").exists()

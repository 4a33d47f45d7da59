"""Named counters of a node process across SIGTERM and kill -9 restarts (issue 20)."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import aiohttp
import pytest

from dcounter_node._cli import EXIT_STORAGE
from dcounter_node._storage_sqlite import DATABASE_FILENAME
from dcounter_node.testing import wait_until

from .test_durable_node import stored_state

if TYPE_CHECKING:
    from pathlib import Path

    from tests.conftest import NodeProcesses

    from dcounter_node.testing import NodeProcess

    from .conftest import RawDatabase

pytestmark = pytest.mark.slow

#: Names that need percent-encoding too.
NAMES = ("pages/home", "stock 42", "ünï")


def url(node: NodeProcess, name: str, *rest: str) -> str:
    return "/".join((f"{node.url}/counters", quote(name, safe=""), *rest))


async def increment(http: aiohttp.ClientSession, node: NodeProcess, name: str, by: int) -> None:
    async with http.post(url(node, name, "increment"), json={"by": by}) as response:
        assert response.status == 200, await response.text()


async def values(http: aiohttp.ClientSession, node: NodeProcess) -> dict[str, int]:
    async with http.get(f"{node.url}/counters") as response:
        assert response.status == 200
        body: dict[str, Any] = await response.json()
    return {entry["name"]: entry["value"] for entry in body["counters"]}


@pytest.mark.parametrize("durability", ["always", "batched"])
async def test_named_counts_survive_sigterm_and_a_restart(
    nodes: NodeProcesses, http: aiohttp.ClientSession, tmp_path: Path, durability: str
) -> None:
    args = ("--data-dir", str(tmp_path / "data"), "--durability", durability)
    node = await nodes.start("a", *args)
    expected: Counter[str] = Counter()
    for i in range(30):
        name = NAMES[i % len(NAMES)]
        await increment(http, node, name, i + 1)
        expected[name] += i + 1
    assert await node.stop() == 0

    restarted = await nodes.start("a-again", *args)
    assert restarted.replica == node.replica  # a clean shutdown: the same replica
    assert await values(http, restarted) == dict(expected)
    await increment(http, restarted, NAMES[0], 1000)
    assert (await values(http, restarted))[NAMES[0]] == expected[NAMES[0]] + 1000


@pytest.mark.parametrize("durability", ["always", "batched"])
async def test_kill_9_keeps_every_acknowledged_named_write(
    nodes: NodeProcesses, http: aiohttp.ClientSession, tmp_path: Path, durability: str
) -> None:
    data = tmp_path / "data"
    args = ("--data-dir", str(data), "--durability", durability)
    node = await nodes.start("a", *args)
    acknowledged: Counter[str] = Counter()
    in_doubt: list[str] = []

    async def write_until_refused() -> None:
        i = 0
        while True:
            name = NAMES[i % len(NAMES)]
            try:
                await increment(http, node, name, 1)
            except aiohttp.ClientError:
                in_doubt.append(name)
                return
            acknowledged[name] += 1
            i += 1

    writing = asyncio.create_task(write_until_refused())
    await wait_until(lambda: acknowledged.total() >= 60, what="60 acknowledged named increments")
    assert await node.kill() == -signal.SIGKILL
    await writing
    assert len(in_doubt) == 1

    # Each name holds every acknowledged write, and at most the one in doubt besides.
    stored = await stored_state(data / DATABASE_FILENAME)
    committed = {name: stored.named.value(name) for name in NAMES}
    for name in NAMES:
        doubt = in_doubt.count(name)
        assert acknowledged[name] <= committed[name] <= acknowledged[name] + doubt, name

    # Killed: a new incarnation that starts from the old replica's stored entries.
    restarted = await nodes.start("a-restarted", *args)
    assert restarted.replica != node.replica
    assert await values(http, restarted) == committed
    await increment(http, restarted, NAMES[1], 5)
    async with http.get(url(restarted, NAMES[1])) as response:
        body = await response.json()
    assert body["increments"] == {node.replica: committed[NAMES[1]], restarted.replica: 5}


async def test_a_damaged_named_row_stops_the_node_with_exit_3(
    nodes: NodeProcesses, http: aiohttp.ClientSession, tmp_path: Path, raw_database: RawDatabase
) -> None:
    data = tmp_path / "data"
    node = await nodes.start("a", "--data-dir", str(data))
    await increment(http, node, NAMES[0], 5)
    assert await node.stop() == 0
    with raw_database(data / DATABASE_FILENAME) as conn:
        assert conn.execute("UPDATE named_counts SET inc = '00000000000000000050'").rowcount == 1

    refused = await nodes.spawn("a-again", "--data-dir", str(data))
    assert await refused.wait_exit() == EXIT_STORAGE
    errors = [line for line in refused.log_text().splitlines() if "error:" in line]
    assert len(errors) == 1, refused.log_text()
    assert f"checksum mismatch in the count of {NAMES[0]!r}" in errors[0]


async def test_a_named_write_retried_after_a_restart_counts_once(
    nodes: NodeProcesses, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    args = ("--data-dir", str(tmp_path / "data"))
    node = await nodes.start("a", *args)
    headers = {"Idempotency-Key": "order-9"}

    async def retry(target: NodeProcess, name: str) -> tuple[int, Any]:
        async with http.post(
            url(target, name, "increment"), json={"by": 4}, headers=headers
        ) as response:
            return response.status, await response.json()

    assert await retry(node, NAMES[2]) == (200, {"value": 4})
    assert await node.stop() == 0

    restarted = await nodes.start("a-again", *args)
    # The stored key answers the retry, and still belongs to the counter it counted.
    assert await retry(restarted, NAMES[2]) == (200, {"value": 4})
    status, body = await retry(restarted, NAMES[0])
    assert status == 422, body
    assert await values(http, restarted) == {NAMES[2]: 4}

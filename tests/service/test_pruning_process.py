"""Pruning between dcounter-node processes: a crash-restart's old entry goes, the value stays.

One scenario (process tests are slow on a shared 2-core machine): three nodes joined through
one seed; one keeps its state in a data directory, is killed (-9) and restarted (a new
incarnation), and after --prune-after its two incarnations are one entry on every node,
with the value unchanged; a clean restart then resumes the pruned id from its data
directory and continues under its successor, as its pruning.json says.
"""

from __future__ import annotations

import re
import signal
from typing import TYPE_CHECKING, Any

import pytest

from dcounter_node.testing import free_port, wait_until

if TYPE_CHECKING:
    from pathlib import Path

    import aiohttp
    from tests.conftest import NodeProcesses

    from dcounter_node.testing import NodeProcess

pytestmark = pytest.mark.slow

DEADLINE = 60.0
QUICK = (
    "--http",
    "127.0.0.1:0",
    "--sync-interval",
    "0.1",
    "--probe-interval",
    "0.2",
    "--suspect-timeout",
    "1.5",
    "--prune-after",
    "1.5",
)
MADE = re.compile(r"^dcounter_pruning_records_made_total (\S+)$", re.M)


async def counter(http: aiohttp.ClientSession, node: NodeProcess) -> dict[str, Any]:
    async with http.get(f"{node.url}/counter") as response:
        assert response.status == 200
        document: dict[str, Any] = await response.json()
    return document


def entries(document: dict[str, Any]) -> set[str]:
    return set(document["increments"]) | set(document["decrements"])


async def write(http: aiohttp.ClientSession, node: NodeProcess, route: str, by: int) -> None:
    async with http.post(f"{node.url}/{route}", json={"by": by}) as response:
        assert response.status == 200


async def all_hold(
    http: aiohttp.ClientSession, nodes: list[NodeProcess], total: int, count: int
) -> list[dict[str, Any]]:
    """Wait until every node has ``total`` in ``count`` entries, all the same."""
    documents: list[dict[str, Any]] = []

    async def check() -> bool:
        documents[:] = [await counter(http, node) for node in nodes]
        first = documents[0]
        return all(
            d["value"] == total
            and len(entries(d)) == count
            and (d["increments"], d["decrements"]) == (first["increments"], first["decrements"])
            for d in documents
        )

    await wait_until(
        check, within=DEADLINE, what=lambda: f"{total} in {count} entries: {documents}"
    )
    return documents


async def test_a_crash_restarts_old_entry_is_pruned_and_the_value_kept(
    node_processes: NodeProcesses, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    seed = await node_processes.start("seed", "--listen", "127.0.0.1:0", "--in-memory", *QUICK)
    other = await node_processes.start(
        "other", "--listen", "127.0.0.1:0", "--join", seed.gossip, "--in-memory", *QUICK
    )
    durable = (
        "--listen",
        f"127.0.0.1:{free_port()}",
        "--join",
        seed.gossip,
        "--data-dir",
        str(tmp_path / "data"),
        *QUICK,
    )
    crasher = await node_processes.start("crasher", *durable)
    await write(http, seed, "increment", 10)
    await write(http, other, "decrement", 3)
    await write(http, crasher, "increment", 7)
    await write(http, crasher, "decrement", 2)
    await all_hold(http, [seed, other, crasher], 12, 3)

    await crasher.kill()
    again = await node_processes.start("crasher-again", *durable)
    assert again.replica != crasher.replica  # no clean shutdown: a new incarnation
    await write(http, again, "increment", 5)
    nodes = [seed, other, again]
    # Both incarnations collapse into the successor of the new one, on every node.
    documents = await all_hold(http, nodes, 17, 3)
    successor = again.replica + "'"
    assert crasher.replica not in entries(documents[0])
    assert documents[0]["increments"][successor] == 12
    assert documents[0]["decrements"][successor] == 2
    async with http.get(f"{again.url}/metrics") as response:
        made = MADE.search(await response.text())
    assert made is not None
    assert float(made.group(1)) == 1
    assert "pruned 2 replica entries into" in again.log_text()

    async def listed_as_successor() -> bool:
        async with http.get(f"{seed.url}/members") as response:
            listed = (await response.json())["members"]
        return any(m["address"] == again.gossip and m["replica"] == successor for m in listed)

    await wait_until(listed_as_successor, within=DEADLINE, what="the new id in /members")
    await write(http, again, "increment", 1)
    await all_hold(http, nodes, 18, 3)

    # A clean restart resumes the pruned id from the data directory; pruning.json moves it
    # to its successor at once, and nothing is counted twice.
    again.signal(signal.SIGTERM)
    assert await again.wait_exit() == 0
    resumed = await node_processes.start("crasher-resumed", *durable)
    assert resumed.replica == successor
    await write(http, resumed, "increment", 2)
    await all_hold(http, [seed, other, resumed], 20, 3)

"""Membership between dcounter-node processes: join through one seed, crash, restart, leave.

One scenario on purpose (process tests are slow on a shared 2-core machine): every step
waits on a condition with a generous deadline; the timeouts configured are short so the
whole run takes seconds.
"""

from __future__ import annotations

import re
import signal
from typing import TYPE_CHECKING, Any

import pytest

from dcounter_node.testing import free_port, wait_until

if TYPE_CHECKING:
    import aiohttp
    from tests.conftest import NodeProcesses

    from dcounter_node.testing import NodeProcess

pytestmark = pytest.mark.slow

#: Generous: these normally take a second or two.
DEADLINE = 60.0
MEMBERSHIP = ("--probe-interval", "0.2", "--suspect-timeout", "1.5")
SUSPECTED = re.compile(r'^dcounter_member_changes_total\{state="suspect"\} (\S+)$', re.M)
QUICK = ("--http", "127.0.0.1:0", "--sync-interval", "0.1", "--in-memory", *MEMBERSHIP)


async def members(http: aiohttp.ClientSession, node: NodeProcess) -> dict[str, str]:
    async with http.get(f"{node.url}/members") as response:
        assert response.status == 200
        document: dict[str, Any] = await response.json()
    return {m["address"]: m["state"] for m in document["members"]}


async def value(http: aiohttp.ClientSession, node: NodeProcess) -> int:
    async with http.get(f"{node.url}/counter/value") as response:
        return int(await response.text())


async def increment(http: aiohttp.ClientSession, node: NodeProcess, by: int) -> None:
    async with http.post(f"{node.url}/increment", json={"by": by}) as response:
        assert response.status == 200


async def all_see(
    http: aiohttp.ClientSession, nodes: list[NodeProcess], expected: dict[str, str]
) -> None:
    views: list[dict[str, str]] = []

    async def check() -> bool:
        views[:] = [await members(http, node) for node in nodes]
        return all(view == expected for view in views)

    def what() -> str:
        return f"members {expected} on every node; they list {views}"

    await wait_until(check, within=DEADLINE, what=what)


async def all_count(http: aiohttp.ClientSession, nodes: list[NodeProcess], total: int) -> None:
    async def check() -> bool:
        return all([await value(http, node) == total for node in nodes])

    await wait_until(check, within=DEADLINE, what=f"value {total} on every node")


async def test_join_crash_restart_and_leave(
    node_processes: NodeProcesses, http: aiohttp.ClientSession
) -> None:
    seed = await node_processes.start("seed", "--listen", "127.0.0.1:0", *QUICK)
    victim_address = f"127.0.0.1:{free_port()}"
    victim_flags = ("--listen", victim_address, "--join", seed.gossip, *QUICK)
    others = [
        await node_processes.start(
            f"n{i}", "--listen", "127.0.0.1:0", "--join", seed.gossip, *QUICK
        )
        for i in range(3)
    ]
    victim = await node_processes.start("victim", *victim_flags)
    nodes = [seed, *others, victim]
    addresses = [node.gossip for node in nodes]
    assert victim.gossip == victim_address

    # Each knew one address; all five list all five, alive.
    await all_see(http, nodes, dict.fromkeys(addresses, "alive"))
    for index, node in enumerate(nodes):
        await increment(http, node, index + 1)
    await all_count(http, nodes, 15)

    # kill -9: suspected, then dead, on every survivor; the counter keeps converging.
    await victim.kill()
    survivors = nodes[:-1]
    await all_see(http, survivors, {**dict.fromkeys(addresses, "alive"), victim_address: "dead"})
    for node in survivors:
        async with http.get(f"{node.url}/metrics") as response:
            text = await response.text()
        suspected = SUSPECTED.search(text)
        assert suspected is not None
        assert float(suspected.group(1)) >= 1
    await increment(http, seed, 100)
    await all_count(http, survivors, 115)

    # Restarted at the same address (a new incarnation): alive again everywhere.
    restarted = await node_processes.start("victim-again", *victim_flags)
    nodes = [*survivors, restarted]
    await all_see(http, nodes, dict.fromkeys(addresses, "alive"))
    await all_count(http, nodes, 115)

    # SIGTERM: the leave is announced, so the others say left (no timeout says that).
    leaver = others[0]
    leaver.signal(signal.SIGTERM)
    assert await leaver.wait_exit() == 0
    remaining = [node for node in nodes if node is not leaver]
    await all_see(http, remaining, {**dict.fromkeys(addresses, "alive"), leaver.gossip: "left"})


async def test_a_node_started_before_its_seed_joins_it_and_forgets_it_once_gone(
    node_processes: NodeProcesses, http: aiohttp.ClientSession
) -> None:
    seed_address = f"127.0.0.1:{free_port()}"
    seed_flags = ("--listen", seed_address, *QUICK)
    forgetful = ("--forget-after", "1")
    joiner = await node_processes.start(
        "joiner", "--listen", "127.0.0.1:0", "--join", seed_address, *QUICK, *forgetful
    )
    # Its first join found no one listening: it asks again while it is alone.
    seed = await node_processes.start("seed", *seed_flags)
    both = dict.fromkeys([seed_address, joiner.gossip], "alive")
    await all_see(http, [joiner, seed], both)

    # Gone for good: dead, then forgotten (no longer listed, no longer probed).
    await seed.kill()
    await all_see(http, [joiner], {joiner.gossip: "alive"})
    async with http.get(f"{joiner.url}/metrics") as response:
        assert re.search(r"^dcounter_members_forgotten_total 1\.0$", await response.text(), re.M)

    # Alone again, it keeps asking its seed, so a seed that comes back finds it.
    back = await node_processes.start("seed-again", *seed_flags)
    await all_see(http, [joiner, back], both)

"""--join-dns between dcounter-node processes: a node finds the cluster through a DNS name
("localhost", which resolves without any DNS server) instead of an address."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from dcounter_node.testing import wait_until

if TYPE_CHECKING:
    from tests.conftest import NodeProcesses

pytestmark = pytest.mark.slow

QUICK = ("--http", "127.0.0.1:0", "--in-memory", "--probe-interval", "0.2")


async def test_a_node_joins_through_a_dns_name(node_processes: NodeProcesses) -> None:
    seed = await node_processes.start("seed", "--listen", "127.0.0.1:0", *QUICK)
    port = seed.gossip.rpartition(":")[2]
    joiner = await node_processes.start(
        "joiner", "--listen", "127.0.0.1:0", "--join-dns", f"localhost:{port}", *QUICK
    )
    expected = {seed.gossip: "alive", joiner.gossip: "alive"}
    views: list[dict[str, str]] = []

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:

        async def both_see_both() -> bool:
            views.clear()
            for node in (seed, joiner):
                async with http.get(f"{node.url}/members") as response:
                    document: dict[str, Any] = await response.json()
                views.append({m["address"]: m["state"] for m in document["members"]})
            return all(view == expected for view in views)

        await wait_until(
            both_see_both, within=60.0, what=lambda: f"{expected} on both; they list {views}"
        )

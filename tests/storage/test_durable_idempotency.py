"""Issue 17, server side: an Idempotency-Key is kept with the count it produced, so a
retry after a crash or a restart is answered from the stored result, never counted twice."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pathlib import Path

    import aiohttp
    from tests.conftest import NodeProcesses

    from dcounter_node.testing import NodeProcess

pytestmark = pytest.mark.slow


async def increment(
    http: aiohttp.ClientSession, node: NodeProcess, key: str, by: int = 1
) -> tuple[int, Any, str | None]:
    headers = {"Idempotency-Key": key}
    async with http.post(f"{node.url}/increment", json={"by": by}, headers=headers) as response:
        return response.status, await response.json(), response.headers.get("Idempotent-Replayed")


async def value(http: aiohttp.ClientSession, node: NodeProcess) -> int:
    async with http.get(f"{node.url}/counter") as response:
        result: int = (await response.json())["value"]
        return result


async def test_a_write_retried_across_kill_9_and_restarts_counts_once(
    nodes: NodeProcesses, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    data = ("--data-dir", str(tmp_path / "data"))
    node = await nodes.start("a", *data)
    assert await increment(http, node, "other", 10) == (200, {"value": 10}, None)
    assert await increment(http, node, "retried", 5) == (200, {"value": 15}, None)
    assert await increment(http, node, "retried", 5) == (200, {"value": 15}, "true")
    await node.kill()

    node = await nodes.start("a-after-kill", *data)
    assert await increment(http, node, "retried", 5) == (200, {"value": 15}, "true")
    assert await increment(http, node, "retried", 5) == (200, {"value": 15}, "true")
    assert await node.stop() == 0

    node = await nodes.start("a-after-stop", *data)
    assert await increment(http, node, "retried", 5) == (200, {"value": 15}, "true")
    status, answer, _ = await increment(http, node, "retried", 6)
    assert (status, "different request" in answer["error"]) == (422, True)
    assert await value(http, node) == 15


async def test_keys_expire_after_the_ttl(
    nodes: NodeProcesses, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    data = ("--data-dir", str(tmp_path / "data"))
    node = await nodes.start("a", *data)
    assert await increment(http, node, "k", 2) == (200, {"value": 2}, None)
    assert await node.stop() == 0

    # Restarted with a TTL shorter than the key's age: the retry is a new write.
    node = await nodes.start("a-again", *data, "--idempotency-ttl", "0.001")
    assert await increment(http, node, "k", 2) == (200, {"value": 4}, None)


async def test_an_in_memory_node_keeps_its_keys_in_memory(
    nodes: NodeProcesses, http: aiohttp.ClientSession
) -> None:
    node = await nodes.start("a", "--in-memory")
    assert await increment(http, node, "k") == (200, {"value": 1}, None)
    assert await increment(http, node, "k") == (200, {"value": 1}, "true")

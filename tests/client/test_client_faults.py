"""The client against failing nodes: refused connections, a paused node, restarts.

Each test runs with the async client and with the sync one (see conftest.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import TYPE_CHECKING

import pytest

from dcounter_client import IndeterminateError

if TYPE_CHECKING:
    from pathlib import Path

    from tests.client.conftest import MakeClient, StartNode

    from dcounter_node.testing import NodeProcess

pytestmark = pytest.mark.slow

#: Bound for one test step that normally takes a fraction of a second.
STEP = 30.0


async def durable_node(start_node: StartNode, data_dir: Path) -> NodeProcess:
    return await start_node(
        "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--data-dir", str(data_dir)
    )


async def crash_and_restart(start_node: StartNode, node: NodeProcess, data_dir: Path) -> None:
    """SIGKILL ``node`` and start it again on the same HTTP address and data."""
    node.signal(signal.SIGKILL)
    await node.wait_exit()
    # The data belongs to the configured listen address (port 0), not the bound one.
    again = await start_node(
        "--listen", "127.0.0.1:0", "--http", node.http, "--data-dir", str(data_dir)
    )
    assert again.url == node.url
    # A node that did not stop cleanly resumes as a new incarnation (a new replica id).
    assert again.replica != node.replica


async def test_a_write_fails_over_when_the_first_node_refuses_connections(
    start_node: StartNode, make_client: MakeClient
) -> None:
    first, second = await start_node(), await start_node()
    first.signal(signal.SIGKILL)
    await first.wait_exit()
    client = make_client([first.url, second.url])
    assert await client.increment(4) == 4
    snapshot = await client.counter()
    assert (snapshot.node, snapshot.increments) == (second.url, {second.replica: 4})


async def test_a_write_to_a_paused_node_is_indeterminate_then_settles_once(
    start_node: StartNode, make_client: MakeClient
) -> None:
    node = await start_node()
    assert await make_client(node.url, timeout=STEP).increment() == 1
    client = make_client(node.url, timeout=0.5, retries=2, deadline=3.0, backoff=0.05)
    node.signal(signal.SIGSTOP)
    try:
        with pytest.raises(IndeterminateError) as caught:
            await client.increment(2)
    finally:
        node.signal(signal.SIGCONT)
    error = caught.value
    assert (error.node, error.operation, error.by) == (node.url, "increment", 2)
    assert "Timeout" in error.reason
    # The three attempts queued in the paused node all carried error.key: settling the
    # write on the node the error names counts it once, whatever those attempts did.
    settle = make_client(error.node, timeout=STEP)
    assert await settle.increment(2, key=error.key) == 3
    assert await settle.value() == 3


async def test_a_write_retried_with_its_key_counts_once_across_a_crash(
    start_node: StartNode, make_client: MakeClient, tmp_path: Path
) -> None:
    node = await durable_node(start_node, tmp_path)
    client = make_client(node.url, deadline=STEP)
    assert await client.increment(5, key="order-7") == 5
    await crash_and_restart(start_node, node, tmp_path)
    retries = [await client.increment(5, key="order-7") for _ in range(5)]
    assert retries == [5] * 5
    assert await client.value() == 5


async def test_watch_survives_a_node_restart(
    start_node: StartNode, make_client: MakeClient, tmp_path: Path
) -> None:
    node = await durable_node(start_node, tmp_path)
    client = make_client(node.url, backoff=0.05, deadline=STEP)
    await client.increment(2)
    seen: list[int] = []
    async with asyncio.timeout(STEP * 2), contextlib.aclosing(client.watch()) as values:
        async for value in values:
            seen.append(value)
            if value == 2:
                await crash_and_restart(start_node, node, tmp_path)
                await client.increment()
            else:
                break
    assert seen == [2, 3]

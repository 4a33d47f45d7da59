"""dcounter_node.testing: the shared wait_until and NodeProcess the tests and benchmarks use."""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

import pytest

from dcounter_node.testing import NodeProcess, NodeProcessError, wait_until

if TYPE_CHECKING:
    from pathlib import Path


async def test_wait_until_takes_a_plain_predicate() -> None:
    calls: list[int] = []

    def third_call() -> bool:
        calls.append(1)
        return len(calls) == 3

    await wait_until(third_call, interval=0)
    assert len(calls) == 3


async def test_wait_until_takes_an_async_predicate() -> None:
    calls: list[int] = []

    async def third_call() -> bool:
        calls.append(1)
        return len(calls) == 3

    await wait_until(third_call, interval=0)
    assert len(calls) == 3


async def test_wait_until_fails_naming_what_it_waited_for() -> None:
    with pytest.raises(AssertionError, match=r"timed out after 0.05 s waiting for the value 7"):
        await wait_until(lambda: False, within=0.05, what=lambda: f"the value {7}")


@pytest.mark.slow
async def test_node_process_starts_reports_its_addresses_and_stops_cleanly(
    tmp_path: Path,
) -> None:
    free = ("--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--in-memory")
    async with await NodeProcess.start(*free, log=tmp_path / "node.log") as node:
        assert node.ready is not None
        assert node.ready.pid == node.pid
        assert node.url == f"http://{node.http}"
        assert node.replica.startswith(node.gossip + "#")
        node.signal(signal.SIGTERM)
        assert await node.wait_exit() == 0
    assert "shutting down" in node.log_text()


@pytest.mark.slow
async def test_a_node_that_exits_before_it_is_ready_is_a_typed_error_with_its_log(
    tmp_path: Path,
) -> None:
    with pytest.raises(NodeProcessError, match=r"(?s)exited with status 2 .*--sync-interval"):
        await NodeProcess.start("--sync-interval", "0", log=tmp_path / "node.log")

"""Issue 12 item 4: a node that finds evidence of state it cannot load refuses to start."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from dcounter_node._cli import EXIT_STORAGE

from .test_durable_node import Ledger, count

if TYPE_CHECKING:
    from pathlib import Path

    import aiohttp
    from tests.conftest import NodeProcesses

    from dcounter_node.testing import NodeProcess

    from .conftest import RawDatabase

pytestmark = pytest.mark.slow


async def node_with_state(
    nodes: NodeProcesses, http: aiohttp.ClientSession, data: Path
) -> NodeProcess:
    node = await nodes.start("a", "--data-dir", str(data))
    ledger = Ledger()
    for _ in range(5):
        await count(http, node, ledger, "increment", 3)
    return node


async def refused(nodes: NodeProcesses, data: Path) -> str:
    """Start a node on ``data``, expect exit 3; its one error line."""
    node = await nodes.spawn(f"refused-{len(nodes.started)}", "--data-dir", str(data))
    assert await node.process.wait() == EXIT_STORAGE
    log = node.log_text()
    assert "Traceback" not in log
    errors = [line for line in log.splitlines() if line.startswith("dcounter-node: error:")]
    assert len(errors) == 1, log
    return errors[0]


async def test_an_emptied_database_is_refused(
    nodes: NodeProcesses, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    node = await node_with_state(nodes, http, data)
    assert await node.stop() == 0
    (data / "state.sqlite3").write_bytes(b"")

    assert "the database is empty, but state.identity.json shows" in await refused(nodes, data)
    assert (data / "state.sqlite3").read_bytes() == b""


async def test_a_deleted_database_is_refused(
    nodes: NodeProcesses, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    node = await node_with_state(nodes, http, data)
    assert await node.stop() == 0
    (data / "state.sqlite3").unlink()

    assert "the database is missing" in await refused(nodes, data)
    assert not (data / "state.sqlite3").exists()


async def test_a_log_deleted_after_kill_9_is_refused(
    nodes: NodeProcesses, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    node = await node_with_state(nodes, http, data)
    await node.kill()
    (data / "state.sqlite3-wal").unlink()

    line = await refused(nodes, data)
    assert "the write-ahead log state.sqlite3-wal is missing after an unclean shutdown" in line
    # Still refused the second time: nothing was repaired behind the operator's back.
    assert "write-ahead log" in await refused(nodes, data)


async def test_a_flipped_digit_is_refused(
    nodes: NodeProcesses,
    http: aiohttp.ClientSession,
    tmp_path: Path,
    raw_database: RawDatabase,
) -> None:
    data = tmp_path / "data"
    node = await node_with_state(nodes, http, data)
    assert await node.stop() == 0
    with raw_database(data / "state.sqlite3") as conn:
        (value,) = conn.execute("SELECT value FROM counts").fetchone()
        assert value.endswith("15")
        conn.execute("UPDATE counts SET value = ?", (value[:-2] + "95",))

    line = await refused(nodes, data)
    assert f"checksum mismatch in the inc count of replica {node.replica!r}" in line

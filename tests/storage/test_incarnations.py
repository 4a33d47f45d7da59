"""Issue 12 item 3 (Riak's kv679): a crash that loses the log's tail never loses a later
acknowledged write, because a node without a clean shutdown comes back as a new replica."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from dcounter_node._storage_sqlite import DATABASE_FILENAME
from dcounter_node.testing import wait_until

from .test_durable_node import Ledger, add_peer, converged, count, counter, stored_state

if TYPE_CHECKING:
    from pathlib import Path

    import aiohttp
    from tests.conftest import NodeProcesses

pytestmark = pytest.mark.slow

#: SQLite's WAL: a 32-byte header, then frames of a 24-byte header and one page.
_WAL_HEADER = 32
_FRAME_HEADER = 24


def lose_the_log_tail(database: Path, keep_frames: int) -> None:
    """Cut the write-ahead log after ``keep_frames`` frames, as a torn write or an OS crash
    before the log reached the disk would."""
    wal = database.with_name(database.name + "-wal")
    page_size = int.from_bytes(wal.read_bytes()[8:12], "big")
    size = _WAL_HEADER + keep_frames * (_FRAME_HEADER + page_size)
    assert wal.stat().st_size > size, "the log is shorter than what should be lost"
    with wal.open("r+b") as file:
        file.truncate(size)


async def test_writes_after_losing_the_log_tail_are_not_absorbed_by_peers(
    nodes: NodeProcesses, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    data = tmp_path / "a-data"
    a = await nodes.start("a", "--data-dir", str(data))
    b = await nodes.start("b", "--in-memory", "--peers", a.gossip)
    await add_peer(http, a, b.gossip)
    before = Ledger()
    for _ in range(30):
        await count(http, a, before, "increment", 1)

    async def b_learned_everything() -> bool:
        learned: int | None = (await counter(http, b))["increments"].get(a.replica)
        return learned == 30

    await wait_until(b_learned_everything, what="b to hold a's 30 increments")
    await a.kill()
    lose_the_log_tail(data / DATABASE_FILENAME, keep_frames=4)
    survived = (await stored_state(data / DATABASE_FILENAME)).state.increments.get(a.replica, 0)
    assert survived < 25  # the node resumes well below what its peer holds

    restarted = await nodes.start("a-restarted", "--data-dir", str(data), "--peers", b.gossip)
    await add_peer(http, b, restarted.gossip)
    after = Ledger()
    for _ in range(5):
        await count(http, restarted, after, "increment", 1)

    # Every acknowledged write counts: the 30 (restored from b) and the 5 after the crash.
    await converged(http, [restarted, b], before.total + after.total)
    increments = (await counter(http, restarted))["increments"]
    assert restarted.replica != a.replica
    assert (increments[a.replica], increments[restarted.replica]) == (30, 5)


async def test_a_clean_restart_keeps_the_replica_id(
    nodes: NodeProcesses, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    data = tmp_path / "a-data"
    a = await nodes.start("a", "--data-dir", str(data))
    ledger = Ledger()
    for _ in range(3):
        await count(http, a, ledger, "increment", 2)
    assert await a.stop() == 0

    again = await nodes.start("a-again", "--data-dir", str(data))
    assert again.replica == a.replica
    assert (await counter(http, again))["increments"] == {a.replica: 6}

"""A process that dies right after commit() returned loses none of what it committed."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING

import pytest

from dcounter_crdt import CounterState
from dcounter_node._storage import StoredState
from dcounter_node._storage_sqlite import Durability, SQLiteStore

if TYPE_CHECKING:
    from pathlib import Path

# Commits 100 increments one by one, stages one more without committing, then dies
# without closing anything: no checkpoint, no flush, no atexit handler.
_CRASHING_WRITER = textwrap.dedent(
    """
    import asyncio, os, sys
    from dcounter_crdt import CounterState
    from dcounter_node._storage_sqlite import SQLiteStore

    async def main() -> None:
        store = SQLiteStore(sys.argv[1], durability=sys.argv[2], batch_interval=0.001)
        if await store.open() is not None:
            raise SystemExit("expected a new database")
        await store.bind("crashy#1")
        for i in range(1, 101):
            store.stage(CounterState.from_maps({"crashy#1": i}, {"peer#2": 2 * i}))
            await store.commit()
        store.stage(CounterState.from_maps({"crashy#1": 1000}))
        print("committed", flush=True)
        os._exit(0)

    asyncio.run(main())
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("durability", ["always", "batched"])
def test_committed_state_survives_a_process_crash(db_path: Path, durability: Durability) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _CRASHING_WRITER, str(db_path), durability],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "committed\n", "")
    # The writer never closed its connection: its write-ahead log is still beside the file.
    assert db_path.with_name(db_path.name + "-wal").exists()

    async def reopen() -> StoredState | None:
        store = SQLiteStore(db_path)
        try:
            return await store.open()
        finally:
            await store.close()

    # Only the 100 committed increments: the last one was staged, never committed. No
    # clean shutdown was recorded, so the node will continue as a new incarnation.
    assert asyncio.run(reopen()) == StoredState(
        "crashy#1",
        CounterState.from_maps({"crashy#1": 100}, {"peer#2": 200}),
        clean_shutdown=False,
    )

"""Benchmark durable state: what SQLite commits cost, in the store and through the node API.

Run with ``hatch run python benchmarks/bench_storage.py`` (under a minute by default):

1. **Store, in process.** Staged increments per second (``PNCounter.increment`` plus
   ``stage()``, one commit at the end) and acknowledged increments per second (each writer
   task stages and awaits ``commit()``; 1, 16 and 64 writers), for no store, ``batched``
   and ``always``. The baseline is the same loop without a store. Goals (issue 19):
   ``batched`` >= ``always`` at every concurrency, >= 10,000/s with 1 writer and
   >= 100,000/s with 64.
2. **Node HTTP API.** A ``dcounter-node`` process per mode (``--in-memory``,
   ``--durability batched``, ``--durability always``), loaded by this process over
   ``--concurrency`` keep-alive connections that each send ``POST /increment`` and wait for
   the answer: acknowledged increments per second, the median of ``--rounds`` rounds that
   interleave the modes. The baseline is the in-memory node.
   Goal: ``batched`` at least 50% of in-memory.
3. **Named counters in the store** (issue 20). Acknowledged increments per second spread
   over 1,000 names (``PNCounterMap`` plus ``stage_named()`` and ``commit()``), 1 and 64
   writers, in each durability mode, against the default counter's rate in the same mode
   (the baseline); then one transaction of 100,000 named entries (a merge after a long
   partition) and the time to load them at the next start.

Every figure of a table comes from the same run; ratios are against its first row.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dcounter_crdt import CounterMapState, CounterState, PNCounter, PNCounterMap
from dcounter_node._storage_sqlite import DATABASE_FILENAME, SQLiteStore
from dcounter_node.testing import NodeProcess

if TYPE_CHECKING:
    from collections.abc import Sequence

    from dcounter_node._storage_sqlite import Durability

MODES: tuple[str, ...] = ("none", "batched", "always")
_REQUEST = (
    b"POST /increment HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
    b'Content-Length: 8\r\n\r\n{"by":1}'
)
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)


@dataclass
class Row:
    label: str
    rate: float
    note: str = ""


def print_table(title: str, unit: str, rows: Sequence[Row]) -> None:
    base = rows[0].rate
    print(f"\n{title}")
    print(f"  {'mode':<22} {unit:>16} {'ratio':>8}  notes")
    for row in rows:
        ratio = row.rate / base if base else float("nan")
        print(f"  {row.label:<22} {row.rate:>16,.0f} {ratio:>7.3g}x  {row.note}")


# -- 1. the store in process ------------------------------------------------------------


async def _open_store(directory: Path, mode: str) -> SQLiteStore | None:
    if mode == "none":
        return None
    durability: Durability = "always" if mode == "always" else "batched"
    store = SQLiteStore(directory / mode / DATABASE_FILENAME, durability=durability)
    await store.open()
    await store.bind("bench#1")
    return store


async def staged_rate(directory: Path, mode: str, n: int) -> Row:
    store = await _open_store(directory, mode)
    counter = PNCounter("bench#1")
    started = time.perf_counter()
    for _ in range(n):
        delta = counter.increment()
        if store is not None:
            store.stage(delta)
    if store is not None:
        await store.commit()
    elapsed = time.perf_counter() - started
    if store is not None:
        await store.close()
    return Row(mode, n / elapsed)


async def acknowledged_rate(directory: Path, mode: str, writers: int, duration: float) -> Row:
    store = await _open_store(directory, mode)
    counter = PNCounter("bench#1")
    loop = asyncio.get_running_loop()
    acks = 0
    deadline = loop.time() + duration

    async def writer() -> None:
        nonlocal acks
        while loop.time() < deadline:
            delta = counter.increment()
            if store is not None:
                store.stage(delta)
                await store.commit()
            else:
                await asyncio.sleep(0)  # what a write costs the loop without a store
            acks += 1

    started = time.perf_counter()
    cpu_started = time.process_time()
    await asyncio.gather(*(writer() for _ in range(writers)))
    elapsed = time.perf_counter() - started
    # CPU time of this process (the loop and the store's worker): what the rate would be
    # on cores of its own, a hint when other work on the machine slows the wall clock.
    note = f"{acks / max(time.process_time() - cpu_started, 1e-9):,.0f} per CPU-s"
    if store is not None:
        note += f"; {store.flushes} transactions, {acks / max(store.flushes, 1):.1f} acks each"
        await store.close()
    return Row(mode, acks / elapsed, note)


#: Issue 19: acknowledged increments/s that ``batched`` (the default) must reach.
BATCHED_GOALS = {1: 10_000, 64: 100_000}


async def bench_store(directory: Path, duration: float) -> None:
    rows = [await staged_rate(directory / "staged", mode, 200_000) for mode in MODES]
    print_table("store: staged increments (200,000, one commit at the end)", "increments/s", rows)
    goals: list[str] = []
    for writers in (1, 16, 64):
        rows = [
            await acknowledged_rate(directory / f"acked-{writers}", mode, writers, duration)
            for mode in MODES
        ]
        print_table(
            f"store: acknowledged increments, {writers} writer task(s), {duration:g} s each",
            "acks/s",
            rows,
        )
        batched, always = rows[1].rate, rows[2].rate
        goals.append(
            f"  {writers:>2} writer(s): batched >= always: {batched:,.0f} vs {always:,.0f}"
            f" ({_verdict(batched >= always)})"
        )
        if writers in BATCHED_GOALS:
            goal = BATCHED_GOALS[writers]
            goals.append(
                f"  {writers:>2} writer(s): batched >= {goal:,}/s: {batched:,.0f}"
                f" ({_verdict(batched >= goal)})"
            )
    print("\ngoals (issue 19)")
    print("\n".join(goals))


# -- 3. named counters in the store ----------------------------------------------------------

#: Names the named writers spread over.
NAMED_KEYS = 1_000


async def named_acknowledged_rate(directory: Path, mode: str, writers: int, duration: float) -> Row:
    store = await _open_store(directory, mode)
    assert store is not None
    counters = PNCounterMap("bench#1")
    names = [f"page/{i}" for i in range(NAMED_KEYS)]
    loop = asyncio.get_running_loop()
    acks = 0
    deadline = loop.time() + duration

    async def writer(first: int) -> None:
        nonlocal acks
        i = first
        while loop.time() < deadline:
            counters.add(names[i % NAMED_KEYS])
            # What Counters.stage_local hands the store before each commit.
            store.stage_named(counters.take_delta())
            await store.commit()
            acks += 1
            i += 7

    started = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(writers)))
    elapsed = time.perf_counter() - started
    note = f"{store.flushes} transactions, {acks / max(store.flushes, 1):.1f} acks each"
    await store.close()
    return Row(f"{mode}, named", acks / elapsed, note)


async def bench_named(directory: Path, duration: float) -> None:
    for writers in (1, 64):
        rows: list[Row] = []
        for mode in ("batched", "always"):
            where = directory / f"named-{writers}-{mode}"
            default = await acknowledged_rate(where / "default", mode, writers, duration)
            rows.append(Row(f"{mode}, default", default.rate, default.note.split("; ")[-1]))
            rows.append(await named_acknowledged_rate(where / "named", mode, writers, duration))
        print_table(
            f"store: acknowledged increments over {NAMED_KEYS:,} names, {writers} writer(s),"
            f" {duration:g} s each (ratio against the default counter in batched mode)",
            "acks/s",
            rows,
        )
    big = CounterMapState(
        {f"page/{i}": CounterState.from_maps({"peer#2": i + 1}) for i in range(100_000)}
    )
    store = await _open_store(directory / "merge", "batched")
    assert store is not None
    started = time.perf_counter()
    store.stage_named(big)
    await store.commit()
    written = time.perf_counter() - started
    await store.close()
    started = time.perf_counter()
    reopened = SQLiteStore(directory / "merge" / "batched" / DATABASE_FILENAME)
    stored = await reopened.open()
    loaded = time.perf_counter() - started
    await reopened.close()
    if stored is None or stored.named != big:
        raise SystemExit("the 100,000 named entries did not come back as written")
    print(f"\nstore: 100,000 named entries in one transaction: {written * 1000:,.0f} ms")
    print(
        f"store: opening the database with them (every row's checksum checked): "
        f"{loaded * 1000:,.0f} ms"
    )


def _verdict(met: bool) -> str:
    return "met" if met else "NOT met"


# -- 2. the node's HTTP API -------------------------------------------------------------


async def _start_node(args: Sequence[str]) -> tuple[NodeProcess, str, int]:
    node = await NodeProcess.start(
        "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--log-level", "error", *args
    )
    host, _, port = node.http.rpartition(":")
    return node, host, int(port)


async def _keep_posting(host: str, port: int, until: float, counts: list[int]) -> None:
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while loop.time() < until:
            writer.write(_REQUEST)
            head = await reader.readuntil(b"\r\n\r\n")
            match = _CONTENT_LENGTH.search(head)
            await reader.readexactly(int(match.group(1)) if match else 0)
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"unexpected answer: {head[:40]!r}")
            counts[0] += 1
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _post_for(host: str, port: int, concurrency: int, seconds: float) -> float:
    """Acknowledged increments per second over ``concurrency`` connections."""
    loop = asyncio.get_running_loop()
    counts = [0]
    until = loop.time() + seconds
    started = time.perf_counter()
    await asyncio.gather(*(_keep_posting(host, port, until, counts) for _ in range(concurrency)))
    return counts[0] / (time.perf_counter() - started)


async def bench_http(directory: Path, concurrency: int, duration: float, rounds: int) -> None:
    runs = [
        (["--in-memory"], "in-memory node"),
        (["--data-dir", str(directory / "batched"), "--durability", "batched"], "batched"),
        (["--data-dir", str(directory / "always"), "--durability", "always"], "always"),
    ]
    processes: list[NodeProcess] = []
    try:
        endpoints = []
        for args, _ in runs:
            process, host, port = await _start_node(args)
            processes.append(process)
            endpoints.append((host, port))
        for host, port in endpoints:
            await _post_for(host, port, concurrency, 0.3)  # warm-up
        # Rounds interleave the modes, so a burst of load from elsewhere on the machine
        # hits all of them alike; the median of each mode is reported.
        rates: list[list[float]] = [[] for _ in runs]
        for _ in range(rounds):
            for index, (host, port) in enumerate(endpoints):
                rates[index].append(await _post_for(host, port, concurrency, duration))
    finally:
        for process in processes:
            await process.stop()
    rows = [
        Row(label, statistics.median(rate), "rounds: " + ", ".join(f"{r:,.0f}" for r in rate))
        for (_, label), rate in zip(runs, rates, strict=True)
    ]
    print_table(
        f"node HTTP API: acknowledged POST /increment, {concurrency} connections, "
        f"median of {rounds} x {duration:g} s",
        "acks/s",
        rows,
    )
    batched = rows[1].rate / rows[0].rate
    verdict = "met" if batched >= 0.5 else "NOT met"
    print(f"  goal batched >= 50% of in-memory: {batched:.0%} ({verdict})")
    if batched < 0.5:
        print("  " + MISS_NOTE)


#: Printed under the goals when one is missed: misses are expected on a loaded or small
#: machine and some goals are still open, so a MISS is information for people, not a failure.
MISS_NOTE = (
    "a goal NOT met in this run is a known open goal (see the README's benchmark "
    "section), not a failure; the benchmark exits 0 either way"
)


async def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--part", choices=("store", "http", "named", "all"), default="all")
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per measurement")
    parser.add_argument("--concurrency", type=int, default=32, help="HTTP connections")
    parser.add_argument("--rounds", type=int, default=3, help="HTTP rounds per mode")
    args = parser.parse_args(argv)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, sqlite {_sqlite_version()}")
    with tempfile.TemporaryDirectory(prefix="bench-storage-") as tmp:
        directory = Path(tmp)
        if args.part in ("store", "all"):
            await bench_store(directory / "store", args.duration)
        if args.part in ("http", "all"):
            await bench_http(directory / "http", args.concurrency, args.duration, args.rounds)
        if args.part in ("named", "all"):
            await bench_named(directory / "named", args.duration)
    return 0


def _sqlite_version() -> str:
    import sqlite3

    return sqlite3.sqlite_version


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))

"""Benchmark of dcounter_crdt against plain-dict baselines measured in the same run.

Run with ``hatch run python benchmarks/bench_crdt.py`` (``--help`` for options). Prints,
for local updates, value and merge at 10, 100 and 1,000 replicas, the time per operation
of the CRDT beside the same work done on bare dicts, their ratio, and the issue's goals
(the fast write path ``add()`` at most 2x a bare ``dict[key] += 1``; merging 1,000-replica
states under 1 ms) as PASS or MISS. It never fails on a MISS: the figures are for people,
not for CI.
"""

from __future__ import annotations

import argparse
import gc
import platform
import sys
import time
import timeit
from dataclasses import dataclass
from functools import partial
from operator import methodcaller
from typing import TYPE_CHECKING, Any

from dcounter_crdt import CounterMapState, CounterState, PNCounter, PNCounterMap
from dcounter_crdt import __version__ as crdt_version

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

REPLICA_COUNTS = (10, 100, 1_000)
MAP_KEYS = 10_000
MAP_REPLICAS = 3
INCREMENT_GOAL_RATIO = 2.0
MERGE_GOAL_SECONDS = 1e-3
FLOOR_ROW = "(an empty method call)"
SLICES = 10


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the table: the CRDT's time per operation beside its baseline's."""

    operation: str
    replicas: int | None
    subject: float
    baseline: float

    @property
    def ratio(self) -> float:
        return self.subject / self.baseline


def _paired_ops(
    subject: str, baseline: str, namespace: dict[str, Any], number: int, repeat: int
) -> tuple[float, float]:
    """Seconds per execution of ``subject`` and of ``baseline``, best of ``repeat`` runs each.

    Each run is cut into short slices that alternate between the two sides, so a load
    change on a shared machine hits both alike; the best slice is the least disturbed one.
    """
    timers = (timeit.Timer(subject, globals=namespace), timeit.Timer(baseline, globals=namespace))
    per_slice = max(1, number // SLICES)
    best = [float("inf"), float("inf")]
    for _ in range(repeat * SLICES):
        for side, timer in enumerate(timers):
            best[side] = min(best[side], timer.timeit(per_slice))
    return best[0] / per_slice, best[1] / per_slice


def _paired_items(
    subject: tuple[Callable[[], list[Any]], Callable[[Any], object]],
    baseline: tuple[Callable[[], list[Any]], Callable[[Any], object]],
    repeat: int,
) -> tuple[float, float]:
    """Like :func:`_paired_ops` for ``run(item)`` over fresh items from ``make()``.

    For operations that change their target (a merge that wins): each timed call needs a
    target of its own, built outside the timed region.
    """
    best = [float("inf"), float("inf")]
    for _ in range(repeat):
        for side, (make, run) in enumerate((subject, baseline)):
            items = make()
            # As timeit does: a collection of the large heaps around is not the operation.
            gc.disable()
            try:
                start = time.perf_counter()
                for item in items:
                    run(item)
                elapsed = time.perf_counter() - start
            finally:
                gc.enable()
            best[side] = min(best[side], elapsed / len(items))
    return best[0], best[1]


def _state(replicas: int, base: int) -> CounterState:
    """A state with an increment and a decrement entry for each of ``replicas`` ids."""
    return CounterState.from_maps(
        {f"10.0.0.{i}:7946#{i:04x}": base + 2 * i for i in range(replicas)},
        {f"10.0.0.{i}:7946#{i:04x}": base + i for i in range(replicas)},
    )


class _Empty:
    def method(self) -> None:
        """Do nothing: the cost of the call alone."""


def _dict_merge(mine: tuple[dict[str, int], dict[str, int]], theirs: CounterState) -> bool:
    """The baseline merge: pointwise maximum over two plain dicts, reporting a change."""
    changed = False
    for own, other in ((mine[0], theirs.increments), (mine[1], theirs.decrements)):
        get = own.get
        for key, count in other.items():
            if count > get(key, 0):
                own[key] = count
                changed = True
    return changed


def bench_updates(number: int, repeat: int) -> list[Row]:
    """Local updates against a bare ``dict[key] += 1``.

    ``add()``/``subtract()`` are the fast path (the delta is taken later, once per flush);
    ``increment()``/``decrement()`` build and return a delta per call.
    """
    namespace: dict[str, Any] = {
        "counter": PNCounter("bench"),
        "d": {"bench": 0},
        "key": "bench",
        "empty": _Empty(),
    }
    rows: list[Row] = []
    for stmt in (
        "counter.add()",
        "counter.subtract()",
        "counter.add(by=7)",
        "counter.increment()",
        "counter.decrement()",
        "counter.increment(by=7)",
    ):
        subject, baseline = _paired_ops(stmt, "d[key] += 1", namespace, number, repeat)
        rows.append(Row(stmt.removeprefix("counter."), None, subject, baseline))
    # For scale: what any method call costs before its body does anything.
    subject, baseline = _paired_ops("empty.method()", "d[key] += 1", namespace, number, repeat)
    rows.append(Row(FLOOR_ROW, None, subject, baseline))
    return rows


def bench_values(number: int, repeat: int) -> list[Row]:
    """Reading the value against summing two plain dicts."""
    rows: list[Row] = []
    for replicas in REPLICA_COUNTS:
        state = _state(replicas, 1_000)
        namespace: dict[str, Any] = {
            "counter": PNCounter("bench", state),
            "state": state,
            "inc": dict(state.increments),
            "dec": dict(state.decrements),
        }
        for operation, stmt in (
            ("PNCounter.value", "counter.value"),
            ("CounterState.value", "state.value"),
        ):
            subject, baseline = _paired_ops(
                stmt, "sum(inc.values()) - sum(dec.values())", namespace, number, repeat
            )
            rows.append(Row(operation, replicas, subject, baseline))
    return rows


def bench_merges(items: int, repeat: int) -> list[Row]:
    """Merging N-replica states against a pointwise maximum over plain dicts."""
    rows: list[Row] = []
    for replicas in REPLICA_COUNTS:
        # Scale the batch so every replica count times about the same number of entries.
        batch = max(20, items * 10 // replicas)
        old, new = _state(replicas, 1_000), _state(replicas, 2_000)

        def fresh_counters(old: CounterState = old, batch: int = batch) -> list[PNCounter]:
            return [PNCounter("bench", old) for _ in range(batch)]

        def fresh_dicts(
            old: CounterState = old, batch: int = batch
        ) -> list[tuple[dict[str, int], dict[str, int]]]:
            return [(dict(old.increments), dict(old.decrements)) for _ in range(batch)]

        # Every entry of `new` wins: the most work a merge can do. Each side is one C-level
        # callable wrapping one Python-level call, so the call overheads match.
        dict_side = (fresh_dicts, partial(_dict_merge, theirs=new))
        for operation, method in (
            ("merge() all entries win", "merge"),
            ("merge_delta() all win", "merge_delta"),
        ):
            subject, baseline = _paired_items(
                (fresh_counters, methodcaller(method, new)), dict_side, repeat
            )
            rows.append(Row(operation, replicas, subject, baseline))

        namespace: dict[str, Any] = {
            "counter": PNCounter("bench", new),
            "mine": (dict(new.increments), dict(new.decrements)),
            "new": new,
            "old": old,
            "dict_merge": _dict_merge,
        }
        # Nothing wins: the common case of gossip between replicas already in sync.
        subject, baseline = _paired_ops(
            "counter.merge(new)", "dict_merge(mine, new)", namespace, batch, repeat
        )
        rows.append(Row("merge() nothing wins", replicas, subject, baseline))
        # The immutable merge builds a new state; its baseline copies the dicts, then merges.
        subject, baseline = _paired_ops(
            "old.merged(new)",
            "dict_merge((dict(old.increments), dict(old.decrements)), new)",
            namespace,
            batch,
            repeat,
        )
        rows.append(Row("CounterState.merged()", replicas, subject, baseline))
    return rows


DictMap = dict[str, tuple[dict[str, int], dict[str, int]]]


def _map_state(keys: int, base: int) -> CounterMapState:
    """A map of ``keys`` counters, each with entries for MAP_REPLICAS replicas."""
    return CounterMapState({f"page:/{k:05d}": _state(MAP_REPLICAS, base + k) for k in range(keys)})


def _dict_map(state: CounterMapState) -> DictMap:
    return {key: (dict(s.increments), dict(s.decrements)) for key, s in state.counters.items()}


def _dict_map_merge(mine: DictMap, theirs: CounterMapState) -> bool:
    """The baseline map merge: per key, the plain-dict pointwise maximum."""
    changed = False
    for key, state in theirs.counters.items():
        own = mine.get(key)
        if own is None:
            own = mine[key] = ({}, {})
        if _dict_merge(own, state):
            changed = True
    return changed


def bench_map(repeat: int) -> list[Row]:
    """PNCounterMap over MAP_KEYS names: increments across all keys, and merges.

    Figures only (no goal): increments against ``d[key] += 1`` over as many keys, merges
    against the per-key plain-dict maximum.
    """
    keys = [f"page:/{k:05d}" for k in range(MAP_KEYS)]
    old, new = _map_state(MAP_KEYS, 1_000), _map_state(MAP_KEYS, 2_000)
    counters = PNCounterMap("bench", old)
    namespace: dict[str, Any] = {
        "counters": counters,
        "d": dict.fromkeys(keys, 0),
        "keys": keys,
        "new": new,
        "old": old,
        "mine": _dict_map(new),
        "dict_map_merge": _dict_map_merge,
    }
    rows: list[Row] = []
    # Whole passes over every key, so the figure covers a map of this size, not one hot key.
    subject, baseline = _paired_ops(
        "for k in keys: counters.add(k)", "for k in keys: d[k] += 1", namespace, 2, repeat
    )
    rows.append(Row("map add() per key", MAP_KEYS, subject / MAP_KEYS, baseline / MAP_KEYS))

    def fresh_maps() -> list[PNCounterMap]:
        return [PNCounterMap("bench", old) for _ in range(2)]

    def fresh_dicts() -> list[DictMap]:
        return [_dict_map(old) for _ in range(2)]

    def written_maps() -> list[PNCounterMap]:
        maps = fresh_maps()
        for counters in maps:
            for key in keys:
                counters.add(key)
        return maps

    def dicts_to_copy() -> list[dict[str, int]]:
        return [dict.fromkeys(keys, 1) for _ in range(2)]

    subject, baseline = _paired_items(
        (written_maps, methodcaller("take_delta")), (dicts_to_copy, dict), repeat
    )
    rows.append(Row("map take_delta() (*)", MAP_KEYS, subject, baseline))
    dict_side = (fresh_dicts, partial(_dict_map_merge, theirs=new))
    for operation, method in (
        ("map merge() all win", "merge"),
        ("map merge_delta() all win", "merge_delta"),
    ):
        subject, baseline = _paired_items(
            (fresh_maps, methodcaller(method, new)), dict_side, repeat
        )
        rows.append(Row(operation, MAP_KEYS, subject, baseline))
    namespace["counters"] = PNCounterMap("bench", new)
    subject, baseline = _paired_ops(
        "counters.merge(new)", "dict_map_merge(mine, new)", namespace, 1, repeat
    )
    rows.append(Row("map merge() nothing wins", MAP_KEYS, subject, baseline))
    return rows


def _format_time(seconds: float) -> str:
    if seconds < 1e-6:
        return f"{seconds * 1e9:8.1f} ns"
    if seconds < 1e-3:
        return f"{seconds * 1e6:8.2f} us"
    return f"{seconds * 1e3:8.3f} ms"


def _print_table(rows: Sequence[Row], size: str = "replicas") -> None:
    header = f"{'operation':<26} {size:>8} {'dcounter':>11} {'baseline':>11} {'ratio':>7}"
    print(header)
    print("-" * len(header))
    for row in rows:
        replicas = "-" if row.replicas is None else str(row.replicas)
        print(
            f"{row.operation:<26} {replicas:>8} {_format_time(row.subject):>11} "
            f"{_format_time(row.baseline):>11} {row.ratio:>6.2f}x"
        )


def _goal_lines(rows: Sequence[Row]) -> list[str]:
    add = next(row for row in rows if row.operation == "add()")
    increment = next(row for row in rows if row.operation == "increment()")
    merge = next(
        row for row in rows if row.operation == "merge() all entries win" and row.replicas == 1_000
    )
    add_ok = add.ratio <= INCREMENT_GOAL_RATIO
    merge_ok = merge.subject < MERGE_GOAL_SECONDS
    floor = next(row for row in rows if row.operation == FLOOR_ROW)
    lines = [
        f"[{'PASS' if add_ok else 'MISS'}] add() costs {add.ratio:.2f}x a bare "
        f"dict[key] += 1 (goal <= {INCREMENT_GOAL_RATIO:.0f}x); increment(), which builds "
        f"a delta per call, costs {increment.ratio:.2f}x",
        f"[{'PASS' if merge_ok else 'MISS'}] merge() of 1,000-replica states (every entry "
        f"wins) takes {_format_time(merge.subject).strip()} (goal < 1 ms)",
    ]
    if not add_ok:
        lines.append(
            f"       note: an empty method call alone costs {floor.ratio:.2f}x; add() also "
            "validates the amount, adds and checks the uint64 bound"
        )
    if not (add_ok and merge_ok):
        lines.append(MISS_NOTE)
    return lines


#: Printed under the goals when one is missed: misses are expected on a loaded or small
#: machine and some goals are still open, so a MISS is information for people, not a failure.
MISS_NOTE = (
    "MISS = a goal this run did not reach: a known open goal (see the README's benchmark "
    "section), not a failure; the benchmark exits 0 either way"
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(
            "Time dcounter_crdt's increments, value and merge at 10, 100 and 1,000 replicas "
            "beside plain-dict baselines measured in the same run, and check the goals "
            "(add() <= 2x a bare dict[key] += 1; 1,000-replica merge < 1 ms). Each "
            "figure is the best of --repeat runs. Always exits 0 after printing the table."
        )
    )
    parser.add_argument(
        "--repeat", type=int, default=5, help="runs per figure; the best counts (default 5)"
    )
    parser.add_argument(
        "--number",
        type=int,
        default=200_000,
        help="calls per run for the cheap operations (default 200000)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a tenth of the calls and 3 runs: a smoke test"
    )
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.number < 10:
        parser.error("--repeat must be >= 1 and --number >= 10")
    number, repeat = args.number, args.repeat
    if args.quick:
        number, repeat = max(10, number // 10), min(repeat, 3)

    print(
        f"dcounter_crdt {crdt_version} on {platform.python_implementation()} "
        f"{platform.python_version()} ({platform.machine()}); best of {repeat}, "
        "time per operation"
    )
    started = time.perf_counter()
    rows = [
        *bench_updates(number, repeat),
        *bench_values(number // 4, repeat),
        *bench_merges(max(10, number // 1_000), repeat),
    ]
    map_rows = bench_map(repeat)
    print()
    _print_table(rows)
    print()
    _print_table(map_rows, "keys")
    print(
        f"(PNCounterMap, {MAP_REPLICAS} replicas per key; (*) take_delta() after one add() "
        "per key, against copying a dict of as many keys)"
    )
    print()
    for line in _goal_lines(rows):
        print(line)
    print(f"\n(ran in {time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

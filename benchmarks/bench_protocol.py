"""Benchmark of dcounter_protocol's message codec and state digest.

Run with ``hatch run python benchmarks/bench_protocol.py`` (about 15 s). Every figure is shown
beside a baseline measured in the same run:

* encode: ``msgpack.packb`` of the same field dict (compact ints, not the reference's bytes),
  bare and with the same zstd rule (level 3 when the body passes 1 KiB and shrinks). Both
  sides cycle through pushes of the same replicas whose counts differ, as a node's
  successive pushes do, so no cache of counts can stand in for encoding. A push is timed
  both as a node builds it (``Push.from_state``, counts already validated by the state) and
  from plain dicts (every count checked again);
* decode: ``msgpack.unpackb`` of that body, bare and after the same zstd decompression;
* digest: xxhash64 of ``msgpack.packb`` of the reference's sorted ``[incs, decs]`` structure.

Times are the best of several interleaved repeats, in microseconds per operation. The
issue's goal (``encode_message`` of a 10-replica push at most 2x ``packb`` of the same map)
is printed as PASS or MISS, for both kinds of push, when 10 is among ``--sizes``; a MISS
never fails the run.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import timeit
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgpack
import xxhash
import zstandard

from dcounter_crdt import CounterState
from dcounter_protocol import (
    COMPRESSION_THRESHOLD,
    FLAG_COMPRESSED,
    Push,
    decode_message,
    encode_message,
    state_digest,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

DEFAULT_SIZES = (10, 100, 1000)
#: Goal from issue 19: encode_message of a 10-replica push within this factor of packb.
ENCODE_GOAL_REPLICAS = 10
ENCODE_GOAL_RATIO = 2.0
NODE = "10.0.0.1:7946"
#: Pushes of different counts cycled through by the encode timings.
VARIANTS = 16
ENCODE_STATE = "encode_message (from_state)"


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the result table."""

    operation: str
    replicas: int
    wire_bytes: int
    ours_us: float
    baseline: str
    baseline_us: float

    @property
    def ratio(self) -> float:
        return self.ours_us / self.baseline_us


def _calibrate(timer: timeit.Timer, min_time: float, repeats: int) -> int:
    number, elapsed = timer.autorange()
    return max(1, int(number * (min_time / repeats) / max(elapsed, 1e-9)))


def compare(
    ours: Callable[[], object],
    baseline: Callable[[], object],
    min_time: float,
    repeats: int = 7,
) -> tuple[float, float]:
    """Best per-call seconds of both, their runs interleaved so that load hits both alike."""
    timers = (timeit.Timer(ours), timeit.Timer(baseline))
    numbers = [_calibrate(timer, min_time / 2, repeats) for timer in timers]
    best = [float("inf"), float("inf")]
    for _ in range(repeats):
        for i, timer in enumerate(timers):
            best[i] = min(best[i], timer.timeit(numbers[i]) / numbers[i])
    return best[0], best[1]


def cluster_state(replicas: int, shift: int = 0) -> tuple[dict[str, int], dict[str, int]]:
    """Counts of a cluster of ``replicas`` nodes: every one incremented, a third decremented
    (no zero count: a state drops those); ``shift`` raises every count."""
    ids = [f"10.0.{i // 250}.{i % 250 + 1}:7946" for i in range(replicas)]
    increments = {rid: 1_000 + i * 37 + shift for i, rid in enumerate(ids)}
    decrements = {rid: i * 11 + 1 + shift for i, rid in enumerate(ids) if i % 3 == 0}
    return increments, decrements


def codec_rows(replicas: int, min_time: float) -> list[Row]:
    states = [cluster_state(replicas, shift) for shift in range(VARIANTS)]
    pushes = itertools.cycle([Push(NODE, inc, dec) for inc, dec in states])
    state_pushes = itertools.cycle(
        [Push.from_state(NODE, CounterState.from_maps(inc, dec)) for inc, dec in states]
    )
    all_fields = [{"t": 1, "id": NODE, "inc": inc, "dec": dec} for inc, dec in states]
    cycled_fields = itertools.cycle(all_fields)
    increments, decrements = states[0]
    message = Push(NODE, increments, decrements)
    fields = all_fields[0]
    compressor = zstandard.ZstdCompressor(level=3, write_checksum=True)
    decompressor = zstandard.ZstdDecompressor()

    def baseline_encode() -> bytes:
        body: bytes = msgpack.packb(next(cycled_fields))
        if len(body) > COMPRESSION_THRESHOLD:
            compressed: bytes = compressor.compress(body)
            if len(compressed) < len(body):
                return b"\x80" + compressed
        return b"\x00" + body

    ours = encode_message(message)
    packed = baseline_encode()

    def baseline_decode() -> object:
        body = decompressor.decompress(packed[1:]) if packed[0] == FLAG_COMPRESSED else packed[1:]
        return msgpack.unpackb(body)

    plain_body = msgpack.packb(fields)

    def packb() -> bytes:
        return msgpack.packb(next(cycled_fields))

    comparisons = [
        (ENCODE_STATE, lambda: encode_message(next(state_pushes)), "packb", packb),
        ("encode_message", lambda: encode_message(next(pushes)), "packb", packb),
        (
            "encode_message",
            lambda: encode_message(next(pushes)),
            "packb + zstd rule",
            baseline_encode,
        ),
        (
            "decode_message",
            lambda: decode_message(ours),
            "unpackb",
            lambda: msgpack.unpackb(plain_body),
        ),
        ("decode_message", lambda: decode_message(ours), "zstd + unpackb", baseline_decode),
    ]
    rows = []
    for operation, run_ours, baseline, run_baseline in comparisons:
        ours_s, baseline_s = compare(run_ours, run_baseline, min_time)
        rows.append(Row(operation, replicas, len(ours), ours_s * 1e6, baseline, baseline_s * 1e6))
    return rows


def digest_row(replicas: int, min_time: float) -> Row:
    increments, decrements = cluster_state(replicas)

    def baseline() -> int:
        ids = sorted(increments.keys() | decrements.keys())
        structure = [
            [{"NodeID": rid, "Value": increments.get(rid, 0)} for rid in ids],
            [{"NodeID": rid, "Value": decrements.get(rid, 0)} for rid in ids],
        ]
        return xxhash.xxh64_intdigest(msgpack.packb(structure))

    ours_s, baseline_s = compare(lambda: state_digest(increments, decrements), baseline, min_time)
    return Row(
        "state_digest", replicas, 0, ours_s * 1e6, "xxh64(packb(structure))", baseline_s * 1e6
    )


def render(rows: Sequence[Row]) -> str:
    header = ("operation", "replicas", "wire B", "ours µs", "baseline", "base µs", "ours/base")
    lines = [
        (
            row.operation,
            str(row.replicas),
            str(row.wire_bytes) if row.wire_bytes else "-",
            f"{row.ours_us:.1f}",
            row.baseline,
            f"{row.baseline_us:.1f}",
            f"{row.ratio:.2f}x",
        )
        for row in rows
    ]
    widths = [max(len(cell) for cell in column) for column in zip(header, *lines, strict=True)]
    left = {0, 4}

    def fmt(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.ljust(width) if i in left else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([fmt(header), rule, *(fmt(line) for line in lines)])


def goal_lines(rows: Sequence[Row]) -> list[str]:
    """PASS/MISS for the encode goal, per kind of push (none when its size was not measured)."""
    kinds = {
        ENCODE_STATE: "built from a CounterState, as a node sends it",
        "encode_message": "built from plain dicts, every count checked",
    }
    lines = []
    for row in rows:
        if row.operation in kinds and (row.replicas, row.baseline) == (
            ENCODE_GOAL_REPLICAS,
            "packb",
        ):
            verdict = "PASS" if row.ratio <= ENCODE_GOAL_RATIO else "MISS"
            lines.append(
                f"[{verdict}] encode_message of a {ENCODE_GOAL_REPLICAS}-replica push "
                f"({kinds[row.operation]}) costs {row.ratio:.2f}x msgpack.packb of the same map "
                f"(goal <= {ENCODE_GOAL_RATIO:g}x; ours writes the reference's fixed-width "
                "integers and validates every field)"
            )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Time dcounter_protocol's message codec and state digest against plain "
        "msgpack/xxhash baselines measured in the same run."
    )
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=list(DEFAULT_SIZES),
        metavar="N",
        help="replica counts to measure (default: %(default)s)",
    )
    parser.add_argument(
        "--min-time",
        type=float,
        default=0.25,
        metavar="SECONDS",
        help="timing budget per measurement (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    if any(size < 1 for size in args.sizes) or args.min_time <= 0:
        parser.error("sizes and --min-time must be positive")

    rows: list[Row] = []
    for size in args.sizes:
        rows.extend(codec_rows(size, args.min_time))
    rows.extend(digest_row(size, args.min_time) for size in args.sizes)
    print(f"dcounter_protocol codec and digest (Python {sys.version.split()[0]})")
    print(render(rows))
    for line in goal_lines(rows):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

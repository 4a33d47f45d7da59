"""The nemesis schedule: which fault strikes which nodes when, decided by a seed alone.

Pure code (no I/O, no clock): :func:`plan_schedule` turns the fault kinds, the node count,
the run's length, the interval and a seed into a list of :class:`Fault` windows, so the
same arguments always give the same schedule and a failing run can be replayed. The lab
(:mod:`dcounter_tools.cluster.lab`) carries each window out and heals it at its end.

Faults never overlap: one starts every ``interval`` seconds (the first after one interval
of calm), lasts between 40 % and 80 % of the interval, and every window ends at least
half an interval before the writes stop, so each one is healed before the final check.

Partitions are expressed as directed links ``(src, dst)``: ``src`` can no longer send
packets to ``dst`` (a blackhole route to ``dst`` inside ``src``'s namespace). A symmetric
partition cuts both directions of every link between two sides; a one-way partition only
one direction (replies then get lost too, so TCP stalls, but the asymmetry is real at the
IP layer, as in Jepsen).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from dcounter_tools.errors import UsageError

__all__ = [
    "NEMESIS_KINDS",
    "PARTITION_SHAPES",
    "Fault",
    "Links",
    "parse_nemesis",
    "plan_schedule",
    "render_schedule",
]

#: What ``--nemesis`` accepts.
NEMESIS_KINDS = ("partition", "kill", "pause", "restart")
#: The partition shapes the nemesis picks from (fewer with fewer nodes, see _shapes).
PARTITION_SHAPES = ("halves", "majority", "isolated", "bridge", "one-way")

_MIN_SHARE = 0.4
_MAX_SHARE = 0.8


#: Directed links ``(src, dst)``: ``src`` cannot send to ``dst``.
Links = tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault window: ``kind`` on ``nodes`` from ``start`` to ``end`` (seconds into the run).

    For kill, pause and restart, ``nodes`` holds the one victim. For a partition, ``shape``
    names it, ``sides`` lists its sides (a bridge node is on both; for one-way, senders
    then receivers), ``links`` the directed ``(src, dst)`` pairs cut, and ``nodes`` every
    node the partition touches.
    """

    kind: str
    start: float
    end: float
    nodes: tuple[int, ...]
    shape: str = ""
    sides: tuple[tuple[int, ...], ...] = ()
    links: Links = ()

    def describe(self, names: tuple[str, ...] | None = None) -> str:
        """A one-line human description (node indexes, or ``names`` when given)."""

        def group(side: tuple[int, ...]) -> str:
            return "[" + " ".join(names[i] if names else f"n{i}" for i in side) + "]"

        if self.kind != "partition":
            verb = {"kill": "SIGKILL", "pause": "SIGSTOP", "restart": "SIGTERM"}[self.kind]
            return f"{self.kind} {group(self.nodes)[1:-1]} ({verb}, back at the end)"
        joint = " -/-> " if self.shape == "one-way" else " | "
        return f"partition {self.shape}: " + joint.join(group(side) for side in self.sides)

    def to_json(self) -> dict[str, object]:
        """The fault as a JSON object (as the history stores it)."""
        return {
            "kind": self.kind,
            "start": self.start,
            "end": self.end,
            "nodes": list(self.nodes),
            "shape": self.shape,
            "sides": [list(side) for side in self.sides],
            "links": [list(link) for link in self.links],
        }


def parse_nemesis(text: str) -> tuple[str, ...]:
    """The kinds in a ``--nemesis`` value ("partition,kill"); UsageError for unknown ones."""
    kinds = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [k for k in kinds if k not in NEMESIS_KINDS]
    if unknown or not kinds:
        raise UsageError(
            f"--nemesis takes a comma-separated subset of {','.join(NEMESIS_KINDS)}"
            + (f"; unknown: {', '.join(unknown)}" if unknown else "")
        )
    return kinds


def _cut(side_a: list[int], side_b: list[int]) -> Links:
    pairs = [(a, b) for a in side_a for b in side_b] + [(b, a) for a in side_a for b in side_b]
    return tuple(sorted(pairs))


def _shapes(count: int) -> tuple[str, ...]:
    if count < 3:
        return ("halves", "one-way")
    return PARTITION_SHAPES


def _partition(rng: random.Random, count: int) -> tuple[str, list[list[int]], Links]:
    """A random partition: its shape, its sides and the links it cuts."""
    shape = rng.choice(_shapes(count))
    order = list(range(count))
    rng.shuffle(order)
    if shape == "halves":
        a, b = sorted(order[: count // 2]), sorted(order[count // 2 :])
        return shape, [a, b], _cut(a, b)
    if shape == "majority":
        minority = sorted(order[: (count - 1) // 2])
        majority = sorted(order[(count - 1) // 2 :])
        return shape, [majority, minority], _cut(majority, minority)
    if shape == "isolated":
        alone, rest = [order[0]], sorted(order[1:])
        return shape, [alone, rest], _cut(alone, rest)
    if shape == "bridge":
        # Two sides that cannot talk to each other, and one node that talks to both.
        bridge, rest = order[0], order[1:]
        left, right = sorted(rest[: len(rest) // 2]), sorted(rest[len(rest) // 2 :])
        return shape, [sorted([*left, bridge]), sorted([*right, bridge])], _cut(left, right)
    # one-way: a random half can no longer send to the other; the other way stays open.
    senders, receivers = sorted(order[: count // 2]), sorted(order[count // 2 :])
    return shape, [senders, receivers], tuple(sorted((s, r) for s in senders for r in receivers))


def plan_schedule(
    kinds: tuple[str, ...], count: int, duration: float, interval: float, seed: int
) -> list[Fault]:
    """The seeded fault windows of a run; see the module docstring."""
    if count < 2 and "partition" in kinds:
        raise UsageError("--nemesis partition needs at least 2 nodes")
    if not interval > 0:
        raise UsageError("--nemesis-interval must be positive")
    rng = random.Random(f"nemesis/{seed}")
    faults: list[Fault] = []
    start = interval
    while kinds and start + interval * (_MAX_SHARE + 0.5) <= duration:
        kind = rng.choice(kinds)
        length = interval * rng.uniform(_MIN_SHARE, _MAX_SHARE)
        end = round(start + length, 3)
        if kind == "partition":
            shape, sides, links = _partition(rng, count)
            touched = tuple(sorted({n for side in sides for n in side}))
            sides_t = tuple(tuple(side) for side in sides)
            faults.append(Fault(kind, round(start, 3), end, touched, shape, sides_t, links))
        else:
            faults.append(Fault(kind, round(start, 3), end, (rng.randrange(count),)))
        start += interval
    return faults


def render_schedule(faults: list[Fault], names: tuple[str, ...] | None = None) -> str:
    """The schedule as printed before a run (one line per fault)."""
    if not faults:
        return "nemesis schedule: no faults fit in the run"
    lines = [f"nemesis schedule ({len(faults)} faults):"]
    for fault in faults:
        lines.append(f"  {fault.start:7.2f} -> {fault.end:7.2f} s  {fault.describe(names)}")
    return "\n".join(lines)

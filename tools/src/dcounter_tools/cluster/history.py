"""The history of a fault-lab run: every operation, every fault window, every poll.

A Jepsen-style record, kept as JSON lines (``--history FILE.jsonl``), one object per line
with a ``type``:

* ``op``: one write: ``client``, ``node``, ``amount`` (signed), ``key`` (its
  Idempotency-Key), ``start``/``end`` (seconds since the run began) and ``outcome``:
  ``ok`` (acknowledged), ``failed`` (certainly not applied) or ``indeterminate`` (it may or
  may not have been applied: a timeout, a dropped connection, a 5xx);
* ``fault``: one nemesis window (:meth:`~dcounter_tools.cluster.nemesis.Fault.to_json`),
  with the times it actually started and was healed;
* ``poll``: one node's counter read during the run: ``time``, ``node``, ``value``, and the
  sums of its increments (``p``) and decrements (``n``);
* ``final``: every node's counter after healing and the quiet period (one per node).

Times are the moment an operation was invoked and the moment its outcome was known, so
an operation may have taken effect anywhere in between.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from dcounter_tools.errors import InputError

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["OUTCOMES", "FaultRecord", "History", "Op", "Read", "load_history"]

#: An operation's possible outcomes.
OUTCOMES = ("ok", "failed", "indeterminate")


@dataclass(frozen=True, slots=True)
class Op:
    """One write and what became of it."""

    client: int
    node: int
    amount: int
    key: str
    start: float
    end: float
    outcome: str


@dataclass(frozen=True, slots=True)
class Read:
    """One node's counter as read at ``time``: value, increments sum ``p``, decrements ``n``."""

    time: float
    node: int
    value: int
    p: int
    n: int


@dataclass(frozen=True, slots=True)
class FaultRecord:
    """A fault as planned (``fault``) and when it actually began and was healed."""

    fault: dict[str, Any]
    started: float
    healed: float
    description: str


@dataclass(slots=True)
class History:
    """Everything a lab run recorded; what the checker judges."""

    nodes: tuple[str, ...] = ()
    seed: int = 0
    ops: list[Op] = field(default_factory=list)
    faults: list[FaultRecord] = field(default_factory=list)
    polls: list[Read] = field(default_factory=list)
    #: Each node's final read (None where the node could not be read).
    final: list[Read | None] = field(default_factory=list)

    def lines(self) -> list[dict[str, Any]]:
        """The history as JSON objects, in the order they are written."""
        out: list[dict[str, Any]] = [
            {"type": "run", "nodes": list(self.nodes), "seed": self.seed},
        ]
        events: list[tuple[float, dict[str, Any]]] = []
        events += [(op.start, {"type": "op", **asdict(op)}) for op in self.ops]
        events += [(f.started, {"type": "fault", **asdict(f)}) for f in self.faults]
        events += [(r.time, {"type": "poll", **asdict(r)}) for r in self.polls]
        events.sort(key=lambda item: item[0])
        out += [event for _, event in events]
        for i, read in enumerate(self.final):
            out.append({"type": "final", "node": i, "read": None if read is None else asdict(read)})
        return out

    def write(self, path: Path) -> None:
        """Write the history to ``path`` as JSON lines."""
        with path.open("w", encoding="utf-8") as out:
            for line in self.lines():
                out.write(json.dumps(line, separators=(",", ":")) + "\n")


def _parse(history: History, data: dict[str, Any]) -> None:
    kind = data.pop("type")
    if kind == "run":
        history.nodes = tuple(str(n) for n in data["nodes"])
        history.seed = int(data["seed"])
    elif kind == "op":
        op = Op(**data)
        if op.outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {op.outcome!r}")
        history.ops.append(op)
    elif kind == "fault":
        history.faults.append(FaultRecord(**data))
    elif kind == "poll":
        history.polls.append(Read(**data))
    elif kind == "final":
        read = data["read"]
        history.final.append(None if read is None else Read(**read))
    else:
        raise ValueError(f"unknown record type {kind!r}")


def load_history(path: Path) -> History:
    """Read a history written by :meth:`History.write`; InputError if it is not one."""
    history = History()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            _parse(history, json.loads(line))
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{path}:{number}: not a history record: {exc}") from None
    return history

"""``--plot FILE.png``: every node's value over time, fault windows shaded, acknowledged total.

Needs matplotlib, the ``plot`` extra of dcounter-tools (``pip install dcounter-tools[plot]``);
:func:`plot_history` raises UsageError saying so when it is missing.
"""

from __future__ import annotations

import importlib
from itertools import accumulate
from typing import TYPE_CHECKING, Any

from dcounter_tools.errors import UsageError

if TYPE_CHECKING:
    from pathlib import Path

    from dcounter_tools.cluster.history import History

__all__ = ["FAULT_COLOURS", "plot_history", "require_matplotlib"]

#: Shading of each kind of fault window.
FAULT_COLOURS = {
    "partition": "tab:orange",
    "kill": "tab:red",
    "pause": "tab:purple",
    "restart": "tab:olive",
}


def require_matplotlib() -> Any:
    """The ``matplotlib.pyplot`` module (Agg backend); UsageError if not installed."""
    try:
        matplotlib = importlib.import_module("matplotlib")
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install 'dcounter-tools[plot]'") from None
    matplotlib.use("Agg")
    return importlib.import_module("matplotlib.pyplot")


def plot_history(history: History, path: Path, *, title: str = "") -> None:
    """Draw ``history`` into the PNG file ``path``."""
    plt = require_matplotlib()
    figure, axes = plt.subplots(figsize=(12, 5.5), dpi=110)
    try:
        shown: set[str] = set()
        for record in history.faults:
            kind = str(record.fault.get("kind", "?"))
            axes.axvspan(
                record.started,
                record.healed,
                color=FAULT_COLOURS.get(kind, "tab:gray"),
                alpha=0.18,
                label=None if kind in shown else f"{kind} window",
            )
            shown.add(kind)
        for node, name in enumerate(history.nodes):
            reads = [r for r in history.polls if r.node == node]
            reads.sort(key=lambda r: r.time)
            axes.step(
                [r.time for r in reads],
                [r.value for r in reads],
                where="post",
                linewidth=1.0,
                label=name,
            )
        acked = sorted((op.end, op.amount) for op in history.ops if op.outcome == "ok")
        if acked:
            times = [0.0, *(t for t, _ in acked)]
            totals = [0, *accumulate(a for _, a in acked)]
            axes.step(
                times,
                totals,
                where="post",
                color="black",
                linewidth=2.0,
                linestyle="--",
                label="acknowledged total",
                zorder=3,
            )
        final = next((r for r in history.final if r is not None), None)
        if final is not None:
            axes.axhline(
                final.value,
                color="gray",
                linewidth=0.8,
                linestyle=":",
                label=f"final value {final.value}",
            )
        axes.set_xlabel("seconds since the run began")
        axes.set_ylabel("counter value")
        axes.set_title(title or f"dcounter fault lab, seed {history.seed}")
        axes.grid(True, alpha=0.3)
        # Outside the axes, so it never hides a fault window or a node's line.
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
        figure.tight_layout()
        figure.savefig(path)
    finally:
        plt.close(figure)

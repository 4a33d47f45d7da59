"""The checker: does a lab history prove that nothing was lost and nothing counted twice?

Pure code over a :class:`~dcounter_tools.cluster.history.History`, in the spirit of
Maelstrom's pn-counter checker. A history is valid when:

1. every node could be read after healing, and all hold the same value;
2. that value equals the sum of the acknowledged (``ok``) operations plus the sum of some
   subset of the ``indeterminate`` ones (a failed operation never counts). The same holds
   separately for the increments total ``p`` and the decrements total ``n``, which catches
   a lost decrement hidden by a doubled increment. The subset-sum is solved exactly (a
   bitset of every reachable sum) while the amounts are small enough, else only the bounds
   (all negative ones .. all positive ones) are checked, and the report says so;
3. no poll during the run ever showed more increments (or decrements) than the operations
   invoked before that read ended could have written, failed ones excluded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

    from dcounter_tools.cluster.history import History

__all__ = ["EXACT_LIMIT", "Verdict", "check_history", "reachable"]

#: Above this many reachable sums, the subset-sum check falls back to bounds.
EXACT_LIMIT = 1_000_000


@dataclass(frozen=True, slots=True)
class Verdict:
    """The checker's answer: ``valid``, why, and the figures behind it."""

    valid: bool
    reason: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The verdict as a JSON object."""
        return {"valid": self.valid, "reason": self.reason, **self.details}


def reachable(amounts: Sequence[int], target: int) -> bool | None:
    """Whether some subset of ``amounts`` sums to ``target``; None if too large to solve.

    Sums are bits of one integer, offset by the total of the negative amounts, so adding
    an amount to every reachable sum at once is one shift.
    """
    low = sum(a for a in amounts if a < 0)
    high = sum(a for a in amounts if a > 0)
    if not low <= target <= high:
        return False
    if high - low > EXACT_LIMIT:
        return None
    bits = 1 << -low
    for amount in amounts:
        bits |= bits << amount if amount >= 0 else bits >> -amount
    return bool(bits >> (target - low) & 1)


def _subset_check(what: str, have: int, acked: int, maybe: Sequence[int]) -> tuple[str | None, str]:
    """(failure reason or None, method) for one total against acknowledged + subset."""
    extra = have - acked
    found = reachable(maybe, extra)
    if found is None:
        low = sum(a for a in maybe if a < 0)
        high = sum(a for a in maybe if a > 0)
        if low <= extra <= high:
            return None, "bounds"
        found = False
    if found:
        return None, "exact"
    if not maybe:
        return (
            f"{what} is {have} but the acknowledged operations sum to {acked} and none is "
            "indeterminate",
            "exact",
        )
    return (
        f"{what} is {have}: the acknowledged operations sum to {acked} and no subset of the "
        f"{len(maybe)} indeterminate ones adds {extra}",
        "exact",
    )


def _poll_violation(history: History) -> str | None:
    """The first read showing more than could have been written by then, if any."""
    # Upper bounds of the increments and decrements written by time t: every operation
    # invoked by then that did not certainly fail.
    live = sorted((op.start, op.amount) for op in history.ops if op.outcome != "failed")
    reads = sorted(history.polls, key=lambda read: read.time)
    index = 0
    pos = neg = 0
    for read in reads:
        while index < len(live) and live[index][0] <= read.time:
            amount = live[index][1]
            pos += max(amount, 0)
            neg += max(-amount, 0)
            index += 1
        name = _name(history, read.node)
        if read.p > pos:
            return (
                f"{name} showed increments {read.p} at {read.time:.3f} s, but the operations "
                f"invoked by then could have written at most {pos}"
            )
        if read.n > neg:
            return (
                f"{name} showed decrements {read.n} at {read.time:.3f} s, but the operations "
                f"invoked by then could have written at most {neg}"
            )
    return None


def _name(history: History, node: int) -> str:
    return history.nodes[node] if node < len(history.nodes) else f"node {node}"


def check_history(history: History) -> Verdict:
    """Judge ``history``; see the module docstring for the rules."""
    ok = [op.amount for op in history.ops if op.outcome == "ok"]
    maybe = [op.amount for op in history.ops if op.outcome == "indeterminate"]
    details: dict[str, Any] = {
        "operations": len(history.ops),
        "ok": len(ok),
        "failed": sum(op.outcome == "failed" for op in history.ops),
        "indeterminate": len(maybe),
        "acknowledged_sum": sum(ok),
        "faults": len(history.faults),
        "polls": len(history.polls),
        "final_values": [None if r is None else r.value for r in history.final],
    }
    if not history.final:
        return Verdict(False, "no final reads in the history", details)
    unread = [_name(history, i) for i, r in enumerate(history.final) if r is None]
    if unread:
        return Verdict(False, f"could not read {', '.join(unread)} after healing", details)
    finals = [r for r in history.final if r is not None]
    if len({(r.value, r.p, r.n) for r in finals}) != 1:
        shown = ", ".join(f"{_name(history, r.node)}={r.value}" for r in finals)
        return Verdict(False, f"the nodes disagree after healing: {shown}", details)
    final = finals[0]
    checks = (
        ("the final value", final.value, sum(ok), maybe),
        ("the increments total", final.p, sum(a for a in ok if a > 0), [a for a in maybe if a > 0]),
        (
            "the decrements total",
            final.n,
            -sum(a for a in ok if a < 0),
            [-a for a in maybe if a < 0],
        ),
    )
    methods = []
    for what, have, acked, candidates in checks:
        failure, method = _subset_check(what, have, acked, candidates)
        methods.append(method)
        if failure is not None:
            return Verdict(False, failure, {**details, "method": method})
    details["method"] = "exact" if all(m == "exact" for m in methods) else "bounds"
    details["indeterminate_sum_applied"] = final.value - sum(ok)
    violation = _poll_violation(history)
    if violation is not None:
        return Verdict(False, violation, details)
    return Verdict(
        True,
        f"every node holds {final.value} = {sum(ok)} acknowledged "
        f"{final.value - sum(ok):+d} from {len(maybe)} indeterminate operations "
        f"({details['method']} subset-sum), and no read exceeded what could have been written",
        details,
    )

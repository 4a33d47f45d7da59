"""The checker on crafted histories: it accepts what is possible and rejects what is not."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from dcounter_tools.cluster.checker import EXACT_LIMIT, check_history, reachable
from dcounter_tools.cluster.history import History, Op, Read, load_history
from dcounter_tools.errors import InputError

if TYPE_CHECKING:
    from pathlib import Path

NODES = ("node-0", "node-1", "node-2")


def _op(amount: int, outcome: str = "ok", start: float = 1.0, node: int = 0) -> Op:
    return Op(0, node, amount, f"k{start}{amount}", start, start + 0.1, outcome)


def _final(value: int, p: int, n: int) -> list[Read | None]:
    return [Read(10.0, i, value, p, n) for i in range(len(NODES))]


def _history(ops: list[Op], final: list[Read | None], polls: list[Read] | None = None) -> History:
    return History(nodes=NODES, seed=1, ops=ops, final=final, polls=polls or [])


OPS = [_op(5), _op(-2, start=2.0), _op(3, start=3.0)]  # acknowledged: +8 -2 = 6


def test_a_history_where_every_acknowledged_write_counts_once_is_valid() -> None:
    verdict = check_history(_history(OPS, _final(6, 8, 2)))
    assert verdict.valid, verdict.reason
    assert verdict.details["method"] == "exact"
    assert verdict.details["acknowledged_sum"] == 6


def test_a_lost_acknowledged_write_is_invalid() -> None:
    verdict = check_history(_history(OPS, _final(1, 3, 2)))  # the +5 vanished
    assert not verdict.valid
    assert "the final value is 1" in verdict.reason


def test_a_double_counted_write_is_invalid() -> None:
    verdict = check_history(_history(OPS, _final(9, 11, 2)))  # the +3 counted twice
    assert not verdict.valid
    assert "the final value is 9" in verdict.reason


def test_a_doubled_increment_hiding_a_doubled_decrement_is_invalid() -> None:
    ops = [_op(2), _op(-2, start=2.0)]
    # The value is right (0), but each write counted twice: p=4 and n=4, not 2 and 2.
    verdict = check_history(_history(ops, _final(0, 4, 4)))
    assert not verdict.valid
    assert "the increments total is 4" in verdict.reason


def test_an_indeterminate_write_that_landed_is_valid() -> None:
    ops = [*OPS, _op(4, "indeterminate", start=4.0)]
    verdict = check_history(_history(ops, _final(10, 12, 2)))
    assert verdict.valid, verdict.reason
    assert verdict.details["indeterminate_sum_applied"] == 4


def test_an_indeterminate_write_that_did_not_land_is_valid() -> None:
    ops = [*OPS, _op(4, "indeterminate", start=4.0)]
    assert check_history(_history(ops, _final(6, 8, 2))).valid


def test_only_a_real_subset_of_the_indeterminate_writes_is_accepted() -> None:
    ops = [*OPS, *(_op(4, "indeterminate", start=4.0 + i) for i in range(3))]
    assert check_history(_history(ops, _final(14, 16, 2))).valid  # two of the three landed
    verdict = check_history(_history(ops, _final(8, 10, 2)))  # +2: no subset of {4,4,4}
    assert not verdict.valid
    assert "no subset of the 3 indeterminate ones adds 2" in verdict.reason


def test_a_failed_write_that_landed_is_invalid() -> None:
    ops = [*OPS, _op(7, "failed", start=4.0)]
    verdict = check_history(_history(ops, _final(13, 15, 2)))
    assert not verdict.valid
    assert "none is indeterminate" in verdict.reason


def test_nodes_that_disagree_after_healing_are_invalid() -> None:
    final = _final(6, 8, 2)
    final[2] = Read(10.0, 2, 1, 3, 2)
    verdict = check_history(_history(OPS, final))
    assert not verdict.valid
    assert verdict.reason == "the nodes disagree after healing: node-0=6, node-1=6, node-2=1"


def test_a_node_that_cannot_be_read_after_healing_is_invalid() -> None:
    final = _final(6, 8, 2)
    final[1] = None
    verdict = check_history(_history(OPS, final))
    assert not verdict.valid
    assert verdict.reason == "could not read node-1 after healing"


def test_a_read_above_what_could_have_been_written_by_then_is_invalid() -> None:
    # At 1.5 s only the +5 (invoked at 1.0 s) exists; a read of p=8 is from the future.
    polls = [Read(1.5, 1, 8, 8, 0)]
    verdict = check_history(_history(OPS, _final(6, 8, 2), polls))
    assert not verdict.valid
    assert "node-1 showed increments 8 at 1.500 s" in verdict.reason


def test_a_read_of_an_invoked_but_unfinished_write_is_fine() -> None:
    polls = [Read(1.05, 1, 5, 5, 0), Read(2.05, 2, 3, 5, 2)]
    assert check_history(_history(OPS, _final(6, 8, 2), polls)).valid


def test_failed_writes_never_raise_the_bound_of_a_read() -> None:
    ops = [_op(5), _op(9, "failed", start=0.5)]
    verdict = check_history(_history(ops, _final(5, 5, 0), [Read(2.0, 0, 14, 14, 0)]))
    assert not verdict.valid


def test_no_final_reads_is_invalid() -> None:
    assert not check_history(History(nodes=NODES, ops=OPS)).valid


def test_reachable_solves_subset_sums_exactly() -> None:
    assert reachable([3, 5, -2], 6) is True  # 3 + 5 - 2
    assert reachable([3, 5, -2], 4) is False
    assert reachable([], 0) is True
    assert reachable([1, 1], 3) is False


def test_reachable_gives_up_beyond_the_exact_limit_and_the_checker_uses_bounds() -> None:
    big = [EXACT_LIMIT, 1]
    assert reachable(big, 1) is None
    ops = [_op(EXACT_LIMIT, "indeterminate"), _op(1, "indeterminate", start=2.0)]
    verdict = check_history(_history(ops, _final(2, 2, 0)))
    assert verdict.valid  # within the bounds 0..EXACT_LIMIT+1, though no subset adds 2
    assert verdict.details["method"] == "bounds"


def test_a_history_round_trips_through_its_jsonl_file(tmp_path: Path) -> None:
    history = _history(
        [*OPS, _op(4, "indeterminate", start=4.0)],
        _final(6, 8, 2),
        [Read(1.5, 1, 5, 5, 0)],
    )
    path = tmp_path / "h.jsonl"
    history.write(path)
    loaded = load_history(path)
    assert loaded.ops == history.ops
    assert loaded.polls == history.polls
    assert loaded.final == history.final
    assert loaded.nodes == NODES
    assert check_history(loaded) == check_history(history)


def test_a_file_that_is_not_a_history_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"type": "op", "client": 0}\n')
    with pytest.raises(InputError, match=r"bad\.jsonl:1"):
        load_history(path)

"""BurstBudget: how many inbound messages the node handles at once per time window."""

from __future__ import annotations

from dcounter_node._burst import BurstBudget


def test_allows_up_to_the_limit_within_a_window() -> None:
    budget = BurstBudget(3, 1.0)
    assert [budget.take(10.0 + i * 0.1) for i in range(5)] == [True, True, True, False, False]


def test_a_new_window_starts_after_the_previous_one_ended() -> None:
    budget = BurstBudget(2, 1.0)
    assert [budget.take(t) for t in (0.0, 0.5, 0.9, 1.0, 1.5, 1.9)] == [
        True,
        True,
        False,
        True,
        True,
        False,
    ]


def test_the_first_take_is_always_allowed() -> None:
    assert BurstBudget(1, 5.0).take(0.0)

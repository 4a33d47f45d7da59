"""The retry policy as a specification: which node, how long to wait, when to stop."""

from __future__ import annotations

import random

import pytest

from dcounter_client import InvalidArgumentError, RetryPolicy
from dcounter_client._policy import Attempts, Failure, GiveUp, Retry

NOT_SENT, UNKNOWN = Failure.NOT_SENT, Failure.UNKNOWN


def begin(policy: RetryPolicy, *, nodes: int = 3, first: int = 0, write: bool = True) -> Attempts:
    return policy.begin(nodes=nodes, first=first, write=write, now=0.0, rng=random.Random(7))


def test_a_write_that_was_not_sent_moves_to_the_next_node_at_once() -> None:
    attempts = begin(RetryPolicy())
    assert attempts.failed(NOT_SENT, now=0.1) == Retry(node=1, delay=0.0)
    assert attempts.failed(NOT_SENT, now=0.2) == Retry(node=2, delay=0.0)
    assert not attempts.pinned


def test_a_write_whose_outcome_is_unknown_stays_on_its_node() -> None:
    attempts = begin(RetryPolicy(), first=1)
    step = attempts.failed(UNKNOWN, now=0.1)
    assert isinstance(step, Retry)
    assert step.node == 1
    assert step.delay > 0
    assert attempts.pinned


def test_a_pinned_write_stays_even_when_its_node_then_refuses_connections() -> None:
    attempts = begin(RetryPolicy(retries=10))
    attempts.failed(UNKNOWN, now=0.0)
    for _ in range(5):
        step = attempts.failed(NOT_SENT, now=0.0)
        assert isinstance(step, Retry)
        assert step.node == 0


def test_a_write_pinned_after_failing_over_stays_on_the_second_node() -> None:
    attempts = begin(RetryPolicy())
    attempts.failed(NOT_SENT, now=0.0)
    step = attempts.failed(UNKNOWN, now=0.0)
    assert isinstance(step, Retry)
    assert step.node == 1


def test_reads_move_on_after_any_failure() -> None:
    attempts = begin(RetryPolicy(), write=False)
    assert attempts.failed(UNKNOWN, now=0.0) == Retry(node=1, delay=0.0)
    assert attempts.failed(NOT_SENT, now=0.0) == Retry(node=2, delay=0.0)
    assert not attempts.pinned


def test_revisiting_a_node_backs_off_and_counts_as_a_retry() -> None:
    attempts = begin(RetryPolicy(retries=1, backoff=0.5), nodes=2)
    assert attempts.failed(NOT_SENT, now=0.0) == Retry(node=1, delay=0.0)
    step = attempts.failed(NOT_SENT, now=0.0)
    assert isinstance(step, Retry)
    assert step.node == 0
    assert 0.25 <= step.delay <= 0.5
    assert attempts.failed(NOT_SENT, now=1.0) == GiveUp(node=0, indeterminate=False)


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    policy = RetryPolicy(backoff=0.1, max_backoff=1.0)
    rng = random.Random(1)
    for retry, ceiling in enumerate([0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0]):
        delays = {policy.delay(retry, rng) for _ in range(50)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1  # jittered, not fixed


def test_a_pinned_write_gives_up_as_indeterminate_after_its_retries() -> None:
    attempts = begin(RetryPolicy(retries=5), first=2)
    steps = [attempts.failed(UNKNOWN, now=0.0) for _ in range(6)]
    assert all(isinstance(s, Retry) and s.node == 2 for s in steps[:5])
    assert steps[5] == GiveUp(node=2, indeterminate=True)


def test_an_unsent_write_gives_up_as_determinate_after_its_retries() -> None:
    attempts = begin(RetryPolicy(retries=0), nodes=1)
    assert attempts.failed(NOT_SENT, now=0.0) == GiveUp(node=0, indeterminate=False)


def test_no_retry_starts_past_the_deadline() -> None:
    attempts = begin(RetryPolicy(retries=100, deadline=1.0, backoff=0.2, max_backoff=0.2))
    attempts.failed(UNKNOWN, now=0.0)
    assert isinstance(attempts.failed(UNKNOWN, now=0.5), Retry)
    assert attempts.failed(UNKNOWN, now=0.95) == GiveUp(node=0, indeterminate=True)


def test_an_attempt_timeout_is_cut_at_the_deadline() -> None:
    attempts = begin(RetryPolicy(deadline=3.0))
    assert attempts.timeout(5.0, now=0.0) == 3.0
    assert attempts.timeout(5.0, now=2.5) == 0.5
    assert attempts.timeout(1.0, now=0.5) == 1.0
    assert attempts.timeout(1.0, now=9.0) > 0


@pytest.mark.parametrize(
    "options",
    [{"retries": -1}, {"retries": 1.5}, {"deadline": 0}, {"backoff": -0.1}, {"max_backoff": "1"}],
)
def test_bad_settings_are_refused(options: dict[str, object]) -> None:
    with pytest.raises(InvalidArgumentError):
        RetryPolicy(**options)  # type: ignore[arg-type]


def test_an_out_of_range_first_node_is_refused() -> None:
    with pytest.raises(InvalidArgumentError):
        begin(RetryPolicy(), nodes=2, first=2)

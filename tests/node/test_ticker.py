"""Ticker: a periodic callback on the loop's timers, without a task."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from dcounter_node._ticker import Ticker
from dcounter_node.testing import wait_until

if TYPE_CHECKING:
    import pytest


async def test_ticks_repeat_until_stopped() -> None:
    ticks: list[float] = []
    loop = asyncio.get_running_loop()
    ticker = Ticker(loop, 0.01, lambda: ticks.append(loop.time()))
    await wait_until(lambda: len(ticks) >= 3, what="three ticks")
    ticker.stop()
    stopped_at = len(ticks)
    # A tick due right now would run in the loop's next turns: give it several.
    for _ in range(5):
        await asyncio.sleep(0)
    assert (ticker.running, len(ticks)) == (False, stopped_at)
    assert ticks == sorted(ticks)


async def test_an_action_that_raises_is_logged_and_ticks_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = 0

    def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("boom")

    ticker = Ticker(asyncio.get_running_loop(), 0.01, flaky, what="the test action")
    try:
        await wait_until(lambda: calls >= 2, what="a tick after the failing one")
    finally:
        ticker.stop()
    assert "error in the test action" in caplog.text


async def test_an_action_may_stop_its_own_ticker() -> None:
    calls = 0

    def once() -> None:
        nonlocal calls
        calls += 1
        ticker.stop()

    ticker = Ticker(asyncio.get_running_loop(), 0.001, once)
    await wait_until(lambda: calls == 1, what="the first tick")
    for _ in range(5):
        await asyncio.sleep(0.002)
    assert (calls, ticker.running) == (1, False)


def manual_ticker(interval: float) -> tuple[Ticker, list[float], asyncio.AbstractEventLoop]:
    """A ticker on a fresh (not running) loop whose timers the test inspects directly."""
    loop = asyncio.new_event_loop()
    ticks: list[float] = []
    return (
        Ticker(loop, interval, lambda: ticks.append(loop.time()), first_delay=interval),
        ticks,
        loop,
    )


def due(loop: asyncio.AbstractEventLoop) -> list[float]:
    """When the loop's live timers are due (cancelled ones never wake it)."""
    scheduled: list[asyncio.TimerHandle] = loop._scheduled  # type: ignore[attr-defined]
    return sorted(handle.when() for handle in scheduled if not handle.cancelled())


def test_a_skipped_tick_leaves_the_following_one_on_schedule() -> None:
    ticker, _, loop = manual_ticker(10.0)
    try:
        (first,) = due(loop)
        ticker.skip_next()
        assert due(loop) == [first + 10.0]
        ticker.skip_next()  # the skipped tick's time has not come: nothing more to skip
        assert due(loop) == [first + 10.0]
    finally:
        ticker.stop()
        loop.close()


def test_an_unskipped_tick_is_due_again_at_its_own_time() -> None:
    ticker, _, loop = manual_ticker(10.0)
    try:
        (first,) = due(loop)
        ticker.skip_next()
        ticker.unskip()
        assert due(loop) == [first]
        ticker.unskip()  # nothing skipped any more
        assert due(loop) == [first]
    finally:
        ticker.stop()
        loop.close()


def test_a_stopped_ticker_cannot_be_skipped_back_to_life() -> None:
    ticker, _, loop = manual_ticker(10.0)
    try:
        ticker.skip_next()
        ticker.stop()
        ticker.unskip()
        ticker.skip_next()
        assert (ticker.running, due(loop)) == (False, [])
    finally:
        loop.close()


def test_an_action_may_skip_the_tick_after_its_own_and_unskip_it() -> None:
    loop = asyncio.new_event_loop()
    try:
        ticker = Ticker(loop, 10.0, lambda: ticker.skip_next(), first_delay=10.0)
        (first,) = due(loop)
        (tick,) = loop._scheduled  # type: ignore[attr-defined]
        tick._run()  # the first tick, run by hand: its action asks to skip the next one
        # One live timer, for the tick after the spared one (no stray second timer).
        assert [when for when in due(loop) if when > first] == [first + 20.0]
        ticker.unskip()  # its time has not come: the spared tick is due again
        assert [when for when in due(loop) if when > first] == [first + 10.0]
        ticker.stop()
    finally:
        loop.close()

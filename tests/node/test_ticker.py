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

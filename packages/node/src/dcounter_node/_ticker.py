"""A periodic callback on the event loop's timer heap, without a task.

An idle node is woken by little but its timers, and a ``while True: await asyncio.sleep()``
task costs two turns of the loop per tick (the timer resolves a future, the task runs on
the next turn); a callback scheduled with ``call_at`` runs in the turn that wakes it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable

__all__ = ["Ticker"]

logger = logging.getLogger(__name__)


class Ticker:
    """Calls ``action`` every ``interval`` seconds from ``first_delay`` on, until stopped.

    Ticks keep to their schedule (no drift from the time each action takes); when the loop
    stalled past a tick, the missed ticks are skipped, not run back to back. An exception
    in ``action`` is logged and the ticks go on. A caller that knows the next tick would
    do nothing can :meth:`skip_next` it (sparing the process a wake-up) and :meth:`unskip`
    it should that change before its time.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        interval: float,
        action: Callable[[], None],
        *,
        first_delay: float = 0.0,
        rephase: Callable[[], float] | None = None,
        what: str = "a periodic action",
    ) -> None:
        self._loop = loop
        self._interval = interval
        self._action = action
        self._what = what
        # After a stall: the delay to the next tick (a new phase); None keeps the interval.
        self._rephase = rephase
        self._next_at = loop.time() + first_delay
        self._handle: asyncio.TimerHandle | None = loop.call_at(self._next_at, self._tick)
        #: When the tick skipped by skip_next() was due; None when none is skipped.
        self._skipped: float | None = None
        #: While the action runs: whether it asked to skip the tick after this one.
        self._ticking = False
        self._skip_after = False

    @property
    def running(self) -> bool:
        """False once stopped."""
        return self._handle is not None

    def stop(self) -> None:
        """Cancel the next tick (idempotent)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def skip_next(self) -> None:
        """Skip the next tick due (a no-op when that one is skipped already)."""
        if self._handle is None:
            return
        if self._ticking:  # the action asks: _tick skips once it has planned the next one
            self._skip_after = True
            return
        skipped = self._skipped
        if skipped is not None and skipped > self._loop.time():
            return
        self._skipped = self._next_at
        self._next_at += self._interval
        self._reschedule()

    def unskip(self) -> None:
        """Bring back the tick skipped last, if its time has not come yet."""
        self._skip_after = False
        skipped, self._skipped = self._skipped, None
        if skipped is None or self._handle is None or skipped <= self._loop.time():
            return
        self._next_at = skipped
        self._reschedule()

    def _reschedule(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = self._loop.call_at(self._next_at, self._tick)

    def _tick(self) -> None:
        self._skipped = None
        self._ticking = True
        try:
            self._action()
        except Exception:
            logger.exception("error in %s", self._what)
        finally:
            self._ticking = False
        if self._handle is None:  # the action stopped us
            return
        interval = self._interval
        next_at = self._next_at + interval
        now = self._loop.time()
        if next_at < now:  # fell behind (a stalled loop): skip the missed ticks
            next_at = now + (interval if self._rephase is None else self._rephase())
        if self._skip_after:  # skip_next() from the action: the next tick is spared
            self._skip_after = False
            self._skipped = next_at
            next_at += interval
        self._next_at = next_at
        self._handle = self._loop.call_at(next_at, self._tick)

"""When a node's periodic gossip runs: its sync and full-sync rounds, and their pacing.

Both are :class:`~dcounter_node._ticker.Ticker` callbacks on the loop's timer heap, each
started at a random phase (nodes started together do not gossip in lockstep; after a stall,
a new phase keeps nodes stalled together from staying in lockstep). What a round sends is the
node's business (the callbacks); this module decides when one runs, because an idle node's
CPU is mostly its wake-ups:

* a **sync round** is spared when both cores (the default counter's and the named counters')
  say their pull this round would be idle (a peer just pulled us with our own digest), and
  due again as soon as either is out of agreement or a local write happens;
* **full-sync rounds** stop while nothing diverged and start again (at a new random phase)
  once something did.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol

from dcounter_node._ticker import Ticker

if TYPE_CHECKING:
    import random
    from collections.abc import Callable

__all__ = ["GossipRounds", "IdleRounds"]


class IdleRounds(Protocol):
    """What pacing asks of a gossip core (the default counter's or the named counters')."""

    @property
    def idle_round_due(self) -> bool: ...

    def take_idle_round(self) -> bool: ...


class GossipRounds:
    """The sync and full-sync timers of one running node."""

    def __init__(
        self,
        *,
        sync_interval: float,
        full_sync_interval: float,
        rng: random.Random,
        sync_round: Callable[[], None],
        full_sync_round: Callable[[], None],
        full_sync_due: Callable[[], bool],
    ) -> None:
        self._sync_interval = sync_interval
        self._full_sync_interval = full_sync_interval
        self._rng = rng
        self._sync_round = sync_round
        self._full_sync_round = full_sync_round
        self._full_sync_due = full_sync_due
        self._sync: Ticker | None = None
        #: None while no full-sync round is due (nothing diverged), or once stopped.
        self._full_sync: Ticker | None = None
        self._running = False

    @property
    def full_syncs_scheduled(self) -> bool:
        """Whether full-sync rounds are on the timer heap (False while nothing diverged)."""
        return self._full_sync is not None

    def start(self) -> None:
        self._running = True
        self._sync = self._every(self._sync_interval, self._sync_round)
        self._full_sync = self._every(self._full_sync_interval, self._full_sync_ran)

    def stop(self) -> None:
        self._running = False
        for ticker in (self._sync, self._full_sync):
            if ticker is not None:
                ticker.stop()
        self._sync = self._full_sync = None

    def woken(self) -> None:
        """A local change ends any agreement: a sync round skipped for it is due again,
        and full syncs run again."""
        if self._sync is not None:
            self._sync.unskip()
        self._resume_full_sync()

    def pace(self, default: IdleRounds, named: IdleRounds, *, in_agreement: bool) -> None:
        """After a message was handled: spare the next sync round if both cores would pull
        for nothing, bring it back if the agreement that made it idle ended."""
        self._resume_full_sync()
        ticker = self._sync
        if ticker is None:
            return
        # Both cores must agree to spare it: the round pulls for each. Their pulls arrive
        # one after the other (often from different peers), so neither is taken before
        # both are due.
        if default.idle_round_due and named.idle_round_due:
            default.take_idle_round()
            named.take_idle_round()
            ticker.skip_next()
        elif not in_agreement:
            ticker.unskip()

    def round_ended(self, default: IdleRounds, named: IdleRounds, *, in_agreement: bool) -> None:
        """After a sync round: as :meth:`pace`, and cores out of step are brought in step."""
        if self._sync is not None and (default.idle_round_due != named.idle_round_due):
            # Out of step (one core would rest while the other pulls, and the other way
            # round the next time: a wake-up every round). The resting one pulls too: its
            # pull shares the other's write, and both rest together from then on.
            self._resume_full_sync()
            default.take_idle_round()
            named.take_idle_round()
            return
        self.pace(default, named, in_agreement=in_agreement)

    # -- internals ------------------------------------------------------------------------

    def _full_sync_ran(self) -> None:
        self._full_sync_round()
        if not self._full_sync_due() and self._full_sync is not None:
            # Nothing diverged: no wake-up for full syncs until something does.
            self._full_sync.stop()
            self._full_sync = None

    def _resume_full_sync(self) -> None:
        """Full-sync rounds again (at a random phase, as at start) once something diverged."""
        if self._running and self._full_sync is None and self._full_sync_due():
            self._full_sync = self._every(self._full_sync_interval, self._full_sync_ran)

    def _every(self, interval: float, action: Callable[[], None]) -> Ticker:
        """Run ``action`` every ``interval`` seconds, starting at a random phase."""
        rng = self._rng
        return Ticker(
            asyncio.get_running_loop(),
            interval,
            action,
            first_delay=rng.uniform(0.0, interval),
            rephase=lambda: rng.uniform(0.0, interval),
            what="periodic gossip",
        )

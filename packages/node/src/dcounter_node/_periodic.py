"""A periodic action at a random phase, for the node's gossip timers."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import random
    from collections.abc import Callable

__all__ = ["every"]

logger = logging.getLogger("dcounter_node._node")


async def every(interval: float, action: Callable[[], None], rng: random.Random) -> None:
    """Run ``action`` every ``interval`` seconds, starting at a random phase, forever.

    An exception in ``action`` is logged and the next round runs as planned.
    """
    loop = asyncio.get_running_loop()
    # A random phase keeps nodes started together from gossiping in lockstep.
    next_at = loop.time() + rng.uniform(0.0, interval)
    while True:
        await asyncio.sleep(max(0.0, next_at - loop.time()))
        try:
            action()
        except Exception:
            logger.exception("error in periodic gossip")
        next_at += interval
        now = loop.time()
        if next_at < now:  # fell behind (a stalled loop): skip the missed rounds, and take
            # a new random phase: nodes stalled together must not stay in lockstep
            next_at = now + rng.uniform(0.0, interval)

"""Received messages on their way to the node: routed, handled at once or queued, bounded.

The counterpart of :mod:`dcounter_node._outbound`. The transport calls :class:`Inbound`
for every frame; it sends membership and pruning frames to their services, handles a
counter message at once while nothing is queued (and a burst budget allows), and otherwise
queues it for one worker task. The queue is bounded: overload is dropped, counted and
logged, never buffered without end. What a message means is the node's business (the
``handle`` callback); this module only decides when and where it goes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from dcounter_node._burst import BurstBudget
from dcounter_node._membership_wire import is_membership
from dcounter_node._pruning_wire import is_pruning

if TYPE_CHECKING:
    from collections.abc import Callable

    from dcounter_node._ratelimit import RateLimitedLog
    from dcounter_node._stats import NodeStats
    from dcounter_protocol._transport import Handler

__all__ = ["Inbound"]

# The node's log lines keep the logger name they had before this module was split out.
logger = logging.getLogger("dcounter_node._node")

#: Inbound messages handled at once per window; more go through the bounded queue.
_HANDLE_NOW_BURST = 16
_HANDLE_NOW_WINDOW = 0.01


class Inbound:
    """The path of one node's received messages, from the transport to ``handle``.

    ``handle(sender, payload)`` is called for each counter message, in arrival order (an
    exception it raises is logged, never stops the path). ``is_open()`` tells whether the
    node takes messages at all (starting or running); others are dropped.
    """

    def __init__(
        self,
        handle: Callable[[str, bytes], None],
        is_open: Callable[[], bool],
        stats: NodeStats,
        log: RateLimitedLog,
        *,
        queue_size: int,
    ) -> None:
        self._handle = handle
        self._is_open = is_open
        self._stats = stats
        self._log = log
        self._queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(maxsize=queue_size)
        #: Inbound messages handled at once, outside the worker (see on_frame).
        self._handle_now = BurstBudget(_HANDLE_NOW_BURST, _HANDLE_NOW_WINDOW)
        #: Takes membership frames (issue 14) before the counter's gossip would see them.
        self.membership_handler: Handler | None = None
        #: Takes pruning frames (issue 14) likewise.
        self.pruning_handler: Handler | None = None

    async def on_frame(self, sender: str, payload: bytes) -> None:
        """Transport handler: only queue the message, never block the transport."""
        if self.on_frame_now(sender, payload):
            return
        membership = self.membership_handler
        if membership is not None and is_membership(payload):
            await membership(sender, payload)
            return
        if is_pruning(payload):  # never a counter message, even with no one to take it
            pruning = self.pruning_handler
            if pruning is not None:
                await pruning(sender, payload)
            return
        try:
            self._queue.put_nowait((sender, payload))
        except asyncio.QueueFull:
            self._stats.record_inbound_drop()
            self._log.warning("inbound", "inbound queue full: dropping messages (from %s)", sender)

    def on_frame_now(self, sender: str, payload: bytes) -> bool:
        """What can be done with a message at once (True: done), also the TCP transport's
        synchronous fast path; False leaves it to the queue (or the membership handler)."""
        if not self._is_open():
            return True  # dropped
        if is_pruning(payload) or (self.membership_handler is not None and is_membership(payload)):
            return False  # theirs: see on_frame
        if not self._queue.empty() or not self._handle_now.take(time.monotonic()):
            return False
        # Nothing is waiting (the worker takes a message off the queue only to handle it at
        # once), so handling this one now keeps the order and saves waking the worker (and,
        # from a TCP stream, the connection's task): a loop pass each, a good part of an idle
        # node's CPU. Bursts beyond the budget take the bounded queue, which sheds overload.
        self._handle_logged(sender, payload)
        return True

    async def process(self) -> None:
        """The worker: handle queued messages in order, until cancelled."""
        while True:
            sender, payload = await self._queue.get()
            self._handle_logged(sender, payload)

    def clear(self) -> None:
        """Forget the messages still queued (the node is closing)."""
        while not self._queue.empty():
            self._queue.get_nowait()

    def _handle_logged(self, sender: str, payload: bytes) -> None:
        try:
            self._handle(sender, payload)
        except Exception:
            # A bug handling one message must not stop the node from gossiping.
            logger.exception("error handling a message from %s", sender)

"""Sending the gossip core's messages: without waiting, bounded, counts durable first."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Final

from dcounter_protocol import MessageType, NamedKind, TCPTransport, TransportError

if TYPE_CHECKING:
    from collections.abc import Callable

    from dcounter_node._gossip_types import Outgoing
    from dcounter_node._ratelimit import RateLimitedLog
    from dcounter_node._stats import NodeStats
    from dcounter_node._storage import StateStore
    from dcounter_protocol._transport import Transport

__all__ = ["MAX_SENDS_PER_PEER", "Outbound"]

logger = logging.getLogger(__name__)

#: Sends in flight to one address; beyond this a dead or slow peer's sends are dropped so it
#: cannot use up the node's whole outbound budget.
MAX_SENDS_PER_PEER = 8
#: Messages that may carry this node's own counts: with a store they leave once committed.
_PUSHES: Final = frozenset((MessageType.PUSH, NamedKind.NAMED_PUSH))


class Outbound:
    """One task per send, at most ``limit`` in flight in total and 8 per address.

    Every send runs under the transport's timeouts, so a dead peer never delays the others;
    beyond the bounds a send is dropped and counted. With a store, a push leaves only once
    the store committed (see :meth:`_deliver`). A message that needs no commit and that the
    transport can queue at once (a TCP peer with an open stream) is queued without a task:
    most idle gossip, where a task per message was a large part of an idle node's CPU.
    """

    def __init__(
        self,
        transport: Transport,
        stats: NodeStats,
        log: RateLimitedLog,
        *,
        limit: int,
        store: StateStore | None,
    ) -> None:
        self._transport = transport
        self._stats = stats
        self._log = log
        self._limit = limit
        self._store = store
        self._tasks: set[asyncio.Task[None]] = set()
        self._per_peer: dict[str, int] = {}
        self._send_nowait: Callable[[str, bytes], bool] | None = (
            transport.send_nowait if isinstance(transport, TCPTransport) else None
        )

    def __len__(self) -> int:
        """Sends started and not finished yet."""
        return len(self._tasks)

    def send(self, send: Outgoing) -> None:
        """Start sending ``send`` (or drop and count it when too many are in flight)."""
        address = send.address
        if self._send_nowait is not None and (send.kind not in _PUSHES or self._store is None):
            try:
                queued = self._send_nowait(address, send.data)
            except TransportError as exc:
                self._failed(address, exc)
                return
            if queued:
                self._stats.record_sent(send.kind, len(send.data), address)
                return
        in_flight = self._per_peer.get(address, 0)
        if len(self._tasks) >= self._limit or in_flight >= MAX_SENDS_PER_PEER:
            self._stats.record_outbound_drop()
            self._log.warning(
                f"outbound:{address}", "too many sends in flight: dropping one to %s", address
            )
            return
        task = asyncio.ensure_future(self._deliver(address, send.data, send.kind))
        self._tasks.add(task)
        self._per_peer[address] = in_flight + 1
        task.add_done_callback(lambda done: self._sent(done, address))

    async def close(self, grace: float) -> None:
        """Give the sends in flight ``grace`` seconds, then cancel and await the rest."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace)
        tasks = set(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _sent(self, task: asyncio.Task[None], address: str) -> None:
        self._tasks.discard(task)
        left = self._per_peer.get(address, 1) - 1
        if left > 0:
            self._per_peer[address] = left
        else:
            self._per_peer.pop(address, None)

    async def _deliver(
        self, address: str, data: bytes, message_type: MessageType | NamedKind
    ) -> None:
        try:
            if message_type in _PUSHES and self._store is not None:
                # A push goes out only once every count in it is durable here. Otherwise a
                # crash could bring this replica back below what its peers already hold,
                # and max-merge would swallow its next acknowledged writes. Everything in
                # ``data`` was staged before it was encoded, so this commit covers it.
                await self._store.commit()
            await self._transport.send(address, data)
        except Exception as exc:
            self._failed(address, exc)
        else:
            self._stats.record_sent(message_type, len(data), address)

    def _failed(self, address: str, exc: Exception) -> None:
        self._stats.record_send_failure()
        name = type(exc).__name__
        if isinstance(exc, TransportError):
            logger.debug("send to %s failed: %s: %s", address, name, exc)
            self._log.warning(f"send:{address}", "cannot reach %s: %s: %s", address, name, exc)
        else:
            self._log.warning(f"send:{address}", "send to %s failed: %s: %s", address, name, exc)

"""Named-counter gossip at the node's edge: who speaks it, and what handling it did.

:class:`NamedLink` drives :class:`~dcounter_node._named_gossip.NamedGossip` for a
:class:`~dcounter_node.Node`: it decides per peer whether named messages may go there (over
TCP, only on a stream whose listener confirmed :data:`~dcounter_protocol.CAP_NAMED`, and only
when this node offers it too; an in-process network always), opens streams to peers that
have none yet, and counts and logs (rate limited) what the core refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from dcounter_node._named_gossip import NamedGossip
from dcounter_protocol import CAP_NAMED, NamedKind, TCPTransport, TransportError

if TYPE_CHECKING:
    import random
    from collections.abc import Sequence

    from dcounter_node._config import NodeConfig
    from dcounter_node._counters import Counters
    from dcounter_node._gossip_types import Outgoing
    from dcounter_node._peers import PeerManager
    from dcounter_node._pruning import Tombstones
    from dcounter_node._ratelimit import RateLimitedLog
    from dcounter_node._refusals import Refusals
    from dcounter_node._stats import NodeStats
    from dcounter_protocol._transport import Transport

__all__ = ["NamedLink"]

logger = logging.getLogger(__name__)


class NamedLink:
    """One node's named-counter gossip: capability checks, stream opening, accounting."""

    def __init__(
        self,
        transport: Transport,
        peers: PeerManager,
        stats: NodeStats,
        log: RateLimitedLog,
        refusals: Refusals,
    ) -> None:
        self._transport = transport
        self._peers = peers
        self._stats = stats
        self._log = log
        self._refusals = refusals
        self._gossip: NamedGossip | None = None
        self._opening: dict[str, asyncio.Task[None]] = {}
        self._tcp = transport if isinstance(transport, TCPTransport) else None
        offered = 0 if self._tcp is None else self._tcp.options.capabilities or 0
        #: Whether this node speaks named gossip at all (its transport offers CAP_NAMED).
        self.enabled = self._tcp is None or bool(offered & CAP_NAMED)

    @property
    def gossip(self) -> NamedGossip | None:
        """The core, once the node started."""
        return self._gossip

    def start(
        self,
        counters: Counters,
        replica_id: str,
        config: NodeConfig,
        rng: random.Random,
        tombstones: Tombstones | None = None,
    ) -> None:
        """Build the core over the node's bound counters and take their local changes."""
        self._gossip = NamedGossip(
            counters,
            replica_id,
            config,
            self._peers,
            rng,
            named_to=self.named_to,
            tombstones=tombstones,
        )
        counters.push = self._gossip.local

    def rebased(self, replica_id: str, names: set[str]) -> None:
        """Pruning moved the counters to ``replica_id`` and changed ``names``."""
        if self._gossip is not None:
            self._gossip.rebased(replica_id, names)

    def named_to(self, address: str) -> bool:
        """Whether named messages may be sent to ``address`` now."""
        if not self.enabled:
            return False
        tcp = self._tcp
        if tcp is None:
            return True
        capabilities = tcp.capabilities(address)
        if capabilities is None:
            self._open(tcp, address)
            return False
        return bool(capabilities & CAP_NAMED)

    @property
    def has_pending(self) -> bool:
        """True while named deltas wait for the next flush."""
        return self._gossip is not None and self._gossip.has_pending

    def take_idle_round(self) -> bool:
        """Whether the next sync round has nothing named to do (see NamedGossip's)."""
        if self._gossip is None or not self.enabled:
            return True
        return self._gossip.take_idle_round()

    @property
    def idle_round_due(self) -> bool:
        """What :meth:`take_idle_round` would answer, without taking the round."""
        return self._gossip is None or not self.enabled or self._gossip.idle_round_due

    def sync_tick(self, prefer: Sequence[str] = ()) -> list[Outgoing]:
        """A sync round's root-digest pull (to the first of ``prefer`` that can take it)."""
        if self._gossip is None or not self.enabled:
            return []
        return self._gossip.sync_tick(prefer)

    def flush(self) -> list[Outgoing]:
        """The pending named deltas' pushes."""
        return [] if self._gossip is None else self._gossip.flush()

    def handle(self, sender: str, payload: bytes) -> list[Outgoing]:
        """Handle one named payload; count and log what was refused; the replies."""
        if self._gossip is None:  # pragma: no cover - the worker starts after start()
            return []
        received = self._gossip.receive(sender, payload)
        stats = self._stats
        message = received.message
        if received.error is not None:
            stats.record_decode_error()
            exc = received.error
            self._log.warning(
                "named-decode",
                "dropping a named-counter message from %s: %s: %s",
                sender,
                type(exc).__name__,
                exc,
            )
        if message is None:
            return []
        stats.record_received(message.kind, len(payload), sender)
        if message.kind is NamedKind.NAMED_PUSH and received.rejected is None:
            stats.record_merge(changed=received.learned > 0)
        forged = received.forged
        self._refusals.report(
            sender,
            what="named push",
            rejected=received.rejected,
            forged=f"in {forged} named counters" if forged else None,
            unknown_sender=received.unknown_sender,
        )
        failure = self._gossip.take_encode_failure()
        if failure is not None:
            self._log.warning("named-encode", "cannot encode a named message: %s", failure)
        return received.sends

    def _open(self, tcp: TCPTransport, address: str) -> None:
        """Open a stream to ``address`` in the background (once at a time)."""
        if address in self._opening or tcp.options.wire != "auto":
            return

        async def open_stream() -> None:
            with contextlib.suppress(TransportError, TimeoutError):
                await tcp.open_stream(address)

        task = asyncio.ensure_future(open_stream())
        self._opening[address] = task
        task.add_done_callback(lambda _: self._opening.pop(address, None))

    async def close(self) -> None:
        """Cancel the streams still being opened."""
        tasks = list(self._opening.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

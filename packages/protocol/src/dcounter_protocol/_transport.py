"""The transport seam: what the node needs from a network, and nothing more.

Two implementations exist: :class:`~dcounter_protocol._tcp.TCPTransport` (the reference's
wire) and :class:`~dcounter_protocol._memory.MemoryTransport` (in-process, with fault
injection). Both pass one conformance suite.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeAlias, runtime_checkable

__all__ = ["HandleNow", "Handler", "Transport"]

#: Called once per inbound message with (the sender's address as it framed it, the payload).
#: Exceptions it raises are logged by the transport and never reach the sender.
Handler: TypeAlias = Callable[[str, bytes], Awaitable[None]]

#: Optional synchronous fast path beside a :data:`Handler` (a TCP transport's streams call
#: it): called with (sender, payload) as a message is decoded, when nothing received before
#: it on its connection is still waiting; True means handled (the handler is not called for
#: it), False hands it to the handler as usual. It saves the loop pass that waking the
#: connection's task costs. Exceptions it raises are logged and the message counts as handled.
HandleNow: TypeAlias = Callable[[str, bytes], bool]


@runtime_checkable
class Transport(Protocol):
    """Message-oriented, best-effort delivery of byte payloads between addresses."""

    @property
    def address(self) -> str:
        """This endpoint's address, ``"host:port"`` for TCP (the real port once listening)."""
        ...

    async def listen(self, handler: Handler) -> None:
        """Start serving: every message received from now on is passed to ``handler``."""
        ...

    async def send(self, address: str, data: bytes) -> None:
        """Deliver one message to ``address``; raises a :class:`TransportError` subclass."""
        ...

    async def close(self) -> None:
        """Stop serving and release everything; idempotent, leaves no task or socket behind."""
        ...

"""A gossip proxy: receive each seed frame, report it, and pass its bytes on unchanged.

Forwarding is byte-for-byte, so the frame still names its original sender. A node answers
a digest pull by dialing the address *inside the frame*, not the TCP peer: replies go
straight back to the sender and never cross the proxy. To watch both directions between
two nodes, put one proxy in front of each and point each node's peer entry at the other's
proxy. Frames whose framing is broken are reported and not forwarded (there is nothing
meaningful to deliver); frames whose message does not decode are forwarded anyway, so the
node behind the proxy judges them exactly as it would without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses

from dcounter_protocol import DEFAULT_MAX_MESSAGE_SIZE
from dcounter_tools._address import split_address
from dcounter_tools.frames.listen import FrameCallback, FrameEvent, FrameListener

__all__ = ["FrameProxy"]


class FrameProxy(FrameListener):
    """A :class:`FrameListener` that also forwards every well-framed frame to ``target``."""

    def __init__(
        self,
        target: str,
        on_frame: FrameCallback,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        read_timeout: float = 10.0,
        connect_timeout: float = 5.0,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ) -> None:
        super().__init__(
            on_frame,
            host=host,
            port=port,
            read_timeout=read_timeout,
            max_message_size=max_message_size,
        )
        self._target = target
        self._target_host, self._target_port = split_address(target)
        self._connect_timeout = connect_timeout

    @property
    def target(self) -> str:
        """The ``host:port`` frames are forwarded to."""
        return self._target

    async def _forward(self, event: FrameEvent, raw: bytes) -> FrameEvent:
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, writer = await asyncio.open_connection(self._target_host, self._target_port)
            try:
                writer.write(raw)
                async with asyncio.timeout(self._connect_timeout):
                    await writer.drain()
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
        except (OSError, TimeoutError) as exc:
            reason = str(exc) or type(exc).__name__
            return dataclasses.replace(
                event, forwarded_to=self._target, forward_error=f"{type(exc).__name__}: {reason}"
            )
        return dataclasses.replace(event, forwarded_to=self._target)

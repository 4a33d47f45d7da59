"""A passive gossip endpoint: accept seed frames, report each one, never reply.

Each connection carries one frame and ends with the sender closing it (the seed's framing).
Bytes go through :class:`dcounter_protocol.FrameDecoder` as they arrive, so a bad header is
reported at once, with its byte offset, and the connection dropped; the listener carries on
with the next connection.

The listener speaks only the seed's framing. A connection that opens with the stream mode's
marker and magic (a :class:`dcounter_protocol.TCPTransport` offering a stream) is closed
without the confirmation and without an event: the sender then resends with the seed's
framing, which is what gets reported.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from dcounter_protocol import (
    DEFAULT_MAX_MESSAGE_SIZE,
    STREAM_MAGIC,
    STREAM_MARKER,
    FrameDecoder,
    FrameError,
)
from dcounter_tools._address import join_address
from dcounter_tools.frames.inspection import Inspection, Problem, frame_problem, inspect_frame

__all__ = ["FrameCallback", "FrameEvent", "FrameListener"]

_log = logging.getLogger(__name__)

_READ_CHUNK = 64 * 1024
#: The first bytes of a stream-mode hello: never the start of a valid seed frame.
_STREAM_PROBE = bytes((STREAM_MARKER,)) + STREAM_MAGIC


@dataclass(frozen=True, slots=True)
class FrameEvent:
    """One connection's worth of traffic: the frame it carried, or what was wrong with it."""

    received_at: float
    #: The TCP peer ("host:port" of the connecting socket), not the address in the frame.
    peer: str
    size: int
    inspection: Inspection | None
    #: A framing problem (header, size, truncation, timeout); the frame was not forwarded.
    problem: Problem | None = None
    forwarded_to: str | None = None
    forward_error: str | None = None

    @property
    def ok(self) -> bool:
        """True when a frame arrived whole, its message decoded and any forward worked."""
        return (
            self.problem is None
            and self.forward_error is None
            and self.inspection is not None
            and self.inspection.ok
        )


FrameCallback = Callable[[FrameEvent], None]


def _peer_name(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return join_address(str(peer[0]), int(peer[1]))
    return "?"


class FrameListener:
    """Serve ``host:port`` and call ``on_frame`` with a :class:`FrameEvent` per connection."""

    def __init__(
        self,
        on_frame: FrameCallback,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        read_timeout: float = 10.0,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ) -> None:
        self._on_frame = on_frame
        self._host = host
        self._port = port
        self._read_timeout = read_timeout
        self._max_message_size = max_message_size
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._address: str | None = None
        self._closing = False

    @property
    def address(self) -> str:
        """The bound ``host:port`` (the real port when 0 was asked for); after start()."""
        if self._address is None:
            raise RuntimeError("the listener is not started")
        return self._address

    async def start(self) -> None:
        """Bind and start accepting connections."""
        self._server = await asyncio.start_server(self._serve, self._host, self._port)
        sockname = self._server.sockets[0].getsockname()
        self._address = join_address(str(sockname[0]), int(sockname[1]))

    async def close(self) -> None:
        """Stop accepting, drop the connections in progress; idempotent."""
        server, self._server = self._server, None
        self._closing = True
        if server is not None:
            server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def __aenter__(self) -> FrameListener:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        peer = _peer_name(writer)
        try:
            result = await self._read_event(reader, peer)
            writer.close()
            if result is None:
                _log.debug("%s offered a stream; closed unconfirmed (seed framing only)", peer)
                return
            event, raw = result
            if event.problem is None:
                event = await self._forward(event, raw)
            self._emit(event)
        except (OSError, asyncio.IncompleteReadError) as exc:
            _log.debug("connection failed: %s", exc)
        except asyncio.CancelledError:
            # close() cancels connections in progress; ending normally keeps asyncio's
            # start_server callback from logging the cancellation as an error (3.11).
            if not self._closing:
                raise
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass
            except asyncio.CancelledError:
                # close() may cancel this task here too, e.g. when the frame just reported
                # was the last one wanted (--count): the same clean end as above.
                if not self._closing:
                    raise
            if task is not None:
                self._connections.discard(task)

    async def _read_event(
        self, reader: asyncio.StreamReader, peer: str
    ) -> tuple[FrameEvent, bytes] | None:
        """The connection's event and frame bytes; None for a stream-mode probe."""
        decoder = FrameDecoder(max_size=self._max_message_size)
        received = bytearray()
        # Until the bytes read can no longer be the start of a stream probe, hold them back
        # from the decoder (which would reject the leading 0x00 at once).
        undecided = True
        try:
            async with asyncio.timeout(self._read_timeout):
                while chunk := await reader.read(_READ_CHUNK):
                    received += chunk
                    if not undecided:
                        decoder.feed(chunk)
                        continue
                    head = bytes(received[: len(_STREAM_PROBE)])
                    if head == _STREAM_PROBE:
                        return None
                    if _STREAM_PROBE.startswith(head):
                        continue
                    undecided = False
                    decoder.feed(bytes(received))
            if undecided:
                decoder.feed(bytes(received))
            decoder.end_of_stream()
        except FrameError as exc:
            return FrameEvent(time.time(), peer, len(received), None, frame_problem(exc)), b""
        except TimeoutError:
            detail = f"no end of frame within {self._read_timeout:g} s ({len(received)} bytes read)"
            problem = Problem("frame", "TimeoutError", detail, len(received))
            return FrameEvent(time.time(), peer, len(received), None, problem), b""
        raw = bytes(received)
        inspection = inspect_frame(raw, max_size=self._max_message_size)
        return FrameEvent(time.time(), peer, len(raw), inspection), raw

    async def _forward(self, event: FrameEvent, raw: bytes) -> FrameEvent:
        """Hook for :class:`FrameProxy`; a plain listener forwards nothing."""
        return event

    def _emit(self, event: FrameEvent) -> None:
        try:
            self._on_frame(event)
        except Exception:
            _log.exception("frame callback failed")

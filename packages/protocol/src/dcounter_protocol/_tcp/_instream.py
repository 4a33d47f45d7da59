"""The listener's side of one stream connection: an asyncio protocol feeding a decoder."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, cast

from dcounter_protocol._errors import FrameError
from dcounter_protocol._stream import STREAM_ACK, STREAM_VERSION_CAPS, StreamDecoder, encode_ack
from dcounter_protocol._tcp._boundary import error_text
from dcounter_protocol._tcp._options import CLOSE_GRACE, PAUSE_FRAMES

if TYPE_CHECKING:
    from collections.abc import Callable

    from dcounter_protocol._tcp._options import TCPOptions

__all__ = ["InboundStream"]


class InboundStream(asyncio.Protocol):
    """The listener's end of a stream: decodes frames for the connection's task to handle."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, options: TCPOptions, first: bytes, started: float
    ) -> None:
        self._loop = loop
        self._decoder = StreamDecoder(max_size=options.max_message_size)
        # A version 2 hello is answered with our capabilities (none: 0).
        self._capabilities = options.capabilities or 0
        self._ack_caps = encode_ack(self._capabilities)
        self._read_timeout = options.read_timeout
        self._idle_limit = options.stream_idle_timeout + options.read_timeout
        self._first = first
        self._started = started
        self.transport: asyncio.Transport | None = None
        self.frames: deque[bytes] = deque()
        #: Takes a decoded frame synchronously when nothing is waiting (True: handled).
        self.handle_now: Callable[[bytes], bool] | None = None
        #: Why the stream was dropped (a violation or timeout: logged as a warning).
        self.failure: str | None = None
        #: Why it ended otherwise (EOF, reset, idle), for a debug line.
        self.ending = "closed by the peer"
        #: No more frames will come.
        self.ended = False
        self.received = 0
        self.reading_paused = False
        self._acked = False
        #: Loop time the hello or the frame in progress began; None between frames.
        self._partial_since: float | None = started
        self._last_activity = started
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._closed: asyncio.Future[None] = loop.create_future()

    @property
    def sender(self) -> str:
        return self._decoder.sender or ""

    @property
    def capabilities(self) -> int:
        """The capability bits both ends offered (0 before the hello or with version 1)."""
        return self._decoder.capabilities & self._capabilities

    @property
    def idle(self) -> bool:
        """Open, past its hello, with no frame in progress."""
        return not self.ended and self._acked and self._partial_since is None

    @property
    def last_activity(self) -> float:
        return self._last_activity

    def close_idle(self, why: str) -> None:
        """End the stream gracefully (FIN): the dialer sees EOF and re-dials when it sends."""
        if self.ended:
            return
        self._end(why)
        if self.transport is not None:
            self.transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)
        self._timer = self._loop.call_at(self._started + self._read_timeout, self._check)
        first, self._first = self._first, b""
        self.data_received(first)

    def data_received(self, data: bytes) -> None:
        if self.ended:
            return
        self.received += len(data)
        decoder = self._decoder
        try:
            frames = decoder.feed(data)
        except FrameError as exc:
            self._fail(error_text(exc))
            return
        now = self._loop.time()
        hello_done = not self._acked and decoder.sender is not None
        if hello_done:
            self._acked = True
            if self.transport is not None:
                caps = decoder.version == STREAM_VERSION_CAPS
                self.transport.write(self._ack_caps if caps else STREAM_ACK)
            self._last_activity = now
        if frames:
            self._last_activity = now
            if self.handle_now is not None and self._task_idle():
                frames = self._handled_now(self.handle_now, frames)
            if frames:
                self.frames.extend(frames)
                self._wake()
        if decoder.sender is not None:
            if not decoder.buffered:
                self._partial_since = None
            elif frames or hello_done or self._partial_since is None:
                self._partial_since = now
        if decoder.error is not None:
            self._fail(error_text(decoder.error))
            return
        if len(self.frames) >= PAUSE_FRAMES and not self.reading_paused:
            self.reading_paused = True
            if self.transport is not None:
                self.transport.pause_reading()

    def eof_received(self) -> bool | None:
        if not self.ended:
            try:
                self._decoder.end_of_stream()
            except FrameError as exc:
                self._fail(error_text(exc))
                return None
            self._end("closed by the peer")
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.ended:
            self._end("closed by the peer" if exc is None else error_text(exc))
        if not self._closed.done():
            self._closed.set_result(None)

    def resume_reading(self) -> None:
        if self.reading_paused:
            self.reading_paused = False
            if self.transport is not None and not self.transport.is_closing():
                self.transport.resume_reading()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    async def wait_frames(self) -> None:
        """Return once frames arrived or the stream ended."""
        waiter = self._loop.create_future()
        self._waiter = waiter
        try:
            await waiter
        finally:
            self._waiter = None

    async def wait_closed(self) -> None:
        """Wait (bounded) for connection_lost, i.e. for the transport to release the socket."""
        if self.transport is not None and not self._closed.done():
            await asyncio.wait({self._closed}, timeout=CLOSE_GRACE)

    def _task_idle(self) -> bool:
        """The connection's task waits for frames, with none handed to it yet: a frame
        handled now cannot overtake an earlier one."""
        waiter = self._waiter
        return waiter is not None and not waiter.done() and not self.frames

    @staticmethod
    def _handled_now(handle_now: Callable[[bytes], bool], frames: list[bytes]) -> list[bytes]:
        """The frames left for the task: from the first that ``handle_now`` declines, on."""
        for index, payload in enumerate(frames):
            if not handle_now(payload):
                return frames[index:]
        return []

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _end(self, why: str) -> None:
        self.ended = True
        self.ending = why
        self._wake()

    def _fail(self, reason: str) -> None:
        if self.ended:
            return
        self.failure = reason
        self._end(reason)
        self.abort()

    def _check(self) -> None:
        """Timer: drop a stalled hello or frame, close an idle stream, else re-arm."""
        self._timer = None
        if self.ended:
            return
        now = self._loop.time()
        if self.reading_paused:
            # Our handler is behind, not the peer: not its timeout.
            deadline = now + self._read_timeout
        elif self._partial_since is not None:
            deadline = self._partial_since + self._read_timeout
            if now >= deadline:
                what = "frame" if self._decoder.sender is not None else "handshake"
                self._fail(f"no complete {what} within {self._read_timeout:g}s")
                return
        else:
            deadline = self._last_activity + self._idle_limit
            if now >= deadline:
                self.close_idle(f"idle for {self._idle_limit:g}s")
                return
        self._timer = self._loop.call_at(deadline, self._check)

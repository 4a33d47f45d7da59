"""The seed's TCP frame, sans-IO: ``[len(addr): 1 byte][addr: 1..255 UTF-8 bytes][payload]``.

One frame per connection; the payload runs to the end of the stream (the sender closes after
writing). :class:`FrameDecoder` is fed bytes as they arrive and rejects a bad frame at the
first byte that proves it bad, and an oversized one before buffering past the limit.
Every :class:`~dcounter_protocol._errors.FrameError` carries the byte offset of the problem.

``max_size`` is the largest *payload*, as in every decoder of this package; the header (at
most :data:`~dcounter_protocol._address.FRAME_OVERHEAD` bytes) comes on top.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from typing import Final, NoReturn

from dcounter_protocol._address import FRAME_OVERHEAD, MAX_ADDRESS_LENGTH, address_bytes
from dcounter_protocol._errors import (
    EncodeError,
    FrameError,
    FrameTooLargeError,
    InvalidAddressError,
    InvalidAddressLengthError,
    InvalidOptionError,
    TruncatedFrameError,
)
from dcounter_protocol._message import DEFAULT_MAX_MESSAGE_SIZE

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "FRAME_OVERHEAD",
    "MAX_ADDRESS_LENGTH",
    "Frame",
    "FrameDecoder",
    "decode_frame",
    "encode_frame",
]

#: The largest whole frame by default: a maximum-size message behind the longest header.
DEFAULT_MAX_FRAME_SIZE: Final = DEFAULT_MAX_MESSAGE_SIZE + FRAME_OVERHEAD


@dataclass(frozen=True, slots=True)
class Frame:
    """One received frame: the sender's claimed listen address and the payload."""

    sender: str
    payload: bytes


def encode_frame(sender: str, payload: bytes, *, max_size: int | None = None) -> bytes:
    """Frame ``payload`` as sent by ``sender``, byte for byte as the reference's ``Send``.

    Raises :class:`EncodeError` for an address that is empty, not UTF-8 or longer than 255
    bytes, an empty payload (every receiver drops such a frame), or a payload above
    ``max_size`` when that is given.
    """
    raw = address_bytes(sender)
    if not payload:
        raise EncodeError("a frame needs a non-empty payload")
    if max_size is not None and len(payload) > max_size:
        raise EncodeError(f"payload of {len(payload)} bytes exceeds {max_size}")
    return b"".join((bytes((len(raw),)), raw, payload))


def decode_frame(data: bytes, *, max_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> Frame:
    """Split one complete frame (everything a connection carried) into sender and payload."""
    decoder = FrameDecoder(max_size=max_size)
    decoder.feed(data)
    return decoder.end_of_stream()


class FrameDecoder:
    """Incremental decoder of the one frame a connection carries.

    Call :meth:`feed` with bytes as they arrive and :meth:`end_of_stream` at EOF. The header
    is validated byte by byte (length byte, then the address as UTF-8), the payload's size
    limit ``max_size`` on every feed; the first error is raised and raised again by any
    later call.
    """

    def __init__(self, *, max_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        """``max_size`` bounds the payload; InvalidOptionError unless it is an int >= 1."""
        if type(max_size) is not int or max_size < 1:  # bool is an int subclass: refused
            raise InvalidOptionError(f"max_size must be an int >= 1, got {max_size!r}")
        self._max_size = max_size
        self._received = 0
        self._address_length = 0  # 0 until the length byte arrived
        self._address = bytearray()
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._payload = bytearray()
        self._sender: str | None = None
        self._error: FrameError | None = None
        self._finished = False

    @property
    def sender(self) -> str | None:
        """The sender's address, once the header is complete."""
        return self._sender

    @property
    def received(self) -> int:
        """Bytes fed so far."""
        return self._received

    @property
    def max_size(self) -> int:
        """The largest payload accepted (the header comes on top)."""
        return self._max_size

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Take the next bytes of the stream; raises a FrameError as soon as it is invalid."""
        self._check_usable()
        view = memoryview(data)
        if self._sender is None:
            view = self._feed_header(view)
        if not view:
            return
        if len(self._payload) + len(view) > self._max_size:
            limit = self._received - len(self._payload) + self._max_size
            self._fail(FrameTooLargeError(f"payload exceeds {self._max_size} bytes", offset=limit))
        self._payload += view
        self._received += len(view)

    def _feed_header(self, view: memoryview) -> memoryview:
        """Consume header bytes from ``view``; returns what is left of it (payload bytes)."""
        if not view:
            return view
        if not self._address_length:
            length = view[0]
            if length == 0:
                self._fail(InvalidAddressLengthError("sender address length is 0", offset=0))
            self._address_length = length
            self._received = 1
            view = view[1:]
        missing = self._address_length - len(self._address)
        part = view[:missing]
        complete = len(part) == missing
        # Bytes of an unfinished character, held by the decoder from earlier feeds.
        pending = len(self._utf8.getstate()[0])
        try:
            self._utf8.decode(part, final=complete)
        except UnicodeDecodeError as exc:
            offset = 1 + len(self._address) - pending + exc.start
            self._fail(InvalidAddressError("sender address is not valid UTF-8", offset=offset))
        self._address += part
        self._received += len(part)
        if complete:
            self._sender = self._address.decode("utf-8")
        return view[missing:]

    def end_of_stream(self) -> Frame:
        """The complete frame, at EOF; raises TruncatedFrameError if the stream ended short."""
        self._check_usable()
        if self._sender is None:
            self._fail(
                TruncatedFrameError("stream ended inside the frame header", offset=self._received)
            )
        if not self._payload:
            self._fail(TruncatedFrameError("frame without payload", offset=self._received))
        self._finished = True
        payload = bytes(self._payload)
        self._payload = bytearray()
        return Frame(self._sender, payload)

    def _check_usable(self) -> None:
        if self._error is not None:
            raise self._error
        if self._finished:
            raise FrameError("the frame was already complete", offset=self._received)

    def _fail(self, error: FrameError) -> NoReturn:
        self._error = error
        raise error

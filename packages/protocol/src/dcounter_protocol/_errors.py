"""The typed errors raised by :mod:`dcounter_protocol`.

One class per cause, so callers (and logs) can tell a hostile peer from a dead one.
"""

from __future__ import annotations

__all__ = [
    "ConnectError",
    "CountOutOfRangeError",
    "DecompressionError",
    "EmptyMessageError",
    "EmptyNodeIdError",
    "EmptyPushError",
    "EmptyStreamFrameError",
    "EncodeError",
    "FrameError",
    "FrameTooLargeError",
    "HandshakeError",
    "InvalidAddressError",
    "InvalidAddressLengthError",
    "InvalidFlagError",
    "InvalidMessageTypeError",
    "InvalidOptionError",
    "MalformedMessageError",
    "MessageError",
    "MessageTooLargeError",
    "ProtocolError",
    "TransportClosedError",
    "TransportError",
    "TransportTimeoutError",
    "TruncatedFrameError",
]


class ProtocolError(Exception):
    """Base class of every error this package raises."""


class InvalidOptionError(ProtocolError, ValueError):
    """A setting (timeout, size limit, address, fault rate) that is out of range or malformed."""


# -- messages ---------------------------------------------------------------------------


class MessageError(ProtocolError):
    """A message envelope that cannot be encoded or decoded."""


class EmptyMessageError(MessageError):
    """No bytes at all, or a flag byte with no body behind it."""


class InvalidFlagError(MessageError):
    """An envelope flag byte other than 0x00 (plain) or 0x80 (zstd)."""


class DecompressionError(MessageError):
    """A body flagged as zstd that does not decompress."""


class MalformedMessageError(MessageError):
    """A body that is not msgpack, or whose fields have the wrong types."""


class InvalidMessageTypeError(MessageError):
    """A message type other than push, digest pull or digest ack."""


class EmptyNodeIdError(MessageError):
    """A message without a sender node id."""


class EmptyPushError(MessageError):
    """A push that carries neither increments nor decrements."""


class MessageTooLargeError(MessageError):
    """A message, compressed or not, above the configured maximum size."""


class CountOutOfRangeError(MessageError):
    """A count outside the wire format's uint64 range."""


class EncodeError(MessageError):
    """A message that is not valid and so is never put on the wire."""


# -- frames -----------------------------------------------------------------------------


class FrameError(ProtocolError):
    """Bytes on a connection that do not form a valid frame."""

    def __init__(self, message: str, *, offset: int | None = None) -> None:
        super().__init__(message if offset is None else f"{message} (at byte {offset})")
        #: Byte offset in the connection's stream where the problem was found, when known.
        self.offset = offset


class InvalidAddressLengthError(FrameError):
    """A sender address length of zero."""


class InvalidAddressError(FrameError):
    """A sender address that is not valid UTF-8, or too long to frame."""


class TruncatedFrameError(FrameError):
    """A connection that ended before its frame was complete."""


class FrameTooLargeError(FrameError):
    """A frame above the configured maximum size."""


class HandshakeError(FrameError):
    """A stream-mode handshake or confirmation with the wrong marker, magic or version."""


class EmptyStreamFrameError(FrameError):
    """A stream-mode frame whose length prefix is 0 (every message has a payload)."""


# -- transport --------------------------------------------------------------------------


class TransportError(ProtocolError):
    """A message that could not be delivered."""


class ConnectError(TransportError):
    """The target refused the connection, was unreachable, or did not resolve."""


class TransportTimeoutError(TransportError):
    """A dial, read or write that did not finish within its timeout."""


class TransportClosedError(TransportError):
    """The transport was used after close()."""

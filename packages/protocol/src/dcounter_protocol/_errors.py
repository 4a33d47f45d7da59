"""The typed errors raised by :mod:`dcounter_protocol`.

One class per cause, so callers (and logs) can tell a hostile peer from a dead one. Every
error is a :class:`ProtocolError`; most are also one of two kinds, as in h11:

* :class:`LocalProtocolError`: this process called the API wrong (a bad option, a message
  or frame that cannot be encoded, a transport used after close() or that cannot bind);
* :class:`RemoteProtocolError`: a peer sent bytes that break the protocol.

Network conditions (:class:`ConnectError`, :class:`TransportTimeoutError`) are neither. The
area bases :class:`MessageError`, :class:`FrameError` and :class:`TransportError` say where
it happened. Every error carries :attr:`ProtocolError.reason`, the unformatted cause, and
frame errors their byte :attr:`~FrameError.offset`; ``str()`` is for people, not parsers.
"""

from __future__ import annotations

__all__ = [
    "BindError",
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
    "LocalProtocolError",
    "MalformedAddressError",
    "MalformedMessageError",
    "MessageError",
    "MessageTooLargeError",
    "NamedMessageError",
    "ProtocolError",
    "RemoteProtocolError",
    "TransportClosedError",
    "TransportError",
    "TransportTimeoutError",
    "TruncatedFrameError",
]


class ProtocolError(Exception):
    """Base class of every error this package raises."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        #: The cause in words, without context added for display (offsets, prefixes).
        self.reason = reason


class LocalProtocolError(ProtocolError):
    """This process misused the API: the fix is in the calling code or its configuration."""


class RemoteProtocolError(ProtocolError):
    """A peer sent bytes that break the protocol: drop that input, keep serving others."""


class InvalidOptionError(LocalProtocolError, ValueError):
    """A setting (timeout, size limit, address, fault rate) that is out of range or malformed."""


class MalformedAddressError(InvalidOptionError):
    """A ``host:port`` string that cannot be dialled or listened on (see ``parse_address``)."""


# -- messages ---------------------------------------------------------------------------


class MessageError(ProtocolError):
    """A message envelope that cannot be encoded (:class:`EncodeError`) or decoded."""


class EncodeError(MessageError, LocalProtocolError):
    """A message, frame or hello that is not valid and so is never put on the wire.

    Raised by every encoder (``encode_message``, ``encode_frame``, ``encode_hello``,
    ``encode_stream_frames``) for what it was given: an empty node id or payload, a count
    outside uint64, an address that does not fit a frame, a result above ``max_size``.
    """


class OversizeMessageError(EncodeError):
    """A valid message whose encoding would exceed the encoder's ``max_size``.

    Its own class so a sender can split what it sends instead of giving up.
    """


class EmptyMessageError(MessageError, RemoteProtocolError):
    """No bytes at all, or a flag byte with no body behind it."""


class InvalidFlagError(MessageError, RemoteProtocolError):
    """An envelope flag byte other than 0x00 (plain) or 0x80 (zstd)."""


class DecompressionError(MessageError, RemoteProtocolError):
    """A body flagged as zstd that does not decompress."""


class MalformedMessageError(MessageError, RemoteProtocolError):
    """A body that is not msgpack, or whose fields have the wrong types."""


class InvalidMessageTypeError(MessageError, RemoteProtocolError):
    """A message type other than push, digest pull or digest ack."""


class EmptyNodeIdError(MessageError, RemoteProtocolError):
    """A message without a sender node id."""


class EmptyPushError(MessageError, RemoteProtocolError):
    """A push that carries neither increments nor decrements."""


class MessageTooLargeError(MessageError, RemoteProtocolError):
    """A received message, compressed or not, above the decoder's ``max_size``."""


class CountOutOfRangeError(MessageError, RemoteProtocolError):
    """A count outside the wire format's uint64 range."""


class NamedMessageError(MessageError, RemoteProtocolError):
    """A named-counter payload (``"DCN" 01``) that breaks that format."""


# -- frames -----------------------------------------------------------------------------


class FrameError(RemoteProtocolError):
    """Bytes on a connection that do not form a valid frame."""

    def __init__(self, reason: str, *, offset: int | None = None) -> None:
        super().__init__(reason)
        if offset is not None:
            self.args = (f"{reason} (at byte {offset})",)
        #: Byte offset in the connection's stream where the problem was found, when known.
        self.offset = offset


class InvalidAddressLengthError(FrameError):
    """A sender address length of zero."""


class InvalidAddressError(FrameError):
    """A sender address that is not valid UTF-8."""


class TruncatedFrameError(FrameError):
    """A connection that ended before its frame was complete."""


class FrameTooLargeError(FrameError):
    """A frame whose payload is above the decoder's ``max_size``."""


class HandshakeError(FrameError):
    """A stream-mode handshake or confirmation with the wrong marker, magic or version."""


class EmptyStreamFrameError(FrameError):
    """A stream-mode frame whose length prefix is 0 (every message has a payload)."""


# -- transport --------------------------------------------------------------------------


class TransportError(ProtocolError):
    """A message that could not be delivered, or a transport that cannot serve."""


class ConnectError(TransportError):
    """The target refused the connection, was unreachable, or did not resolve."""


class TransportTimeoutError(TransportError):
    """A dial, read or write that did not finish within its timeout."""


class TransportClosedError(TransportError, LocalProtocolError):
    """The transport was used after close()."""


class BindError(TransportError, LocalProtocolError):
    """listen() could not resolve or bind its address (in use, not local, no permission)."""

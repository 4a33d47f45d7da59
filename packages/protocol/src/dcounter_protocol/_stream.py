"""The stream mode's wire format, sans-IO: one handshake, then length-prefixed frames.

A stream connection carries many messages in one direction, from the dialer to the listener::

    hello  = 00 "DCS" version addr_len addr    dialer -> listener, once; addr_len 1..255,
                                               addr the dialer's listen address (UTF-8)
    ack    = "DCS" version                     listener -> dialer, once: the only bytes a
                                               listener ever writes
    frame  = length payload                    dialer -> listener, repeated; length is 4
                                               bytes big-endian, 1..max_size

Version 2 (a dialer that has capabilities to offer) adds one byte to each side::

    hello  = 00 "DCS" 02 addr_len addr caps     caps: the dialer's capability bits
    ack    = "DCS" 02 caps                      caps: the listener's capability bits

Bit 0 (:data:`CAP_MEMBERSHIP`) says the node exchanges membership messages, bit 1
(:data:`CAP_NAMED`) named-counter messages. A listener
that only knows version 1 closes the connection without an ack, as for any version it does
not support; a dialer that offered version 2 then offers version 1 before falling back to the
seed's framing, so older dcounter nodes keep their streams.

The leading 00 is what makes the mode negotiable. A seed frame starts with the length of the
sender's address, which is never 0, so a listener tells the two wires apart by the first byte;
and a listener that only knows the seed's framing (the Go reference, or an older dcounter)
rejects the connection without ever sending the ack, which is how a dialer learns to fall
back to the seed's framing. A listener that does not support the hello's version closes the
connection without an ack too, so a future version degrades to the seed's framing rather than
failing.

:class:`StreamDecoder` is the listener's side: fed bytes as they arrive, it returns the
complete frames, checks each length prefix before waiting for the body (so a hostile length is
rejected at once and never buffered) and raises a :class:`~dcounter_protocol._errors.FrameError`
subclass carrying the byte offset of the problem in the connection.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from dcounter_protocol._address import address_bytes
from dcounter_protocol._errors import (
    EmptyStreamFrameError,
    EncodeError,
    FrameError,
    FrameTooLargeError,
    HandshakeError,
    InvalidAddressError,
    InvalidAddressLengthError,
    InvalidOptionError,
    TruncatedFrameError,
)
from dcounter_protocol._message import DEFAULT_MAX_MESSAGE_SIZE

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "CAP_MEMBERSHIP",
    "CAP_NAMED",
    "STREAM_ACK",
    "STREAM_MAGIC",
    "STREAM_MARKER",
    "STREAM_VERSION",
    "STREAM_VERSION_CAPS",
    "StreamDecoder",
    "encode_ack",
    "encode_hello",
    "encode_stream_frames",
    "parse_ack",
]

#: First byte of a stream connection: an address length no seed frame can have.
STREAM_MARKER: Final = 0x00
STREAM_MAGIC: Final = b"DCS"
STREAM_VERSION: Final = 1
#: The version whose hello and confirmation end with a capability byte.
STREAM_VERSION_CAPS: Final = 2
#: Capability bit: membership messages (issue 14) may be sent on this stream.
CAP_MEMBERSHIP: Final = 0x01
#: Capability bit: named-counter messages (issue 20, ``"DCN" 01``) may be sent on this stream.
CAP_NAMED: Final = 0x02
#: The listener's confirmation of a hello.
STREAM_ACK: Final = STREAM_MAGIC + bytes((STREAM_VERSION,))
#: The 4-byte length prefix caps a frame whatever max_size says.
_MAX_LENGTH: Final = 2**32 - 1
#: marker, magic, version, address length.
_HELLO_FIXED: Final = 1 + len(STREAM_MAGIC) + 1 + 1
_VERSION_AT: Final = 1 + len(STREAM_MAGIC)
_PREFIX: Final = 4


def _capability_byte(capabilities: int) -> bytes:
    if type(capabilities) is not int or not 0 <= capabilities <= 0xFF:
        raise EncodeError(f"capabilities must be an int in 0..255, got {capabilities!r}")
    return bytes((capabilities,))


def encode_hello(sender: str, *, capabilities: int | None = None) -> bytes:
    """The dialer's opening bytes, naming ``sender`` (its listen address) once.

    With ``capabilities`` (0..255) a version 2 hello that ends with them. Raises
    :class:`EncodeError` for an address that is empty, not UTF-8 or longer than 255 bytes.
    """
    raw = address_bytes(sender)
    version = STREAM_VERSION if capabilities is None else STREAM_VERSION_CAPS
    tail = b"" if capabilities is None else _capability_byte(capabilities)
    head = bytes((STREAM_MARKER,)) + STREAM_MAGIC + bytes((version, len(raw)))
    return head + raw + tail


def encode_ack(capabilities: int | None = None) -> bytes:
    """The listener's confirmation: :data:`STREAM_ACK`, or version 2's with ``capabilities``."""
    if capabilities is None:
        return STREAM_ACK
    return STREAM_MAGIC + bytes((STREAM_VERSION_CAPS,)) + _capability_byte(capabilities)


def parse_ack(data: bytes | bytearray | memoryview, *, version: int = STREAM_VERSION) -> bool:
    """Whether ``data`` (all the listener sent so far) is the complete confirmation.

    ``version`` is the one the hello offered (version 2's confirmation ends with the
    listener's capability byte, ``data[4]``). False while ``data`` is a proper prefix (wait
    for more); raises :class:`HandshakeError` at the first byte that differs, or if more
    bytes follow it.
    """
    expected = STREAM_MAGIC + bytes((version,))
    size = len(expected) + (1 if version == STREAM_VERSION_CAPS else 0)
    view = bytes(data[: size + 1])
    for index, byte in enumerate(view):
        if index >= size:
            raise HandshakeError("unexpected bytes after the stream confirmation", offset=index)
        if index < len(expected) and byte != expected[index]:
            what = "version" if index == len(STREAM_MAGIC) else "magic"
            raise HandshakeError(f"not a stream confirmation (bad {what})", offset=index)
    return len(view) == size


def encode_stream_frames(
    payloads: Iterable[bytes | bytearray | memoryview], *, max_size: int | None = None
) -> bytes:
    """Frame each payload (``length + payload``) and join them, ready for one write.

    Raises :class:`EncodeError` for an empty payload and for one above ``max_size`` (or above
    what a 4-byte length can say).
    """
    limit = _MAX_LENGTH if max_size is None else min(max_size, _MAX_LENGTH)
    parts: list[bytes | bytearray | memoryview] = []
    append = parts.append
    for payload in payloads:
        size = len(payload)
        if not 0 < size <= limit:
            if size == 0:
                raise EncodeError("a stream frame needs a non-empty payload")
            raise EncodeError(f"payload of {size} bytes exceeds {limit}")
        append(size.to_bytes(_PREFIX, "big"))
        append(payload)
    return b"".join(parts)


class StreamDecoder:
    """Incremental decoder of a stream connection, as the listener receives it.

    :meth:`feed` takes the next bytes and returns the frames they complete; :attr:`sender`
    is known once the hello is complete (then the listener sends :data:`STREAM_ACK`). The
    first violation is raised as a :class:`FrameError` and again by every later call. When
    one chunk holds valid frames and then a violation, those frames are returned and the
    error is kept in :attr:`error` (and raised by the next call), so nothing valid is lost
    whatever the chunking. Call :meth:`end_of_stream` at EOF.
    """

    __slots__ = (
        "_buffer",
        "_capabilities",
        "_consumed",
        "_error",
        "_finished",
        "_max_size",
        "_sender",
        "_version",
    )

    def __init__(self, *, max_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        """``max_size`` bounds each payload; InvalidOptionError unless it is an int >= 1."""
        if type(max_size) is not int or max_size < 1:  # bool is an int subclass: refused
            raise InvalidOptionError(f"max_size must be an int >= 1, got {max_size!r}")
        self._max_size = min(max_size, _MAX_LENGTH)
        self._buffer = bytearray()
        #: Bytes of the connection before ``_buffer[0]``.
        self._consumed = 0
        self._sender: str | None = None
        self._error: FrameError | None = None
        self._finished = False
        self._version = STREAM_VERSION
        self._capabilities = 0

    @property
    def sender(self) -> str | None:
        """The dialer's address, once the hello is complete."""
        return self._sender

    @property
    def version(self) -> int:
        """The hello's version (1 until a version 2 hello is seen)."""
        return self._version

    @property
    def capabilities(self) -> int:
        """The dialer's capability bits (0 for a version 1 hello), once the hello is complete."""
        return self._capabilities

    @property
    def error(self) -> FrameError | None:
        """The violation found so far, if any (the connection should be dropped)."""
        return self._error

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete hello or frame."""
        return len(self._buffer)

    @property
    def received(self) -> int:
        """Bytes fed so far."""
        return self._consumed + len(self._buffer)

    @property
    def max_size(self) -> int:
        """The largest payload accepted."""
        return self._max_size

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Take the next bytes; return the payloads of the frames they complete."""
        if self._error is not None:
            raise self._error
        if self._finished:
            raise FrameError("the stream already ended", offset=self.received)
        buffer = self._buffer
        if buffer:
            buffer += data
            source: bytes | bytearray | memoryview = buffer
        else:
            # Usual case: nothing pending, so whole frames are cut straight from ``data``.
            source = data
        frames: list[bytes] = []
        pos = 0
        error: FrameError | None = None
        with memoryview(source) as view:
            size = len(view)
            try:
                if self._sender is None:
                    pos = self._parse_hello(view)
                if self._sender is not None:
                    limit = self._max_size
                    while size - pos >= _PREFIX:
                        length = int.from_bytes(view[pos : pos + _PREFIX], "big")
                        if not 0 < length <= limit:
                            raise self._bad_length(length, self._consumed + pos)
                        end = pos + _PREFIX + length
                        if end > size:
                            break
                        frames.append(bytes(view[pos + _PREFIX : end]))
                        pos = end
            except FrameError as exc:
                error = exc
            keep = error is None and source is not buffer and pos < size
            rest = bytes(view[pos:]) if keep else b""
        if error is not None:
            self._error = error
            self._consumed += pos
            self._buffer = bytearray()
            if not frames:
                raise error
            return frames
        if source is buffer:
            del buffer[:pos]
        elif rest:
            buffer += rest
        self._consumed += pos
        return frames

    def end_of_stream(self) -> None:
        """Check that the stream ended cleanly; TruncatedFrameError inside a hello or frame."""
        if self._error is not None:
            raise self._error
        self._finished = True
        if self._sender is None:
            self._error = TruncatedFrameError(
                "stream ended inside the handshake", offset=self.received
            )
            raise self._error
        if self._buffer:
            self._error = TruncatedFrameError("stream ended inside a frame", offset=self.received)
            raise self._error

    def _parse_hello(self, view: memoryview) -> int:
        """Bytes the complete hello takes at the start of ``view``, 0 while incomplete."""
        size = len(view)
        if size and view[0] != STREAM_MARKER:
            raise HandshakeError(
                f"not a stream: first byte is {view[0]:#04x}, not {STREAM_MARKER:#04x}", offset=0
            )
        magic = bytes(view[1:_VERSION_AT])
        if magic != STREAM_MAGIC[: len(magic)]:
            at = next(i for i, byte in enumerate(magic) if byte != STREAM_MAGIC[i])
            raise HandshakeError("bad stream magic", offset=1 + at)
        if size > _VERSION_AT:
            version = view[_VERSION_AT]
            if version not in (STREAM_VERSION, STREAM_VERSION_CAPS):
                raise HandshakeError(f"unsupported stream version {version}", offset=_VERSION_AT)
            self._version = version
        if size < _HELLO_FIXED:
            return 0
        length = view[_HELLO_FIXED - 1]
        if length == 0:
            raise InvalidAddressLengthError("sender address length is 0", offset=_HELLO_FIXED - 1)
        address_end = _HELLO_FIXED + length
        end = address_end + (1 if self._version == STREAM_VERSION_CAPS else 0)
        if size < end:
            return 0
        try:
            sender = bytes(view[_HELLO_FIXED:address_end]).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidAddressError(
                "sender address is not valid UTF-8", offset=_HELLO_FIXED + exc.start
            ) from None
        if end > address_end:
            self._capabilities = view[address_end]
        self._sender = sender
        return end

    def _bad_length(self, length: int, offset: int) -> FrameError:
        if length == 0:
            return EmptyStreamFrameError("stream frame of length 0", offset=offset)
        return FrameTooLargeError(
            f"stream frame of {length} bytes exceeds {self._max_size}", offset=offset
        )

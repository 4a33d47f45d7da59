"""RESP on the wire, sans-IO: requests in (hiredis's reader), replies out (RESP2 and RESP3).

:class:`RequestReader` turns the bytes a client sends into requests (lists of byte-string
arguments); :class:`Replies` encodes answers for one protocol version. Nothing here does
I/O or logs.

Parsing is hiredis's (:class:`hiredis.Reader`). hiredis allocates an array as soon as it
reads ``*N`` (a list of ``N`` slots, with no cap a caller can set), so a 13-byte
``*2147483647`` would reserve 16 GiB, and nested headers multiply such allocations. So
hiredis only sees bytes whose array headers are known to be harmless, in one of two ways:

* the fast way, for a read that starts a request (the usual pipelined batch of small
  commands): C-speed scans of the whole read prove that every ``*`` in it (wherever hiredis
  might read a header, inside an argument too) starts a header of one digit, and that no
  other byte that starts an aggregate (RESP3's ``%~>|``) or a string other than a bulk
  string (``+=(``) is present. Whatever hiredis makes of the read, it then allocates at
  most one list of 9 slots per 4 bytes, a small multiple of the read's size (at most 64
  KiB). The read is accepted if hiredis turned it into exactly as many requests as it
  holds ``*`` bytes, each a list of byte strings, with no bytes left over: then every
  ``*`` was a request's header, none nested or inside an argument, and no request is left
  half-read, so the exact way would have read the same requests.
  Otherwise (and whenever a scan fails) the read is parsed again the exact way, from the
  same start, with a fresh hiredis reader;
* the exact way: a small framing check walks the headers of every request as its bytes
  arrive, so that every declared count and length is checked against
  :class:`~dcounter_node._resp_limits.RespLimits` before hiredis acts on it.

Both hold requests to what clients send (arrays of bulk strings): anything else is a
:class:`RespProtocolError`, after which the connection must be closed, as Redis does.
"""

from __future__ import annotations

import re
from itertools import chain
from typing import TYPE_CHECKING, Final

import hiredis

from dcounter_node._errors import NodeError
from dcounter_node._resp_inline import split_inline

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from dcounter_node._resp_limits import RespLimits

__all__ = ["Replies", "RequestReader", "RespProtocolError", "error_line"]

#: Longest header line (``*N`` or ``$N``): a sign, 20 digits, CRLF, with room to spare.
_MAX_HEADER: Final = 32
_STAR: Final = 0x2A  # '*'
#: Longest inline command line (Redis's own limit).
_MAX_INLINE: Final = 64 * 1024
_DOLLAR: Final = 0x24  # '$'
_CR: Final = 0x0D
#: Whole header lines: a request's argument count (-1 is an empty request), an argument's
#: length; up to 19 digits, so that int() stays cheap.
_ARRAY: Final = re.compile(rb"\*(-1|[0-9]{1,19})\r\n").match
_BULK: Final = re.compile(rb"\$([0-9]{1,19})\r\n").match
#: The fast way's scans (see the module's docstring): a ``*`` that does not start a
#: one-digit array header, and the bytes it lets no further than the exact way.
_BIG_OR_ODD_STAR: Final = re.compile(rb"\*(?![0-9]\r\n)").search
_NOT_FAST: Final = b"%~>|+=("
#: Longest read parsed the fast way (what hiredis allocates for it is a multiple of that).
_FAST_MAX: Final = 64 * 1024


class RespProtocolError(NodeError):
    """A client sent bytes that are not a well-formed request within the limits.

    ``str(error)`` is Redis's wording after ``Protocol error:``; the connection is unusable.
    """


def error_line(message: str) -> bytes:
    """An error reply: ``-`` then ``message`` (newlines become spaces, as Redis does)."""
    text = message.replace("\r", " ").replace("\n", " ")
    return b"-" + text.encode("utf-8", "replace") + b"\r\n"


def _shown(byte: int) -> str:
    return chr(byte) if 0x20 < byte < 0x7F else f"\\x{byte:02x}"


class RequestReader:
    """Feed bytes, get the complete requests they finish (each a non-empty list of bytes).

    Requests are arrays of bulk strings, as clients send them, or inline commands (a line
    of arguments separated by spaces, as typed into telnet, quoted as Redis reads them:
    :func:`~dcounter_node._resp_inline.split_inline`).

    Raises :class:`RespProtocolError` for malformed input or input past the limits; the
    reader must not be used after that.
    """

    __slots__ = (
        "_elements",
        "_fast_max",
        "_few_arguments",
        "_limits",
        "_line",
        "_parser",
        "_request_bytes",
        "_skip",
    )

    def __init__(self, limits: RespLimits) -> None:
        self._limits = limits
        self._parser = hiredis.Reader()
        # Reads over the request size limit take the exact way, which enforces it.
        self._fast_max = min(_FAST_MAX, limits.max_request_bytes)
        # Whether requests of up to 9 arguments may be too many (checked after hiredis then).
        self._few_arguments = limits.max_arguments < 9
        # The framing check's state: a header line cut by a read, the bulk strings still to
        # come in the current request, the bytes left of the current one (CRLF included),
        # and the size of the request so far.
        self._line = b""
        self._elements = 0
        self._skip = 0
        self._request_bytes = 0

    @property
    def in_request(self) -> bool:
        """Whether part of a request has arrived but not all of it."""
        return bool(self._elements or self._skip or self._line)

    def feed(self, data: bytes) -> list[list[bytes]]:
        """The requests ``data`` completes, in order (empty ones are dropped, as Redis does)."""
        if not (self._elements or self._skip or self._line):  # at a request's start
            fast = self._feed_fast(data)
            if fast is not None:
                return fast
        parser = self._parser
        parser.feed(self._check(data))
        requests: list[list[bytes]] = []
        try:
            while (request := parser.gets()) is not False:
                if request:  # ``*0`` and ``*-1`` are empty requests: Redis ignores them
                    requests.append(request)
        except hiredis.ProtocolError as exc:  # pragma: no cover - the check rejects it first
            raise RespProtocolError(str(exc)) from None
        return requests

    def _feed_fast(self, data: bytes) -> list[list[bytes]] | None:
        """``data``'s requests the fast way, or None if it must take the exact way."""
        size = len(data)
        if (
            size > self._fast_max
            or data[:1] != b"*"
            # A read that ends inside a request: hiredis may have taken the type byte of a
            # reply it cannot finish yet without showing it (``has_data()`` is then False).
            or data[-1:] != b"\n"
            or _BIG_OR_ODD_STAR(data)
            or len(data.translate(None, _NOT_FAST)) != size
        ):
            return None
        parser = self._parser
        parser.feed(data)
        gets = parser.gets
        requests: list[list[bytes]] = []
        try:
            while (request := gets()) is not False:
                requests.append(request)
            # TypeError unless each request is a list (not None, an integer, an error or a
            # bulk string, even an empty one) of byte strings (no other type of argument).
            b"".join(chain.from_iterable(map(list.__iter__, requests)))
        except (hiredis.ProtocolError, TypeError):
            requests = []
        if (
            len(requests) != data.count(b"*")
            or parser.has_data()
            or (self._few_arguments and max(map(len, requests)) > self._limits.max_arguments)
        ):
            # A nested array, a request cut by the read, a malformed one, or too many
            # arguments: forget what hiredis read and parse from the same start the exact way.
            self._parser = hiredis.Reader()
            return None
        if b"*0\r\n" in data:  # empty requests: Redis ignores them
            return [request for request in requests if request]
        return requests

    def _check(self, chunk: bytes) -> bytes:
        """Check ``chunk``'s framing; the bytes to hand hiredis.

        That is ``chunk`` itself, except that a header line cut by the read is held back
        until it is whole, and inline commands (``PING\r\n``, as telnet sends; blank lines,
        which ``redis-cli --pipe`` sends) are rewritten as the arrays hiredis reads.
        """
        data = self._line + chunk if self._line else chunk
        self._line = b""
        limits = self._limits
        size = len(data)
        pos = 0
        # Only for inline commands: the pieces of ``data`` to pass on, and rewritten ones.
        pieces: list[bytes] = []
        kept = 0
        elements, skip, request_bytes = self._elements, self._skip, self._request_bytes
        max_bytes, max_arguments = limits.max_request_bytes, limits.max_arguments
        while pos < size:
            if skip:  # the rest of an argument whose length was checked
                taken = min(skip, size - pos)
                skip -= taken
                pos += taken
            elif elements:  # one argument: its header, then skip its bytes
                header = _BULK(data, pos)
                if header is None:
                    _cut_or_malformed(data, pos, elements)
                    break
                length = int(header[1])
                body = header.end()
                # Counted as declared, so an oversized request is refused before it arrives.
                request_bytes += body - pos + length + 2
                if request_bytes > max_bytes:  # (one comparison on the common path)
                    if length > max_bytes:
                        raise RespProtocolError("invalid bulk length")
                    raise RespProtocolError(f"request larger than {max_bytes} bytes")
                elements -= 1
                pos = body + length + 2
                if pos > size:
                    skip, pos = pos - size, size
            elif data[pos] == _STAR:  # a request: its argument count
                header = _ARRAY(data, pos)
                if header is None:
                    _cut_or_malformed(data, pos, elements)
                    break
                number = int(header[1])
                if number > max_arguments:
                    raise RespProtocolError("invalid multibulk length")
                elements = number if number > 0 else 0
                end = header.end()
                request_bytes = end - pos
                pos = end
            else:  # an inline command
                line_end = data.find(b"\n", pos, pos + _MAX_INLINE)
                if line_end < 0:
                    if size - pos >= min(_MAX_INLINE, max_bytes):
                        raise RespProtocolError("too big inline request")
                    break
                # Redis drops the CR of a CRLF; a lone LF ends a line too.
                cr = line_end > pos and data[line_end - 1] == _CR
                args = split_inline(data[pos : line_end - cr])
                if args is None:
                    raise RespProtocolError("unbalanced quotes in request")
                if len(args) > max_arguments:
                    raise RespProtocolError("invalid multibulk length")
                pieces += (data[kept:pos], _array(args))
                pos = kept = line_end + 1
        self._elements, self._skip, self._request_bytes = elements, skip, request_bytes
        if pos < size:  # a line cut by the read: checked (and passed on) once it is whole
            self._line = data[pos:]
        if pieces:
            pieces.append(data[kept:pos])
            return b"".join(pieces)
        return data if pos == size else data[:pos]


def _cut_or_malformed(data: bytes, pos: int, elements: int) -> None:
    """At a header that is not a whole valid one: return if the read cut it, else raise."""
    end = data.find(b"\r\n", pos, pos + _MAX_HEADER)
    if end < 0:
        if len(data) - pos >= _MAX_HEADER:
            raise RespProtocolError(f"header line longer than {_MAX_HEADER} bytes")
        return
    if not elements:
        raise RespProtocolError("invalid multibulk length")
    if data[pos] != _DOLLAR:
        raise RespProtocolError(f"expected '$', got '{_shown(data[pos])}'")
    raise RespProtocolError("invalid bulk length")


def _array(args: list[bytes]) -> bytes:
    """An inline command's arguments as the array a client would have sent ("" if none)."""
    if not args:
        return b""
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%b\r\n" % (len(a), a) for a in args)


class Replies:
    """Reply encoders for one protocol version (2, or 3 after ``HELLO 3``)."""

    __slots__ = ("null", "resp3")

    def __init__(self, protocol: int = 2) -> None:
        self.resp3 = protocol == 3
        #: The "no value" reply: a null bulk string in RESP2, RESP3's null.
        self.null = b"_\r\n" if self.resp3 else b"$-1\r\n"

    @staticmethod
    def integer(value: int) -> bytes:
        return b":%d\r\n" % value

    @staticmethod
    def bulk(value: bytes) -> bytes:
        return b"$%d\r\n%b\r\n" % (len(value), value)

    @staticmethod
    def text(value: str) -> bytes:
        return Replies.bulk(value.encode())

    @staticmethod
    def simple(value: str) -> bytes:
        return b"+" + value.encode() + b"\r\n"

    @staticmethod
    def array(items: Sequence[bytes]) -> bytes:
        return b"*%d\r\n%b" % (len(items), b"".join(items))

    def map(self, pairs: Iterable[tuple[bytes, bytes]]) -> bytes:
        """A map in RESP3; a flat array of keys and values in RESP2 (as Redis answers)."""
        flat = [part for pair in pairs for part in pair]
        if self.resp3:
            return b"%%%d\r\n%b" % (len(flat) // 2, b"".join(flat))
        return self.array(flat)

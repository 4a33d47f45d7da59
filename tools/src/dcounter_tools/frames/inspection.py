"""What a byte string is: a seed TCP frame, a bare message payload, or garbage (and where).

A payload starting with ``"DCN"`` is a named-counter message (issue 20), decoded into
:attr:`Inspection.named`; everything else is read as a seed message.

Pure functions over bytes; the decoding itself is :mod:`dcounter_protocol`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import msgpack

from dcounter_protocol import (
    DEFAULT_MAX_MESSAGE_SIZE,
    FLAG_COMPRESSED,
    FrameError,
    Message,
    MessageError,
    NamedMessage,
    decode_frame,
    decode_message,
    decode_named,
    is_named,
)

__all__ = ["Inspection", "Kind", "Problem", "frame_problem", "inspect_bytes", "inspect_frame"]

#: What to read the input as; ``auto`` tries a frame first, then a bare message.
Kind = Literal["auto", "frame", "message"]


@dataclass(frozen=True, slots=True)
class Problem:
    """Why some bytes did not decode: the error class, its text, and where it was found."""

    layer: Literal["frame", "message"]
    error: str
    detail: str
    #: Byte offset in the inspected input: where a frame problem was found, or where the
    #: undecodable message starts (message errors carry no finer position).
    offset: int | None = None


@dataclass(frozen=True, slots=True)
class Inspection:
    """The outcome of reading one input.

    ``kind`` is ``"frame"`` when the input parsed as a seed frame (``sender`` set; the message
    starts at ``payload_offset``), ``"message"`` for a bare payload, ``None`` when neither
    worked. ``message`` is None when the payload did not decode; ``problems`` says why.
    """

    size: int
    kind: Literal["frame", "message"] | None
    sender: str | None
    payload_offset: int
    payload_size: int
    flag: int | None
    message: Message | None
    problems: tuple[Problem, ...] = ()
    #: The named-counter message, when the payload is one (``message`` is then None).
    named: NamedMessage | None = None

    @property
    def ok(self) -> bool:
        """True when a message was decoded and nothing went wrong."""
        return (self.message is not None or self.named is not None) and not self.problems

    @property
    def compressed(self) -> bool:
        """True when the payload's flag byte says zstd (the only flag that does)."""
        return self.flag == FLAG_COMPRESSED


def _message_problem(exc: MessageError, offset: int) -> Problem:
    return Problem("message", type(exc).__name__, exc.reason, offset)


def frame_problem(exc: FrameError) -> Problem:
    """The :class:`Problem` that ``exc`` describes, found at its byte offset."""
    return Problem("frame", type(exc).__name__, exc.reason, exc.offset)


def _cut_short(payload: bytes) -> bool:
    """Whether a plain payload's msgpack body stops in the middle of its object.

    The codec's error for such a body is msgpack's wording (``incomplete input``, or a map
    header claiming more entries than bytes remain); a streaming unpacker tells it plainly.
    """
    if not payload or payload[0] == FLAG_COMPRESSED:
        return False
    unpacker = msgpack.Unpacker(raw=True, strict_map_key=False)
    unpacker.feed(payload[1:])
    try:
        unpacker.unpack()
    except msgpack.OutOfData:
        return True
    except ValueError:  # malformed in another way: the codec's own error says how
        return False
    return False


def _truncated(exc: MessageError, payload: bytes, offset: int, *, framed: bool) -> Problem:
    body = len(payload) - 1
    if framed:
        detail = f"the frame ends inside its message (a {body}-byte msgpack body, cut short)"
        return Problem("frame", "TruncatedFrameError", detail, offset + len(payload))
    detail = f"truncated: the {body}-byte msgpack body ends inside its first object"
    return Problem("message", type(exc).__name__, detail, offset)


def _as_named(data: bytes, max_size: int, *, offset: int = 0) -> NamedMessage | Problem:
    try:
        return decode_named(data, max_size=max_size)
    except MessageError as exc:
        return _message_problem(exc, offset)


def _as_message(data: bytes, max_size: int) -> Inspection:
    if is_named(data):
        named = _as_named(data, max_size)
        if isinstance(named, Problem):
            return Inspection(len(data), None, None, 0, len(data), None, None, (named,))
        return Inspection(len(data), "message", None, 0, len(data), None, None, named=named)
    flag = data[0] if data else None
    try:
        message = decode_message(data, max_size=max_size)
    except MessageError as exc:
        problem = (
            _truncated(exc, data, 0, framed=False) if _cut_short(data) else _message_problem(exc, 0)
        )
        return Inspection(len(data), None, None, 0, len(data), flag, None, (problem,))
    return Inspection(len(data), "message", None, 0, len(data), flag, message)


def inspect_frame(data: bytes, *, max_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> Inspection:
    """Read ``data`` as one seed frame: ``[len][sender address][message payload]``."""
    try:
        frame = decode_frame(data, max_size=max_size)
    except FrameError as exc:
        return Inspection(len(data), None, None, 0, 0, None, None, (frame_problem(exc),))
    offset = len(data) - len(frame.payload)
    payload = frame.payload
    if is_named(payload):
        named = _as_named(payload, max_size, offset=offset)
        problems = (named,) if isinstance(named, Problem) else ()
        return Inspection(
            len(data),
            "frame",
            frame.sender,
            offset,
            len(payload),
            None,
            None,
            problems,
            None if isinstance(named, Problem) else named,
        )
    flag = payload[0] if payload else None
    try:
        message = decode_message(payload, max_size=max_size)
    except MessageError as exc:
        if _cut_short(payload):
            problem = _truncated(exc, payload, offset, framed=True)
        else:
            problem = _message_problem(exc, offset)
        return Inspection(
            len(data), "frame", frame.sender, offset, len(payload), flag, None, (problem,)
        )
    return Inspection(len(data), "frame", frame.sender, offset, len(payload), flag, message)


def inspect_bytes(
    data: bytes, *, kind: Kind = "auto", max_size: int = DEFAULT_MAX_MESSAGE_SIZE
) -> Inspection:
    """Decode ``data`` as a frame, a bare message, or (``auto``) whichever it is.

    ``auto`` prefers a frame whose payload decodes, then a bare message; when neither
    decodes it reports the frame reading if the frame structure itself was sound (only its
    payload is bad), else both problems.
    """
    if kind == "frame":
        return inspect_frame(data, max_size=max_size)
    if kind == "message":
        return _as_message(data, max_size)
    as_frame = inspect_frame(data, max_size=max_size)
    if as_frame.ok:
        return as_frame
    as_message = _as_message(data, max_size)
    if as_message.ok or is_named(data):  # "DCN" is no plausible frame: say what is wrong
        return as_message
    if as_frame.kind == "frame":
        return as_frame
    return Inspection(
        len(data), None, None, 0, 0, None, None, as_frame.problems + as_message.problems
    )

"""The seed's messages: msgpack bodies in a one-byte envelope, byte-exact with the reference.

Wire format (what the Go reference writes, see the golden vectors' README)::

    envelope = flag (1 byte: 0x00 plain, 0x80 zstd) + body (msgpack, zstd-compressed if 0x80)
    body     = map {"t": uint8, "id": str, "inc": map|nil, "dec": map|nil[, "dig": uint64]}

This module holds the messages and the envelope's constants; the codec is
:mod:`~dcounter_protocol._message_encoder` (``encode_message``, tuned for speed),
:mod:`~dcounter_protocol._message_decoder` (``decode_message``, strict on hostile input) and
:mod:`~dcounter_protocol._zstd` (compression, bounded).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, ClassVar, Final, Literal, TypeAlias

from dcounter_crdt import CounterState

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "COMPRESSION_THRESHOLD",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "FLAG_COMPRESSED",
    "FLAG_PLAIN",
    "MESSAGE_CLASSES",
    "DigestAck",
    "DigestPull",
    "Message",
    "MessageType",
    "Push",
]

#: Largest envelope (flag byte included) and largest decompressed body, as in the reference.
DEFAULT_MAX_MESSAGE_SIZE: Final = 10 * 1024 * 1024
#: Bodies longer than this are compressed when zstd makes them smaller.
COMPRESSION_THRESHOLD: Final = 1024
FLAG_PLAIN: Final = 0x00
FLAG_COMPRESSED: Final = 0x80


class MessageType(enum.IntEnum):
    """The seed's three message types (the ``t`` field)."""

    PUSH = 1
    DIGEST_PULL = 2
    DIGEST_ACK = 3


def _is_frozen(counts: Mapping[str, int] | None) -> bool:
    # Read-only already (CounterState's maps, decoded maps): shared, not copied.
    return counts is None or type(counts) is MappingProxyType


class _Counts:
    """What the three messages share: the count maps every type carries on the wire.

    ``increments``/``decrements`` of ``None`` are Go nil maps (``c0`` on the wire), distinct
    from empty maps (``80``). The reference writes and reads them on every type, so pulls and
    acks keep them too (they mean nothing there). Maps given as plain mappings are copied
    into read-only views. Construction does not validate (so invalid messages can be
    represented and rejected by :func:`encode_message`); :func:`decode_message` only ever
    returns valid ones.
    """

    __slots__ = ()
    increments: Mapping[str, int] | None
    decrements: Mapping[str, int] | None

    def __post_init__(self) -> None:
        if not _is_frozen(self.increments):
            object.__setattr__(self, "increments", MappingProxyType(dict(self.increments or {})))
        if not _is_frozen(self.decrements):
            object.__setattr__(self, "decrements", MappingProxyType(dict(self.decrements or {})))

    def state(self) -> CounterState:
        """The message's counts as a counter state (nil maps read as empty)."""
        return CounterState.from_maps(self.increments, self.decrements)


@dataclass(frozen=True, slots=True)
class Push(_Counts):
    """A push carrying (part of) the sender's state (``t`` = 1)."""

    node_id: str
    increments: Mapping[str, int] | None = None
    decrements: Mapping[str, int] | None = None
    digest: int = 0
    #: The maps are a :class:`CounterState`'s, valid by construction (set by
    #: :meth:`from_state` only): the encoder does not check their counts again.
    _of_state: bool = field(default=False, init=False, repr=False, compare=False)
    type: ClassVar[Literal[MessageType.PUSH]] = MessageType.PUSH

    @classmethod
    def from_state(cls, node_id: str, state: CounterState, digest: int = 0) -> Push:
        """A push of ``state``'s maps; cheaper to encode than the same maps given as dicts."""
        push = cls(node_id, state.increments, state.decrements, digest)
        # A subclass could override the maps with anything: only the class itself is trusted.
        if type(state) is CounterState:
            object.__setattr__(push, "_of_state", True)
        return push


@dataclass(frozen=True, slots=True)
class DigestPull(_Counts):
    """A request to compare digests; the receiver pushes its state on mismatch (``t`` = 2)."""

    node_id: str
    digest: int = 0
    increments: Mapping[str, int] | None = None
    decrements: Mapping[str, int] | None = None
    type: ClassVar[Literal[MessageType.DIGEST_PULL]] = MessageType.DIGEST_PULL


@dataclass(frozen=True, slots=True)
class DigestAck(_Counts):
    """The answer to a digest pull whose digest matched (``t`` = 3)."""

    node_id: str
    digest: int = 0
    increments: Mapping[str, int] | None = None
    decrements: Mapping[str, int] | None = None
    type: ClassVar[Literal[MessageType.DIGEST_ACK]] = MessageType.DIGEST_ACK


#: One protocol message, field for field the reference's ``protocol.Message``, as a tagged
#: union: dispatch with ``match`` on the class (the ``type`` tag is a class constant).
Message: TypeAlias = Push | DigestPull | DigestAck

#: The class of each message type (the encoder's heads, the decoder's dispatch).
MESSAGE_CLASSES: Final[dict[MessageType, type[Push] | type[DigestPull] | type[DigestAck]]] = {
    cls.type: cls for cls in (Push, DigestPull, DigestAck)
}

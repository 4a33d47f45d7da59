"""The gossip core's vocabulary: what :class:`~dcounter_node._gossip.Gossip` hands its driver.

Kept apart from the core's rules so that the driver (:mod:`dcounter_node._node`), the sends
(:mod:`dcounter_node._outbound`) and named gossip can speak of its results (:class:`Outgoing`,
:class:`Received`, :class:`Rejection`) and of quiet pulls without importing the core.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from dcounter_crdt import CounterState

if TYPE_CHECKING:
    from dcounter_crdt import CRDTError
    from dcounter_protocol import DigestPull, Message, MessageType, NamedKind, ProtocolError

__all__ = ["MAX_REPLICA_ID_BYTES", "Outgoing", "Received", "Rejection", "is_quiet_pull"]

#: Longest replica id accepted from a peer, in UTF-8 bytes (as long as a seed address).
MAX_REPLICA_ID_BYTES: Final = 255


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to send: where, what type (a seed or a named one), its encoded payload."""

    address: str
    kind: MessageType | NamedKind
    data: bytes


def is_quiet_pull(message: DigestPull) -> bool:
    """Whether ``message`` is a quiet pull: one that wants no ack when the digests match.

    A pull's count maps mean nothing to the reference, which writes them as nil and ignores
    them; a node in agreement with its peers sends them empty instead, because an ack
    would only confirm what it knows. A receiver that does not know this (the reference,
    an older node) acks as usual, which is harmless; a mismatch is answered as for any pull.
    """
    return message.increments is not None and message.decrements is not None


class Rejection(enum.Enum):
    """Why a whole push was refused."""

    TOO_MANY_REPLICAS = "it would take the state past max_replicas entries"
    REPLICA_ID_TOO_LONG = f"it names a replica id longer than {MAX_REPLICA_ID_BYTES} bytes"


@dataclass(slots=True)
class Received:
    """What handling one received payload did (for the driver to count, log and send)."""

    #: The decoded message; None when the payload was invalid (see ``error``).
    message: Message | None = None
    error: ProtocolError | CRDTError | None = None
    #: Entries won by merging (already applied): to persist, and a value change to publish.
    learned: CounterState = field(default_factory=CounterState.empty)
    #: The whole push was refused, nothing of it merged.
    rejected: Rejection | None = None
    #: Entries for our own replica above our own counts, refused (a forged push).
    forged: CounterState = field(default_factory=CounterState.empty)
    #: A reply was due but the sender is not one of our peers, so none was sent.
    unknown_sender: bool = False
    sends: list[Outgoing] = field(default_factory=list)

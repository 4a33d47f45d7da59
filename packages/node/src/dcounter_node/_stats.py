"""Counters describing what a node sent, received, merged and dropped."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

from dcounter_protocol import MessageType, NamedKind

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["NodeStats", "NodeStatsSnapshot"]

#: Peers whose last contact is remembered; beyond this the oldest are forgotten, so a flood
#: of frames claiming ever new sender addresses cannot grow memory without bound.
_MAX_CONTACTS = 4096


@dataclass(frozen=True, slots=True)
class NodeStatsSnapshot:
    """A consistent, immutable copy of a node's statistics.

    Message and byte counts are per :class:`MessageType` and named-counter
    :class:`NamedKind`; bytes are message payloads (the flag byte and body, or the named
    magic, kind and body, without the transport's frame header).
    """

    messages_sent: Mapping[MessageType | NamedKind, int]
    bytes_sent: Mapping[MessageType | NamedKind, int]
    messages_received: Mapping[MessageType | NamedKind, int]
    bytes_received: Mapping[MessageType | NamedKind, int]
    #: Pushes merged (every push that decoded, whether or not it changed anything).
    merges: int
    #: Pushes whose merge changed this node's state.
    merges_changed: int
    #: Received messages dropped because the inbound queue was full.
    inbound_drops: int
    #: Sends dropped because too many were in flight.
    outbound_drops: int
    #: Received messages that did not decode (or held invalid counts) and were dropped.
    decode_errors: int
    #: Sends the transport failed (refused, unreachable, timed out...).
    send_failures: int
    #: Peer address -> wall-clock time (time.time()) of the last message sent to it
    #: successfully or received from it.
    last_contact: Mapping[str, float]
    #: Pushes rejected whole for passing a limit (max_replicas, replica id length).
    pushes_rejected: int = 0
    #: Pushes that claimed more for this node's own replica than it counted (that entry
    #: was refused, the rest merged).
    forged_refused: int = 0
    #: Replies not sent because the asking address is not one of our peers.
    unknown_senders: int = 0

    @property
    def total_messages_sent(self) -> int:
        """Messages sent, all types."""
        return sum(self.messages_sent.values())

    @property
    def total_bytes_sent(self) -> int:
        """Payload bytes sent, all types."""
        return sum(self.bytes_sent.values())

    @property
    def total_messages_received(self) -> int:
        """Messages received and decoded, all types."""
        return sum(self.messages_received.values())

    @property
    def total_bytes_received(self) -> int:
        """Payload bytes received in decoded messages, all types."""
        return sum(self.bytes_received.values())


class NodeStats:
    """Live statistics of one node; :meth:`snapshot` is safe from any thread."""

    def __init__(self) -> None:
        # The node updates these on its loop; the lock is for readers on other threads
        # (e.g. a metrics exporter) so a snapshot never sees a half-applied update.
        self._lock = threading.Lock()
        self._messages_sent = dict.fromkeys((*MessageType, *NamedKind), 0)
        self._bytes_sent = dict.fromkeys((*MessageType, *NamedKind), 0)
        self._messages_received = dict.fromkeys((*MessageType, *NamedKind), 0)
        self._bytes_received = dict.fromkeys((*MessageType, *NamedKind), 0)
        self._merges = 0
        self._merges_changed = 0
        self._inbound_drops = 0
        self._outbound_drops = 0
        self._decode_errors = 0
        self._send_failures = 0
        self._pushes_rejected = 0
        self._forged_refused = 0
        self._unknown_senders = 0
        self._last_contact: dict[str, float] = {}

    def record_sent(self, message_type: MessageType | NamedKind, size: int, peer: str) -> None:
        """Count one message delivered to ``peer``."""
        with self._lock:
            self._messages_sent[message_type] += 1
            self._bytes_sent[message_type] += size
            self._touch(peer)

    def record_received(self, message_type: MessageType | NamedKind, size: int, peer: str) -> None:
        """Count one message received from ``peer`` and decoded."""
        with self._lock:
            self._messages_received[message_type] += 1
            self._bytes_received[message_type] += size
            self._touch(peer)

    def record_merge(self, *, changed: bool) -> None:
        """Count one merged push."""
        with self._lock:
            self._merges += 1
            if changed:
                self._merges_changed += 1

    def record_inbound_drop(self) -> None:
        """Count one received message dropped on a full inbound queue."""
        with self._lock:
            self._inbound_drops += 1

    def record_outbound_drop(self) -> None:
        """Count one send dropped because too many were in flight."""
        with self._lock:
            self._outbound_drops += 1

    def record_decode_error(self) -> None:
        """Count one received message that was invalid and dropped."""
        with self._lock:
            self._decode_errors += 1

    def record_send_failure(self) -> None:
        """Count one send the transport could not deliver."""
        with self._lock:
            self._send_failures += 1

    def record_push_rejected(self) -> None:
        """Count one push rejected whole for passing a limit."""
        with self._lock:
            self._pushes_rejected += 1

    def record_forged_refused(self) -> None:
        """Count one push whose claim for our own replica was refused."""
        with self._lock:
            self._forged_refused += 1

    def record_unknown_sender(self) -> None:
        """Count one reply withheld from an address that is not a peer."""
        with self._lock:
            self._unknown_senders += 1

    def snapshot(self) -> NodeStatsSnapshot:
        """An immutable copy of every counter, taken at one instant."""
        with self._lock:
            return NodeStatsSnapshot(
                messages_sent=MappingProxyType(dict(self._messages_sent)),
                bytes_sent=MappingProxyType(dict(self._bytes_sent)),
                messages_received=MappingProxyType(dict(self._messages_received)),
                bytes_received=MappingProxyType(dict(self._bytes_received)),
                merges=self._merges,
                merges_changed=self._merges_changed,
                inbound_drops=self._inbound_drops,
                outbound_drops=self._outbound_drops,
                decode_errors=self._decode_errors,
                send_failures=self._send_failures,
                last_contact=MappingProxyType(dict(self._last_contact)),
                pushes_rejected=self._pushes_rejected,
                forged_refused=self._forged_refused,
                unknown_senders=self._unknown_senders,
            )

    def _touch(self, peer: str) -> None:
        contacts = self._last_contact
        # Re-inserting keeps the dict in least-recently-contacted order for eviction.
        contacts.pop(peer, None)
        contacts[peer] = time.time()
        if len(contacts) > _MAX_CONTACTS:
            del contacts[next(iter(contacts))]

"""A :class:`~dcounter_protocol._tcp.TCPTransport`'s settings, counters and fixed limits."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

from dcounter_protocol._errors import InvalidOptionError
from dcounter_protocol._message import DEFAULT_MAX_MESSAGE_SIZE
from dcounter_protocol._tcp._tlsoptions import TLSOptions

__all__ = ["Counters", "TCPOptions", "TransportStats", "WireMode", "log"]

#: One logger for the whole transport, whichever of its modules logs.
log: Final = logging.getLogger("dcounter_protocol._tcp")

#: How a :class:`TCPTransport` sends: ``"auto"`` (streams where the peer confirms one, the
#: seed's framing elsewhere) or ``"seed"`` (the seed's framing only).
WireMode: TypeAlias = Literal["auto", "seed"]
_WIRE_MODES: tuple[WireMode, ...] = ("auto", "seed")

#: Bytes asked of the kernel per read; seed frames are usually far smaller.
RECV_SIZE: Final = 64 * 1024
#: Pause after an accept() failure such as EMFILE, so the loop does not spin on it.
ACCEPT_RETRY_DELAY: Final = 0.1
#: Bound on cached parsed target addresses (peer addresses come from the network).
TARGET_CACHE_SIZE: Final = 1024
#: Outbound peer entries past which idle ones (no stream, nothing queued) are forgotten.
MAX_PEERS: Final = 4096
#: Bytes put in one write() when a backlog is flushed, so one batch never copies a whole queue.
BATCH_BYTES: Final = 256 * 1024
#: A message queued on a stream this long after its last write is written at once, not in a
#: batch at the next pass of the loop.
WRITE_NOW_AFTER: Final = 0.005
#: Inbound stream frames decoded but not yet handled at which reading pauses, and resumes.
PAUSE_FRAMES: Final = 1024
RESUME_FRAMES: Final = 256
#: Longest close() waits for outbound streams to hand their buffered bytes to the kernel.
CLOSE_GRACE: Final = 1.0
#: With every connection slot taken, how often to look for a connection kept waiting.
SLOT_CHECK_INTERVAL: Final = 0.1
#: Times a send re-checks a peer whose freshly opened stream broke at once, before it falls
#: back to the seed framing for that message.
OPEN_ATTEMPTS: Final = 3

_SECONDS = (
    "dial_timeout",
    "read_timeout",
    "write_timeout",
    "first_byte_timeout",
    "handshake_timeout",
    "stream_idle_timeout",
    "reprobe_interval",
    "reconnect_delay",
    "reconnect_max_delay",
)
_COUNTS = ("max_connections", "max_message_size", "backlog", "stream_queue_size")


def _check_seconds(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidOptionError(f"{name} must be a number, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise InvalidOptionError(f"{name} must be finite and > 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class TCPOptions:
    """Timeouts (seconds), limits and wire choice of a :class:`TCPTransport`."""

    dial_timeout: float = 5.0
    read_timeout: float = 5.0
    write_timeout: float = 5.0
    #: An inbound connection that sends nothing for this long (or ``read_timeout`` if that is
    #: shorter) is closed: a real sender writes at once, a silent one only holds a slot.
    first_byte_timeout: float = 2.0
    #: Inbound connections read or handled at once (streams count while open).
    max_connections: int = 256
    #: Largest payload accepted from a peer (a seed frame adds up to 256 header bytes).
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    #: Length of the kernel's queue of connections not yet accepted.
    backlog: int = 128
    #: How to send: "auto" (stream mode with fallback) or "seed" (seed framing only).
    #: Receiving always accepts both.
    wire: WireMode = "auto"
    #: How long a dialer waits for the listener to confirm a stream.
    handshake_timeout: float = 1.0
    #: Outbound streams without a write for this long are closed.
    stream_idle_timeout: float = 30.0
    #: Messages queued per peer at most; when full, the oldest is dropped.
    stream_queue_size: int = 1024
    #: How long a peer that did not confirm a stream gets the seed framing before a re-probe.
    reprobe_interval: float = 60.0
    #: First delay before re-opening a broken stream with messages queued; doubles per try.
    reconnect_delay: float = 0.05
    #: Largest such delay; a failed attempt after it gives the queued messages up.
    reconnect_max_delay: float = 2.0
    #: Mutual TLS on every connection (except plaintext peers); None: plain TCP.
    tls: TLSOptions | None = None
    #: Capability bits (0..255) offered in version 2 stream hellos and confirmations
    #: (``CAP_MEMBERSHIP``); None offers version 1 hellos, as before capabilities existed.
    capabilities: int | None = None

    def __post_init__(self) -> None:
        for name in _SECONDS:
            _check_seconds(name, getattr(self, name))
        for name in _COUNTS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidOptionError(f"{name} must be an int >= 1, got {value!r}")
        if self.tls is not None and not isinstance(self.tls, TLSOptions):
            raise InvalidOptionError(f"tls must be a TLSOptions or None, got {self.tls!r}")
        caps = self.capabilities
        if caps is not None and (type(caps) is not int or not 0 <= caps <= 0xFF):
            raise InvalidOptionError(f"capabilities must be None or 0..255, got {caps!r}")
        if self.wire not in _WIRE_MODES:
            raise InvalidOptionError(f"wire must be 'auto' or 'seed', got {self.wire!r}")
        if self.reconnect_max_delay < self.reconnect_delay:
            raise InvalidOptionError(
                f"reconnect_max_delay ({self.reconnect_max_delay!r}) must be >= "
                f"reconnect_delay ({self.reconnect_delay!r})"
            )


@dataclass(frozen=True, slots=True)
class TransportStats:
    """A snapshot of a :class:`TCPTransport`'s counters (since creation) and gauges (now)."""

    #: Messages written to outbound streams.
    stream_sent: int = 0
    #: Messages sent with the seed framing, one connection each.
    seed_sent: int = 0
    #: Messages received on inbound streams, and as seed frames.
    stream_received: int = 0
    seed_received: int = 0
    #: Oldest queued messages dropped because a peer's queue was full.
    queue_drops: int = 0
    #: Queued messages given up: the peer stayed unreachable while re-opening, or close().
    undelivered: int = 0
    #: Outbound stream handshakes confirmed.
    streams_opened: int = 0
    #: Attempts to re-open a broken stream that still had messages queued.
    reconnects: int = 0
    #: Handshakes a peer did not confirm (it then gets the seed framing for a while).
    seed_fallbacks: int = 0
    #: Inbound connections dropped for a bad frame or handshake, or a timeout.
    inbound_dropped: int = 0
    #: Idle inbound streams closed to make room when all connection slots were taken.
    streams_evicted: int = 0
    #: Open streams now, outbound and inbound.
    open_streams_out: int = 0
    open_streams_in: int = 0
    #: Messages waiting in outbound queues now.
    queued: int = 0
    #: Inbound connections that had sent nothing, closed to make room for a waiting one.
    silent_evicted: int = 0
    #: Inbound connections refused in the TLS handshake (not TLS, no certificate, one from
    #: another CA or expired): none of their bytes reached a decoder.
    tls_refused: int = 0
    #: Outbound connections whose TLS handshake failed (the peer's certificate, or ours).
    tls_dial_failures: int = 0


class Counters:
    """The mutable counters behind :class:`TransportStats`, shared by the transport's parts."""

    __slots__ = (
        "evicted",
        "inbound_dropped",
        "open_out",
        "queue_drops",
        "reconnects",
        "seed_fallbacks",
        "seed_received",
        "seed_sent",
        "silent_evicted",
        "stream_received",
        "stream_sent",
        "streams_opened",
        "tls_dial_failures",
        "tls_refused",
        "undelivered",
    )

    def __init__(self) -> None:
        self.stream_sent = 0
        self.seed_sent = 0
        self.stream_received = 0
        self.seed_received = 0
        self.queue_drops = 0
        self.undelivered = 0
        self.streams_opened = 0
        self.reconnects = 0
        self.seed_fallbacks = 0
        self.inbound_dropped = 0
        self.evicted = 0
        self.silent_evicted = 0
        self.tls_refused = 0
        self.tls_dial_failures = 0
        self.open_out = 0

    def snapshot(self, *, open_in: int, queued: int) -> TransportStats:
        return TransportStats(
            stream_sent=self.stream_sent,
            seed_sent=self.seed_sent,
            stream_received=self.stream_received,
            seed_received=self.seed_received,
            queue_drops=self.queue_drops,
            undelivered=self.undelivered,
            streams_opened=self.streams_opened,
            reconnects=self.reconnects,
            seed_fallbacks=self.seed_fallbacks,
            inbound_dropped=self.inbound_dropped,
            streams_evicted=self.evicted,
            open_streams_out=self.open_out,
            open_streams_in=open_in,
            queued=queued,
            silent_evicted=self.silent_evicted,
            tls_refused=self.tls_refused,
            tls_dial_failures=self.tls_dial_failures,
        )

"""TCP transport: the seed's framing for everyone, a negotiated persistent stream between us.

Two wires, chosen per peer (:mod:`dcounter_protocol._framing`, :mod:`dcounter_protocol._stream`):

* **seed framing**, the reference's wire: one connection per message, carrying
  ``[len(addr)][addr][payload]``; the sender closes after writing and the receiver reads until
  EOF (not one 16 KiB read like the reference, so frames up to the maximum size arrive whole).
* **stream mode**: one persistent connection per peer, opened with a hello (``00 "DCS"``,
  version, the sender's address once) that the listener confirms, then length-prefixed frames
  from the dialer to the listener.

Sending, ``TCPOptions.wire``:

* ``"seed"``: every message with the seed framing (dial, write, close).
* ``"auto"`` (default): the first send to a peer dials it and offers a stream. If the peer
  confirms within ``handshake_timeout``, that send and every later one are queued on the
  stream and return at once: frames queued during one event-loop pass go out in one write.
  If it has not confirmed by then, that message goes out with the seed framing (and so do
  others meanwhile) while the confirmation is still awaited up to ``read_timeout``; a late
  one still opens the stream. A peer that closes or answers anything else (the Go reference
  reads one frame and closes; a seed-only listener rejects the 00 byte) is remembered as
  seed-only and gets the seed framing until ``reprobe_interval`` has passed; the next send
  then offers a stream again. A reset or no confirmation at all may only mean a loaded peer,
  so that peer is probed again after ``reconnect_max_delay``.

  Errors: a send that has to open a connection waits for it (dial, then up to
  ``handshake_timeout``) and raises ConnectError or TransportTimeoutError when the peer cannot
  be reached, exactly like the seed framing; sends to a peer with an open stream, or one
  being re-opened, only queue: they never block and never raise (except after close()).
  :meth:`TCPTransport.send_nowait` does the same without a coroutine, and says when a real
  send is needed. A peer's queue holds at most ``stream_queue_size`` messages: when full the
  oldest is dropped and counted (:meth:`TCPTransport.stats`). A payload above
  ``max_message_size`` takes the seed path, so a receiver with the same limit rejects that
  one message and not a whole stream; an empty one raises EncodeError in both modes.

  Streams: a stream that breaks while messages are still queued is re-opened with backoff
  (``reconnect_delay`` doubling up to ``reconnect_max_delay``; after a failed attempt at the
  maximum delay the queued messages are dropped and counted, and the next send dials afresh).
  One that breaks with nothing queued is forgotten, and the next send dials again, so a peer
  that restarted is reached at once. A stream whose writes make no progress for
  ``write_timeout`` (the peer stopped reading) is aborted and re-opened; one idle for
  ``stream_idle_timeout`` is closed. As with any TCP stream, messages written just before a
  peer dies can be lost without an error; gossip repairs that.

Receiving (either setting; ``"seed"`` only changes how we send, so mixed clusters work): the
first byte of a connection decides. ``00`` starts a stream: the hello is checked (magic,
version, address), confirmed, and each frame is passed to the handler in order; anything
else is a seed frame, read to EOF as the reference's senders expect. Limits apply to both:

* **Connection cap** (``max_connections``): a slot is held from accept until the connection
  is done: for a seed frame until its handler returned, for a stream until it closes. When
  all slots are taken the transport stops accepting; further connections wait in the
  kernel's listen queue (``backlog``), and once that is full the kernel ignores new attempts,
  so senders hit their dial timeout. Nothing grows without bound. So that persistent streams
  cannot starve newcomers (more peers streaming to a node than it has slots), while a
  connection waits and every slot is taken, the least recently active idle stream is closed
  to make room (its dialer re-dials on its next send; counted as ``streams_evicted``).
* **First byte** (``first_byte_timeout``, when shorter than ``read_timeout``): a connection
  that has sent nothing by then is closed. When all slots are taken and a connection waits,
  the oldest connection that has sent nothing yet is closed first to make room (counted as
  ``silent_evicted``), before any idle stream.
* **Read timeout** (``read_timeout``): a seed frame must be complete (EOF) within it from
  accept; a stream's hello likewise, and each stream frame within it from its first byte. A
  stream with no frame in progress may stay idle for ``stream_idle_timeout + read_timeout``
  (longer than the dialer's own idle close, so normally the dialer closes first).
* **Size**: each frame is rejected as soon as its header shows it exceeds
  ``max_message_size`` (plus the address for a seed frame), without buffering more.

A peer that stalls, sends garbage, a bad hello, a huge or zero length or half a frame is
dropped with one warning log line; it only ever holds its own slot. A connection closed
without any data (a port probe) is logged at debug level. Handler exceptions are logged and
never reach the sender. A stream's handler calls run one at a time in its connection's task;
while they lag the transport stops reading that stream (TCP backpressure), so a slow handler
makes the dialer's queue drop its oldest messages instead of growing memory.

TLS (``TCPOptions.tls``, :class:`TLSOptions`): every connection in and out is mutual TLS,
both wires inside it, except to and from plaintext peers (``_tls`` tells how inbound
plaintext is recognised). A connection whose handshake fails is dropped before a byte of it
is decoded, and counted (``tls_refused`` inbound, ``tls_dial_failures`` outbound, which
raise ConnectError). :meth:`TCPTransport.set_tls` swaps the contexts for new connections.

I/O: every connection is a byte stream from one backend (``_bytestream``: plain TCP, or
``_tls``): the seed framing reads and writes it (send all, receive some, close); a stream
connection is handed to an asyncio protocol by the same backend (fast on asyncio and
uvloop, ``benchmarks/bench_transport.py``). OS errors become this package's errors in one
place (``_boundary.os_errors``). Timeouts of short operations use one small reaper per kind
(dial, write, read, first byte) instead of an ``asyncio.timeout()`` per operation.

:meth:`TCPTransport.close` stops accepting, cancels connections being read or handled, makes
sends in progress fail with :class:`~dcounter_protocol._errors.TransportClosedError`, writes
what is queued and gives outbound streams up to one second to hand it to the kernel, then
leaves no task or socket behind.

Where things are: ``_options`` (TCPOptions, TransportStats, counters, limits),
``_deadlines`` (reapers), ``_boundary`` (OS errors to ours), ``_bytestream`` (the byte
stream, the backend interface and plain backend, the dialer), ``_tlsoptions`` and ``_tls``
(mutual TLS), ``_policy`` (the pure per-peer wire decision and backoff),
``_outstream`` and ``_outbound`` (sending), ``_instream`` and ``_inbound`` (receiving),
``_transport`` (the :class:`TCPTransport` facade).
"""

from __future__ import annotations

from dcounter_protocol._tcp._inbound import received_capabilities as received_capabilities
from dcounter_protocol._tcp._options import TCPOptions as TCPOptions
from dcounter_protocol._tcp._options import TransportStats as TransportStats
from dcounter_protocol._tcp._options import WireMode as WireMode
from dcounter_protocol._tcp._tlsoptions import TLSOptions as TLSOptions
from dcounter_protocol._tcp._transport import TCPTransport as TCPTransport

__all__ = [
    "TCPOptions",
    "TCPTransport",
    "TLSOptions",
    "TransportStats",
    "WireMode",
    "received_capabilities",
]

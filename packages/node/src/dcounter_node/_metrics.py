"""Prometheus metrics of a node and its HTTP service, read when scraped.

Nothing is updated on the hot path through prometheus-client: a custom collector reads the
node's :class:`~dcounter_node._stats.NodeStats` snapshot and the service's own counters at
scrape time. Each application gets its own :class:`CollectorRegistry`, so several nodes in
one process (tests, benchmarks) never share series.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from dcounter_node._committed_view import shown_state
from dcounter_protocol._tcp import TransportStats

if TYPE_CHECKING:
    from collections.abc import Iterator

    from prometheus_client.core import Metric

    from dcounter_node._node import Node
    from dcounter_node._stats import NodeStatsSnapshot
    from dcounter_node._storage import StorageHealth

__all__ = ["NodeCollector", "ServiceStats", "create_registry"]

_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class ServiceStats:
    """What the HTTP service counts itself: accepted operations, replays, responses.

    Owned by the event loop that serves the API (no lock: updates and scrapes both run
    there).
    """

    def __init__(self) -> None:
        #: Operation ("increment"/"decrement") -> accepted requests (replays not included).
        self.operations: Counter[str] = Counter()
        #: Operation -> sum of the amounts of those requests.
        self.amounts: Counter[str] = Counter()
        #: Requests answered from the Idempotency-Key memory without counting again.
        self.idempotent_replays = 0
        #: (method, route, status) -> responses.
        self.responses: Counter[tuple[str, str, int]] = Counter()

    def record_operation(self, op: str, amount: int) -> None:
        """Count one accepted increment or decrement."""
        self.operations[op] += 1
        self.amounts[op] += amount

    def record_response(self, method: str, route: str, status: int) -> None:
        """Count one HTTP response (unknown methods are folded into "OTHER")."""
        if method not in _KNOWN_METHODS:
            method = "OTHER"
        self.responses[method, route, status] += 1


class NodeCollector(Collector):
    """Yields the ``dcounter_*`` series for one node and its service stats.

    With ``storage``, the counts shown are the committed ones while commits fail (as in
    ``GET /counter``), and ``dcounter_storage_failing`` says so.
    """

    def __init__(
        self, node: Node, service: ServiceStats, storage: StorageHealth | None = None
    ) -> None:
        self._node = node
        self._service = service
        self._storage = storage

    def collect(self) -> Iterator[Metric]:
        """Read the node and service counters now."""
        yield from self._counter_metrics()
        yield from _operation_metrics(self._service)
        stats = self._node.stats.snapshot()
        yield from _gossip_metrics(stats)
        yield from _peer_metrics(self._node, stats)
        yield from _response_metrics(self._service)
        yield from _transport_metrics(self._node)

    def _counter_metrics(self) -> Iterator[Metric]:
        """Storage health, who this node is, and its counter."""
        node = self._node
        state = shown_state(self._storage, node.state)
        if self._storage is not None:
            yield GaugeMetricFamily(
                "dcounter_storage_failing",
                "1 while commits to the data directory fail (being retried; the counts shown"
                " are then the committed ones), else 0.",
                value=int(self._storage.problem is not None),
            )
        info = GaugeMetricFamily(
            "dcounter_node_info",
            "This node's gossip address and replica id (always 1).",
            labels=["address", "replica"],
        )
        info.add_metric([node.address, node.replica_id], 1)
        yield info
        yield GaugeMetricFamily(
            "dcounter_value",
            "Current counter value seen by this node, as a float: exact only while its"
            " magnitude is at most 2**53; GET /counter/value answers the exact integer.",
            value=state.value,
        )
        yield GaugeMetricFamily(
            "dcounter_replicas",
            "Replicas with a non-zero count in this node's state.",
            value=len(state.replicas()),
        )


def _operation_metrics(service: ServiceStats) -> Iterator[Metric]:
    """What the API accepted: increments and decrements, their amounts, replays."""
    operations = CounterMetricFamily(
        "dcounter_operations",
        "Increments and decrements accepted through the API (retries not counted).",
        labels=["op"],
    )
    amounts = CounterMetricFamily(
        "dcounter_operation_amount",
        "Sum of the amounts of accepted increments and decrements.",
        labels=["op"],
    )
    for op in ("increment", "decrement"):
        operations.add_metric([op], service.operations[op])
        amounts.add_metric([op], service.amounts[op])
    yield operations
    yield amounts
    yield CounterMetricFamily(
        "dcounter_idempotent_replays",
        "Requests answered again from their Idempotency-Key without counting.",
        value=service.idempotent_replays,
    )


def _gossip_metrics(stats: NodeStatsSnapshot) -> Iterator[Metric]:
    """Gossip messages and bytes by type and direction, merges, drops and refusals."""
    messages = CounterMetricFamily(
        "dcounter_gossip_messages",
        "Gossip messages by type and direction.",
        labels=["type", "direction"],
    )
    sizes = CounterMetricFamily(
        "dcounter_gossip_bytes",
        "Gossip message payload bytes by type and direction.",
        labels=["type", "direction"],
    )
    for direction, counts, nbytes in (
        ("sent", stats.messages_sent, stats.bytes_sent),
        ("received", stats.messages_received, stats.bytes_received),
    ):
        for message_type, count in counts.items():
            label = [message_type.name.lower(), direction]
            messages.add_metric(label, count)
            sizes.add_metric(label, nbytes.get(message_type, 0))
    yield messages
    yield sizes
    yield CounterMetricFamily(
        "dcounter_merges", "Pushes merged into this node's state.", value=stats.merges
    )
    yield CounterMetricFamily(
        "dcounter_merges_changed",
        "Merged pushes that changed this node's state.",
        value=stats.merges_changed,
    )
    drops = CounterMetricFamily(
        "dcounter_drops",
        "Gossip messages dropped on full queues, by direction.",
        labels=["direction"],
    )
    drops.add_metric(["inbound"], stats.inbound_drops)
    drops.add_metric(["outbound"], stats.outbound_drops)
    yield drops
    yield CounterMetricFamily(
        "dcounter_decode_errors",
        "Received gossip messages that were invalid and dropped.",
        value=stats.decode_errors,
    )
    yield CounterMetricFamily(
        "dcounter_send_failures",
        "Gossip sends the transport could not deliver.",
        value=stats.send_failures,
    )
    yield CounterMetricFamily(
        "dcounter_pushes_rejected",
        "Received pushes rejected whole for passing a limit (max replicas, id length).",
        value=stats.pushes_rejected,
    )
    yield CounterMetricFamily(
        "dcounter_forged_pushes",
        "Received pushes claiming more for this node's own replica than it counted.",
        value=stats.forged_refused,
    )
    yield CounterMetricFamily(
        "dcounter_unknown_senders",
        "Replies withheld because the asking address is not a known peer.",
        value=stats.unknown_senders,
    )


def _peer_metrics(node: Node, stats: NodeStatsSnapshot) -> Iterator[Metric]:
    """Known peers and how long since each was last heard from."""
    peers = node.peers.peers()
    yield GaugeMetricFamily("dcounter_peers", "Known peers.", value=len(peers))
    contact = GaugeMetricFamily(
        "dcounter_peer_last_contact_age_seconds",
        "Seconds since the last message exchanged with each known peer.",
        labels=["peer"],
    )
    now = time.time()
    for peer in peers:
        seen = stats.last_contact.get(peer)
        if seen is not None:
            contact.add_metric([peer], max(0.0, now - seen))
    yield contact


def _response_metrics(service: ServiceStats) -> Iterator[Metric]:
    """HTTP API responses by method, route and status."""
    responses = CounterMetricFamily(
        "dcounter_http_responses",
        "HTTP API responses by method, route and status.",
        labels=["method", "route", "status"],
    )
    for (method, route, status), count in sorted(service.responses.items()):
        responses.add_metric([method, route, str(status)], count)
    yield responses


def _transport_metrics(node: Node) -> Iterator[Metric]:
    """The ``dcounter_transport_*`` series, when the transport keeps :class:`TransportStats`."""
    read = getattr(node.transport, "stats", None)
    if not callable(read):
        return
    stats = read()
    if not isinstance(stats, TransportStats):
        return
    sent = CounterMetricFamily(
        "dcounter_transport_messages_sent", "Messages sent, by wire.", labels=["wire"]
    )
    sent.add_metric(["stream"], stats.stream_sent)
    sent.add_metric(["seed"], stats.seed_sent)
    yield sent
    received = CounterMetricFamily(
        "dcounter_transport_messages_received", "Messages received, by wire.", labels=["wire"]
    )
    received.add_metric(["stream"], stats.stream_received)
    received.add_metric(["seed"], stats.seed_received)
    yield received
    for name, value, text in (
        ("queue_drops", stats.queue_drops, "Oldest queued messages dropped on a full queue."),
        ("undelivered", stats.undelivered, "Queued messages given up (peer unreachable)."),
        ("streams_opened", stats.streams_opened, "Outbound stream handshakes confirmed."),
        ("reconnects", stats.reconnects, "Attempts to re-open a broken stream with a queue."),
        ("seed_fallbacks", stats.seed_fallbacks, "Stream offers a peer did not confirm."),
        ("inbound_dropped", stats.inbound_dropped, "Inbound connections dropped as bad."),
        ("streams_evicted", stats.streams_evicted, "Idle inbound streams closed for room."),
        ("tls_refused", stats.tls_refused, "Inbound connections refused in the TLS handshake."),
        ("tls_dial_failures", stats.tls_dial_failures, "Outbound TLS handshakes that failed."),
    ):
        yield CounterMetricFamily(f"dcounter_transport_{name}", text, value=value)
    streams = GaugeMetricFamily(
        "dcounter_transport_open_streams", "Streams open now, by direction.", labels=["direction"]
    )
    streams.add_metric(["outbound"], stats.open_streams_out)
    streams.add_metric(["inbound"], stats.open_streams_in)
    yield streams
    yield GaugeMetricFamily(
        "dcounter_transport_queued", "Messages waiting in outbound queues now.", value=stats.queued
    )


def create_registry(
    node: Node, service: ServiceStats, storage: StorageHealth | None = None
) -> CollectorRegistry:
    """A fresh registry holding only this node's collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(node, service, storage))
    return registry

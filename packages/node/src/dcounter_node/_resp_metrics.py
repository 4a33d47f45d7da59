"""The Redis-protocol listener's counts on ``/metrics`` (the ones ``INFO`` shows too)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from collections.abc import Iterator

    from prometheus_client.core import Metric

    from dcounter_node._resp_shared import RespShared

__all__ = ["RespCollector"]


class RespCollector(Collector):
    """``dcounter_resp_*``: clients connected, connections, commands, refusals."""

    def __init__(self, shared: RespShared) -> None:
        self._shared = shared

    def collect(self) -> Iterator[Metric]:
        shared = self._shared
        yield GaugeMetricFamily(
            "dcounter_resp_clients", "Redis-protocol clients connected now.", value=shared.connected
        )
        yield CounterMetricFamily(
            "dcounter_resp_connections",
            "Redis-protocol connections accepted.",
            value=shared.connections_received,
        )
        yield CounterMetricFamily(
            "dcounter_resp_rejected_connections",
            "Redis-protocol connections refused: --resp-max-connections were open.",
            value=shared.rejected_connections,
        )
        yield CounterMetricFamily(
            "dcounter_resp_commands",
            "Redis-protocol commands run (errors included).",
            value=shared.commands_processed,
        )

"""``dcounter-cluster``: a static-config cluster launcher (the seed's main.go, grown up)."""

from __future__ import annotations

from dcounter_tools.cluster.backend import ClusterBackend as ClusterBackend
from dcounter_tools.cluster.backend import NodeInfo as NodeInfo
from dcounter_tools.cluster.backend import ProcessBackend as ProcessBackend
from dcounter_tools.cluster.inprocess import InProcessBackend as InProcessBackend
from dcounter_tools.cluster.report import RunReport as RunReport
from dcounter_tools.cluster.runner import RunOptions as RunOptions
from dcounter_tools.cluster.runner import run_cluster as run_cluster
from dcounter_tools.cluster.spec import ClusterSpec as ClusterSpec
from dcounter_tools.cluster.spec import NodeSpec as NodeSpec
from dcounter_tools.cluster.spec import build_spec as build_spec

__all__ = [
    "ClusterBackend",
    "ClusterSpec",
    "InProcessBackend",
    "NodeInfo",
    "NodeSpec",
    "ProcessBackend",
    "RunOptions",
    "RunReport",
    "build_spec",
    "run_cluster",
]

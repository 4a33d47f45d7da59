"""The cluster to launch: each node's name, addresses and ``dcounter-node`` arguments.

A cluster comes from flags (``--nodes N``, ``--host``, ``--base-port``) or from the TOML file
``dcounter-node --config`` reads (parsed with :func:`dcounter_node._settings.load_config_file`,
so both tools accept exactly the same files):

* a file with ``[[nodes]]`` entries gives one node per entry, run as
  ``dcounter-node --config FILE --node NAME``; its addresses and peers are the file's;
* a file with only top-level settings gives ``--nodes N`` nodes that all read it, with
  addresses from the flags.

Port 0 (the default without ``--base-port``) lets every node pick free ports; they are read
from its ready line and the mesh is wired through ``POST /peers`` once all are up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dcounter_node._errors import ConfigError
from dcounter_node._settings import load_config_file
from dcounter_tools._address import join_address, split_address
from dcounter_tools.errors import UsageError

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "CLUSTER_WIRES",
    "DEFAULT_HOST",
    "DEFAULT_NODES",
    "DEFAULT_SYNC_INTERVAL",
    "ClusterSpec",
    "NodeSpec",
    "build_spec",
    "node_wire",
]

DEFAULT_NODES = 10
DEFAULT_HOST = "127.0.0.1"
#: The seed demo's sync interval (its main.go uses 500 ms).
DEFAULT_SYNC_INTERVAL = 0.5
#: Node log level used unless a flag or the config file says otherwise.
DEFAULT_NODE_LOG_LEVEL = "warning"
#: ``--wire`` choices: a dcounter-node wire for every node, or "mixed" (seed for odd indexes).
CLUSTER_WIRES = ("auto", "seed", "mixed")


def node_wire(wire: str, index: int) -> str:
    """The dcounter-node ``--wire`` of node ``index`` for the cluster's ``--wire``."""
    if wire == "mixed":
        return "seed" if index % 2 else "auto"
    return wire


def _wire_args(wire: str | None, index: int) -> tuple[str, ...]:
    return () if wire is None else ("--wire", node_wire(wire, index))


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """One node: its name, configured addresses (port 0 = chosen at start) and arguments."""

    name: str
    listen: str
    http: str
    #: ``dcounter-node`` arguments other than --listen/--http/--peers.
    args: tuple[str, ...]
    #: Peers passed on the command line at start (addresses known beforehand).
    start_peers: tuple[str, ...] = ()
    #: Whether this node's gossip address is only known once it runs (listen port 0): it is
    #: then meshed with every other node through the HTTP API after start.
    wire_after_start: bool = False
    #: Whether --listen/--http come from the config file entry (not passed as flags).
    addresses_from_file: bool = False

    def argv(
        self,
        *,
        listen: str | None = None,
        http: str | None = None,
        peers: tuple[str, ...] | None = None,
        data_dir: Path | None = None,
    ) -> list[str]:
        """``dcounter-node`` arguments, with actual addresses (on restart) when given.

        Without ``data_dir`` the node keeps no durable state (``--in-memory``): a launched
        cluster starts from zero every time, whatever a config file or the node's default
        data directory holds, so the expected value is exactly the sum of this run's writes.
        """
        argv = list(self.args)
        argv += ["--in-memory"] if data_dir is None else ["--data-dir", str(data_dir)]
        if listen is not None or not self.addresses_from_file:
            argv += ["--listen", listen or self.listen]
        if http is not None or not self.addresses_from_file:
            argv += ["--http", http or self.http]
        chosen = self.start_peers if peers is None else peers
        if chosen:
            argv += ["--peers", ",".join(chosen)]
        return argv


@dataclass(frozen=True, slots=True)
class ClusterSpec:
    """Every node of the cluster, and where the description came from."""

    nodes: tuple[NodeSpec, ...]
    source: str
    sync_interval: float | None = None
    notes: tuple[str, ...] = field(default=())

    def __len__(self) -> int:
        return len(self.nodes)


def _flag_addresses(count: int, host: str, base_port: int) -> list[tuple[str, str]]:
    if base_port == 0:
        return [(join_address(host, 0), join_address(host, 0)) for _ in range(count)]
    last = base_port + 2 * count - 1
    if not base_port >= 1 or last > 65535:
        raise UsageError(
            f"--base-port {base_port} with {count} nodes needs ports {base_port}..{last}"
            " (gossip ports first, then HTTP ports); they must be within 1..65535"
        )
    return [
        (join_address(host, base_port + i), join_address(host, base_port + count + i))
        for i in range(count)
    ]


def _common_args(
    sync_interval: float | None, max_sync_peers: int | None, log_level: str | None
) -> tuple[str, ...]:
    args: list[str] = []
    if sync_interval is not None:
        args += ["--sync-interval", repr(float(sync_interval))]
    if max_sync_peers is not None:
        args += ["--max-sync-peers", str(max_sync_peers)]
    if log_level is not None:
        args += ["--log-level", log_level]
    return tuple(args)


def build_spec(
    *,
    nodes: int | None = None,
    host: str | None = None,
    base_port: int | None = None,
    config: Path | None = None,
    sync_interval: float | None = None,
    max_sync_peers: int | None = None,
    node_log_level: str | None = None,
    wire: str | None = None,
) -> ClusterSpec:
    """The cluster described by the launcher's flags (and config file, if any).

    ``wire`` (one of :data:`CLUSTER_WIRES`) adds ``--wire`` to every node's arguments; None
    leaves the nodes' own setting. Raises :class:`UsageError` for impossible combinations or
    a bad config file.
    """
    if wire is not None and wire not in CLUSTER_WIRES:
        raise UsageError(f"--wire must be one of {', '.join(CLUSTER_WIRES)}, got {wire!r}")
    if nodes is not None and nodes < 1:
        raise UsageError("--nodes must be at least 1")
    if sync_interval is not None and not sync_interval > 0:
        raise UsageError("--sync-interval must be positive")
    if max_sync_peers is not None and max_sync_peers < 1:
        raise UsageError("--max-sync-peers must be at least 1")
    if base_port is not None and not 0 <= base_port <= 65535:
        raise UsageError("--base-port must be from 0 to 65535")
    if host is not None:
        try:
            split_address(join_address(host, 0))
        except UsageError:
            raise UsageError(f"bad --host {host!r}") from None

    if config is None:
        count = DEFAULT_NODES if nodes is None else nodes
        chosen = DEFAULT_SYNC_INTERVAL if sync_interval is None else sync_interval
        args = _common_args(chosen, max_sync_peers, node_log_level or DEFAULT_NODE_LOG_LEVEL)
        return _generated(count, host or DEFAULT_HOST, base_port or 0, args, "flags", chosen, wire)

    try:
        cluster_file = load_config_file(config)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    file_args = ("--config", str(config))
    common = _common_args(sync_interval, max_sync_peers, node_log_level)
    source = f"config file {config}"
    if not cluster_file.nodes:
        count = DEFAULT_NODES if nodes is None else nodes
        if node_log_level is None and "log_level" not in cluster_file.common:
            common += ("--log-level", DEFAULT_NODE_LOG_LEVEL)
        from_file = cluster_file.common.get("sync_interval")
        interval = sync_interval or (float(from_file) if from_file is not None else None)
        return _generated(
            count,
            host or DEFAULT_HOST,
            base_port or 0,
            file_args + common,
            source,
            interval,
            wire,
        )

    entries = cluster_file.nodes
    if nodes is not None and nodes != len(entries):
        raise UsageError(
            f"--nodes {nodes} conflicts with {config}, which lists {len(entries)} [[nodes]]"
        )
    if host is not None or base_port is not None:
        raise UsageError(
            f"{config} lists [[nodes]] with their own addresses; drop --host/--base-port"
        )
    specs = []
    for index, entry in enumerate(entries):
        dynamic = split_address(entry.listen)[1] == 0
        specs.append(
            NodeSpec(
                name=entry.name,
                listen=entry.listen,
                http=entry.http,
                args=(*file_args, "--node", entry.name, *common, *_wire_args(wire, index)),
                wire_after_start=dynamic,
                addresses_from_file=True,
            )
        )
    intervals = {entry.sync_interval for entry in entries}
    shared = intervals.pop() if len(intervals) == 1 else None
    return ClusterSpec(tuple(specs), source, sync_interval or shared)


def _generated(
    count: int,
    host: str,
    base_port: int,
    args: tuple[str, ...],
    source: str,
    sync_interval: float | None,
    wire: str | None = None,
) -> ClusterSpec:
    addresses = _flag_addresses(count, host, base_port)
    fixed = base_port != 0
    specs = []
    for i, (listen, http) in enumerate(addresses):
        peers = tuple(addresses[j][0] for j in range(count) if j != i) if fixed else ()
        specs.append(
            NodeSpec(
                name=f"node-{i}",
                listen=listen,
                http=http,
                args=(*args, *_wire_args(wire, i)),
                start_peers=peers,
                wire_after_start=not fixed,
            )
        )
    return ClusterSpec(tuple(specs), source, sync_interval)

"""Settings of a ``dcounter-node`` process: the TOML config file format and its flags.

One format serves ``dcounter-node --config`` and ``dcounter-cluster``. Top-level keys apply
to every node; an optional ``[[nodes]]`` array of tables holds one entry per node whose keys
override the top-level ones::

    sync_interval = 0.5

    [[nodes]]
    name = "a"
    listen = "127.0.0.1:7001"
    http = "127.0.0.1:8001"

    [[nodes]]
    name = "b"
    listen = "127.0.0.1:7002"
    http = "127.0.0.1:8002"

An entry without ``peers`` (and no top-level ``peers``) gossips with every other entry's
``listen`` address, except addresses with port 0, which cannot be dialled; likewise an
entry without ``peer_http`` knows every other entry's ``http`` address (for the dashboard).

Every known key is one row of :data:`SETTINGS` (:mod:`dcounter_node._settings_table`;
the value parsers are in :mod:`dcounter_node._setting_values`), which drives the file parser, the
command-line flags and :meth:`NodeSettings.to_argv`; adding a setting means adding a field to
:class:`NodeSettings` and a row to that table.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dcounter_node._config import NodeConfig
from dcounter_node._errors import ConfigError
from dcounter_node._http_limits import HTTPLimits
from dcounter_node._membership_dns import DEFAULT_DNS_INTERVAL
from dcounter_node._resp_limits import RespLimits
from dcounter_node._setting_values import (
    DEFAULT_HTTP,
    DEFAULT_LISTEN,
    LOG_FORMATS,
    LOG_LEVELS,
    LOOPS,
    WIRE_MODES,
    SettingSpec,
    format_address,
    parse_address,
)
from dcounter_node._settings_table import SETTINGS

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "DEFAULT_HTTP",
    "DEFAULT_LISTEN",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "LOOPS",
    "SETTINGS",
    "WIRE_MODES",
    "ClusterFile",
    "NodeSettings",
    "SettingSpec",
    "format_address",
    "load_config_file",
    "parse_address",
    "parse_config",
]

_NAME = re.compile(r"\S+")

_NODE_DEFAULTS = NodeConfig()
_HTTP_DEFAULTS = HTTPLimits()
_RESP_DEFAULTS = RespLimits()

_SPECS = {spec.key: spec for spec in SETTINGS}


@dataclass(frozen=True, slots=True)
class NodeSettings:
    """Everything one ``dcounter-node`` process needs, validated (see :data:`SETTINGS`)."""

    #: The entry's name in a cluster file ("" when the settings come from no [[nodes]] entry).
    name: str = ""
    listen: str = DEFAULT_LISTEN
    http: str = DEFAULT_HTTP
    peers: tuple[str, ...] = ()
    resp: str | None = None
    resp_max_connections: int = _RESP_DEFAULTS.max_connections
    resp_idle_timeout: float = _RESP_DEFAULTS.idle_timeout
    peer_http: tuple[tuple[str, str], ...] = ()
    sync_interval: float = _NODE_DEFAULTS.sync_interval
    full_sync_interval: float | None = _NODE_DEFAULTS.full_sync_interval
    max_sync_peers: int = _NODE_DEFAULTS.max_sync_peers
    max_replicas: int = _NODE_DEFAULTS.max_replicas
    max_keys: int = _NODE_DEFAULTS.max_keys
    max_key_length: int = _NODE_DEFAULTS.max_key_length
    delta_gossip: bool = _NODE_DEFAULTS.delta_gossip
    log_level: str = "info"
    log_format: str = "text"
    data_dir: str | None = None
    in_memory: bool = False
    durability: str = "batched"
    idempotency_ttl: float = 24 * 3600.0
    idempotency_keys: int = 100_000
    wire: str = "auto"
    loop: str = "asyncio"
    http_max_connections: int = _HTTP_DEFAULTS.max_connections
    http_header_timeout: float = _HTTP_DEFAULTS.header_timeout
    http_idle_timeout: float = _HTTP_DEFAULTS.idle_timeout
    allowed_origins: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None
    plaintext_peers: tuple[str, ...] = ()
    http_tls_cert: str | None = None
    http_tls_key: str | None = None
    http_tls_ca: str | None = None
    api_tokens: str | None = None
    require_auth: bool = False
    advertise: str | None = None
    join: tuple[str, ...] = ()
    join_dns: str | None = None
    join_dns_interval: float = DEFAULT_DNS_INTERVAL
    probe_interval: float = 1.0
    suspect_timeout: float = 5.0
    max_members: int = 1024
    forget_after: float = 86400.0
    prune_after: float = 3600.0

    def updated(self, values: Mapping[str, object]) -> NodeSettings:
        """A copy with ``values`` (setting key -> value) checked and applied."""
        return dataclasses.replace(self, **_checked(values, where=""))

    def node_config(self) -> NodeConfig:
        """The gossip part as a :class:`NodeConfig` (raises ConfigError if inconsistent)."""
        return NodeConfig(
            sync_interval=self.sync_interval,
            full_sync_interval=self.full_sync_interval,
            max_sync_peers=self.max_sync_peers,
            max_replicas=self.max_replicas,
            max_keys=self.max_keys,
            max_key_length=self.max_key_length,
            delta_gossip=self.delta_gossip,
        )

    def http_limits(self) -> HTTPLimits:
        """The HTTP connection limits as :class:`HTTPLimits`."""
        return HTTPLimits(
            max_connections=self.http_max_connections,
            header_timeout=self.http_header_timeout,
            idle_timeout=self.http_idle_timeout,
        )

    def resp_limits(self) -> RespLimits:
        """The Redis-protocol connection limits as :class:`RespLimits`."""
        return RespLimits(
            max_connections=self.resp_max_connections, idle_timeout=self.resp_idle_timeout
        )

    def tls_files(self) -> tuple[str, str, str] | None:
        """(cert, key, CA) for gossip over mutual TLS, None without; ConfigError unless all
        three are set or none (and plaintext peers only make sense with TLS)."""
        files = {"tls_cert": self.tls_cert, "tls_key": self.tls_key, "tls_ca": self.tls_ca}
        missing = [key for key, value in files.items() if value is None]
        if len(missing) == len(files):
            if self.plaintext_peers:
                raise ConfigError(
                    "plaintext_peers (--plaintext-peers) needs gossip over TLS (--tls-cert,"
                    " --tls-key, --tls-ca): without TLS every peer is plain already"
                )
            return None
        if missing:
            given = ", ".join("--" + key.replace("_", "-") for key in files if key not in missing)
            needed = ", ".join("--" + key.replace("_", "-") for key in missing)
            raise ConfigError(
                f"gossip over TLS needs --tls-cert, --tls-key and --tls-ca together: {given}"
                f" given without {needed}"
            )
        return self.tls_cert or "", self.tls_key or "", self.tls_ca or ""

    def to_argv(self) -> list[str]:
        """Command-line flags that reproduce these settings for ``dcounter-node``."""
        argv: list[str] = []
        for spec in SETTINGS:
            value = getattr(self, spec.key)
            if value is None or value == ():
                continue
            if spec.parse_text is None:
                argv.append(spec.flag if value else "--no-" + spec.flag.removeprefix("--"))
            else:
                argv += [spec.flag, spec.to_text(value)]
        return argv


def _checked(values: Mapping[str, object], *, where: str) -> dict[str, Any]:
    checked: dict[str, Any] = {}
    for key, value in values.items():
        spec = _SPECS.get(key)
        if spec is None:
            known = ", ".join(sorted(_SPECS))
            raise ConfigError(f"{where}unknown setting {key!r} (known: {known})")
        try:
            checked[key] = spec.check(value)
        except ConfigError as exc:
            raise ConfigError(f"{where}{key}: {exc}") from None
    return checked


@dataclass(frozen=True, slots=True)
class ClusterFile:
    """A parsed config file: shared settings plus zero or more named node entries."""

    #: Where it came from (a path, or a label such as "<string>").
    source: str
    #: The top-level settings present in the file (validated; absent keys are not here).
    common: Mapping[str, Any]
    #: The [[nodes]] entries, fully resolved (defaults < top level < entry); may be empty.
    nodes: tuple[NodeSettings, ...]

    def names(self) -> tuple[str, ...]:
        """The entry names, in file order."""
        return tuple(node.name for node in self.nodes)

    def node(self, name: str) -> NodeSettings:
        """The entry called ``name``; ConfigError if there is none."""
        for node in self.nodes:
            if node.name == name:
                return node
        known = ", ".join(self.names()) or "none"
        raise ConfigError(f"{self.source}: no [[nodes]] entry named {name!r} (names: {known})")

    def settings(self, name: str | None = None) -> NodeSettings:
        """The settings one node of this file runs with, before command-line flags.

        Without [[nodes]] that is the top level (``name`` must be None); with entries,
        ``name`` picks one, and may be omitted only when there is exactly one.
        """
        if not self.nodes:
            if name is not None:
                raise ConfigError(
                    f"{self.source}: --node {name}: the file has no [[nodes]] entries"
                )
            return NodeSettings().updated(self.common)
        if name is None:
            if len(self.nodes) == 1:
                return self.nodes[0]
            names = ", ".join(self.names())
            raise ConfigError(
                f"{self.source} has {len(self.nodes)} [[nodes]] entries; choose one with --node"
                f" NAME (names: {names})"
            )
        return self.node(name)


def parse_config(data: Mapping[str, Any], *, source: str = "<config>") -> ClusterFile:
    """Validate a config document (as :func:`tomllib.loads` returns it)."""
    top = dict(data)
    raw_nodes = top.pop("nodes", None)
    common = _checked(top, where=f"{source}: ")
    if raw_nodes is None:
        return ClusterFile(source, common, ())
    if not isinstance(raw_nodes, list) or not all(isinstance(n, dict) for n in raw_nodes):
        raise ConfigError(f"{source}: 'nodes' must be an array of tables ([[nodes]])")
    base = NodeSettings().updated(common)
    entries: list[tuple[dict[str, Any], NodeSettings]] = []
    for index, raw in enumerate(raw_nodes, start=1):
        entry = dict(raw)
        name = entry.pop("name", None)
        label = f"[[nodes]] #{index}" + (f" ({name!r})" if isinstance(name, str) else "")
        where = f"{source}: {label}: "
        checked = _checked(entry, where=where)
        settings = dataclasses.replace(base, **checked)
        if name is None:
            name = settings.listen
        if not isinstance(name, str) or _NAME.fullmatch(name) is None:
            raise ConfigError(f"{where}name must be a non-empty string without spaces")
        entries.append((checked, dataclasses.replace(settings, name=name)))
    _check_unique(source, [s.listen for _, s in entries if _dialable(s.listen)], "listen")
    _check_unique(source, [s.name for _, s in entries], "name")
    nodes: list[NodeSettings] = []
    for checked, settings in entries:
        if "peers" not in checked and "peers" not in common:
            mesh = tuple(
                other.listen
                for _, other in entries
                if other.name != settings.name and _dialable(other.listen)
            )
            settings = dataclasses.replace(settings, peers=mesh)
        if "peer_http" not in checked and "peer_http" not in common:
            known = tuple(
                sorted(
                    (other.listen, other.http)
                    for _, other in entries
                    if other.name != settings.name
                    and _dialable(other.listen)
                    and _dialable(other.http)
                )
            )
            settings = dataclasses.replace(settings, peer_http=known)
        nodes.append(settings)
    return ClusterFile(source, common, tuple(nodes))


def _dialable(address: str) -> bool:
    return parse_address(address)[1] != 0


def _check_unique(source: str, values: list[str], what: str) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ConfigError(f"{source}: two [[nodes]] entries have {what} {value!r}")
        seen.add(value)


def load_config_file(path: str | Path) -> ClusterFile:
    """Read and validate a TOML config file; every problem is a ConfigError naming it."""
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {str(path)!r}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {str(path)!r} is not UTF-8 text") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
    return parse_config(data, source=str(path))

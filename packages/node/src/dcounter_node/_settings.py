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

Every known key is one row of :data:`SETTINGS`, which drives the file parser, the
command-line flags and :meth:`NodeSettings.to_argv`; adding a setting means adding a field to
:class:`NodeSettings` and a row to that table.
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dcounter_node._config import NodeConfig
from dcounter_node._errors import ConfigError
from dcounter_node._http_limits import HTTPLimits
from dcounter_node._origin_policy import normalize_origin
from dcounter_protocol import MalformedAddressError, format_address
from dcounter_protocol import parse_address as _parse_address

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

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

#: Gossip (TCP) address used when none is configured.
DEFAULT_LISTEN = "127.0.0.1:7946"
#: HTTP API address used when none is configured.
DEFAULT_HTTP = "127.0.0.1:8080"
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
#: How a node sends gossip: "auto" (stream mode, falling back to the seed's framing per peer)
#: or "seed" (the seed's framing only). Receiving always accepts both.
WIRE_MODES = ("auto", "seed")
#: Event loop implementations; "uvloop" needs the ``dcounter-node[fast]`` extra.
LOOPS = ("asyncio", "uvloop")

_NAME = re.compile(r"\S+")

_NODE_DEFAULTS = NodeConfig()
_HTTP_DEFAULTS = HTTPLimits()


def parse_address(text: str, *, allow_port_zero: bool = True) -> tuple[str, int]:
    """Split "host:port" (or "[ipv6]:port") into host and port, or raise ConfigError.

    The rules are :func:`dcounter_protocol.parse_address`'s (the one address parser); port 0
    (any free port) is accepted unless ``allow_port_zero`` is false.
    """
    try:
        return _parse_address(text, allow_port_zero=allow_port_zero)
    except MalformedAddressError as exc:
        raise ConfigError(exc.reason) from None


# -- value checkers: each takes a TOML (or Python) value and returns it validated ---------


def _address(value: object) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"expected a HOST:PORT string, got {value!r}")
    parse_address(value)
    return value


def _peer(value: object) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"expected a HOST:PORT string, got {value!r}")
    parse_address(value, allow_port_zero=False)
    return value


def _peers(value: object) -> tuple[str, ...]:
    if not isinstance(value, list | tuple):
        raise ConfigError(f"expected a list of HOST:PORT strings, got {value!r}")
    return tuple(dict.fromkeys(_peer(item) for item in value))


def _peers_text(text: str) -> tuple[str, ...]:
    if not text.strip():
        return ()  # `--peers ""`: no static peers (overrides a config file's)
    items = [item.strip() for item in text.split(",")]
    if "" in items:
        raise ConfigError(f"empty entry in {text!r}; expected HOST:PORT[,HOST:PORT...]")
    return _peers(items)


def _peer_http(value: object) -> tuple[tuple[str, str], ...]:
    """Gossip address -> HTTP address of peers: a table, or "GOSSIP=HTTP" strings."""
    if isinstance(value, dict):
        pairs = list(value.items())
    elif isinstance(value, list | tuple):
        pairs = []
        for item in value:
            if isinstance(item, str):
                gossip, sep, http = item.partition("=")
                if not sep:
                    raise ConfigError(f"expected GOSSIP=HTTP (two HOST:PORT), got {item!r}")
                pairs.append((gossip.strip(), http.strip()))
            elif isinstance(item, tuple) and len(item) == 2:
                pairs.append(item)
            else:
                raise ConfigError(f"expected GOSSIP=HTTP (two HOST:PORT), got {item!r}")
    else:
        raise ConfigError(f"expected a table of gossip address = HTTP address, got {value!r}")
    return tuple(sorted({_peer(gossip): _peer(http) for gossip, http in pairs}.items()))


def _peer_http_text(text: str) -> tuple[tuple[str, str], ...]:
    return _peer_http([item for item in text.split(",") if item.strip()])


def _peer_http_to_text(value: tuple[tuple[str, str], ...]) -> str:
    return ",".join(f"{gossip}={http}" for gossip, http in value)


def _seconds(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"expected a number of seconds, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"expected a number of seconds > 0, got {value!r}")
    return float(value)


def _seconds_text(text: str) -> float:
    try:
        return _seconds(float(text))
    except (ValueError, ConfigError):
        raise ConfigError(f"expected a number of seconds > 0, e.g. 0.5; got {text!r}") from None


def _positive_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"expected an integer >= 1, got {value!r}")
    if value < 1:
        raise ConfigError(f"expected an integer >= 1, got {value!r}")
    return value


def _positive_int_text(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"expected an integer >= 1, got {text!r}") from None
    return _positive_int(value)


def _origins(value: object) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"expected a list of origins such as https://dash.example, got {value!r}")
    return tuple(dict.fromkeys(normalize_origin(item) for item in value))


def _origins_text(text: str) -> tuple[str, ...]:
    return _origins([item.strip() for item in text.split(",") if item.strip()])


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"expected true or false, got {value!r}")
    return value


def _directory(value: object) -> str:
    if not isinstance(value, str) or not value.strip() or "\0" in value:
        raise ConfigError(f"expected a directory path, got {value!r}")
    return value


def _file(value: object) -> str:
    if not isinstance(value, str) or not value.strip() or "\0" in value:
        raise ConfigError(f"expected a file path, got {value!r}")
    return value


def _choice(choices: Sequence[str]) -> Callable[[object], str]:
    def check(value: object) -> str:
        if not isinstance(value, str) or value.lower() not in choices:
            raise ConfigError(f"expected one of {', '.join(choices)}; got {value!r}")
        return value.lower()

    return check


@dataclass(frozen=True, slots=True)
class SettingSpec:
    """One known setting: its TOML key (= :class:`NodeSettings` field), flag and checks."""

    key: str
    flag: str
    help: str
    #: Validate a value from the config file (or Python); raise ConfigError.
    check: Callable[[object], Any]
    #: Parse a flag argument; None makes a boolean ``--flag/--no-flag`` pair.
    parse_text: Callable[[str], Any] | None
    metavar: str | None = None
    #: How the default reads in --help when the field default does not say it well.
    default_text: str | None = None
    #: Render a value as one flag argument (for to_argv).
    to_text: Callable[[Any], str] = str


def _seconds_to_text(value: float) -> str:
    return repr(float(value))


#: Every key a config file may hold (besides ``name`` in [[nodes]] entries), in --help order.
SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec(
        "listen",
        "--listen",
        "gossip (TCP) address to listen on; port 0 picks a free port",
        _address,
        _address,
        metavar="HOST:PORT",
    ),
    SettingSpec(
        "peers",
        "--peers",
        "comma-separated gossip addresses of static peers",
        _peers,
        _peers_text,
        metavar="ADDR[,ADDR...]",
        default_text="none",
        to_text=",".join,
    ),
    SettingSpec(
        "http",
        "--http",
        "HTTP API address to listen on; port 0 picks a free port",
        _address,
        _address,
        metavar="HOST:PORT",
    ),
    # Dashboard (issue 16): where GET /cluster asks peers for their value.
    SettingSpec(
        "peer_http",
        "--peer-http",
        "HTTP API addresses of peers, as gossip address=HTTP address pairs; the dashboard"
        " (GET /cluster) asks these peers for their value",
        _peer_http,
        _peer_http_text,
        metavar="GOSSIP=HTTP[,...]",
        default_text="none (in a config file: every other entry's http)",
        to_text=_peer_http_to_text,
    ),
    SettingSpec(
        "sync_interval",
        "--sync-interval",
        "seconds between digest pulls",
        _seconds,
        _seconds_text,
        metavar="SECONDS",
        to_text=_seconds_to_text,
    ),
    SettingSpec(
        "full_sync_interval",
        "--full-sync-interval",
        "seconds between full-state pushes",
        _seconds,
        _seconds_text,
        metavar="SECONDS",
        default_text="10 x sync interval",
        to_text=_seconds_to_text,
    ),
    SettingSpec(
        "max_sync_peers",
        "--max-sync-peers",
        "peers contacted per sync round",
        _positive_int,
        _positive_int_text,
        metavar="N",
    ),
    SettingSpec(
        "max_replicas",
        "--max-replicas",
        "most replica entries the counter may hold; a push from a peer that would pass it is"
        " rejected whole (a guard against made-up replica ids)",
        _positive_int,
        _positive_int_text,
        metavar="N",
    ),
    SettingSpec(
        "delta_gossip",
        "--delta-gossip",
        "push each change to a few peers at once; off gives the seed's periodic gossip only",
        _boolean,
        None,
        default_text="on",
    ),
    SettingSpec(
        "log_level",
        "--log-level",
        "log threshold (logs go to stderr)",
        _choice(LOG_LEVELS),
        _choice(LOG_LEVELS),
        metavar="{" + ",".join(LOG_LEVELS) + "}",
    ),
    SettingSpec(
        "log_format",
        "--log-format",
        "log line format",
        _choice(LOG_FORMATS),
        _choice(LOG_FORMATS),
        metavar="{" + ",".join(LOG_FORMATS) + "}",
    ),
    # Durable state (issue 7); dcounter_node._cli turns these into a SQLiteStore.
    SettingSpec(
        "data_dir",
        "--data-dir",
        "directory holding this node's replica id and counts (created if missing; relative"
        " to the working directory); on restart the node resumes them",
        _directory,
        _directory,
        metavar="DIR",
        default_text="$XDG_DATA_HOME/dcounter/<listen address>, or in memory when the listen"
        " port is 0",
    ),
    SettingSpec(
        "in_memory",
        "--in-memory",
        "keep no durable state (a new replica id every start); wins over data_dir",
        _boolean,
        None,
        default_text="off",
    ),
    SettingSpec(
        "durability",
        "--durability",
        "always: fsync each commit (survives power loss); batched: group commit without"
        " fsync (survives a process crash); writes are acknowledged once committed either"
        " way",
        _choice(("always", "batched")),
        _choice(("always", "batched")),
        metavar="{always,batched}",
    ),
    # Idempotency-Keys (issue 17): kept in the database with the counts they produced.
    SettingSpec(
        "idempotency_ttl",
        "--idempotency-ttl",
        "seconds a write's Idempotency-Key is remembered, so a retry gets the first answer"
        " (in the database, across restarts and crashes; in memory with --in-memory)",
        _seconds,
        _seconds_text,
        metavar="SECONDS",
        to_text=_seconds_to_text,
    ),
    SettingSpec(
        "idempotency_keys",
        "--idempotency-keys",
        "most Idempotency-Keys remembered (the newest are kept)",
        _positive_int,
        _positive_int_text,
        metavar="N",
    ),
    # Wire and event loop (issue 8).
    SettingSpec(
        "wire",
        "--wire",
        "how to send gossip: auto = one persistent stream per peer, falling back to the"
        " seed's framing for peers that do not confirm it; seed = the seed's framing only"
        " (receiving accepts both either way)",
        _choice(WIRE_MODES),
        _choice(WIRE_MODES),
        metavar="{" + ",".join(WIRE_MODES) + "}",
    ),
    SettingSpec(
        "loop",
        "--loop",
        "event loop; uvloop needs the dcounter-node[fast] extra",
        _choice(LOOPS),
        _choice(LOOPS),
        metavar="{" + ",".join(LOOPS) + "}",
    ),
    # HTTP hardening (issue 12).
    SettingSpec(
        "http_max_connections",
        "--http-max-connections",
        "HTTP connections open at once; beyond it a connection that never sent a byte is"
        " closed to make room, else the new one gets 503",
        _positive_int,
        _positive_int_text,
        metavar="N",
    ),
    SettingSpec(
        "http_header_timeout",
        "--http-header-timeout",
        "seconds a client may take to send a request's head once it began (and then its"
        " body); slower connections are closed",
        _seconds,
        _seconds_text,
        metavar="SECONDS",
        to_text=_seconds_to_text,
    ),
    SettingSpec(
        "http_idle_timeout",
        "--http-idle-timeout",
        "seconds an HTTP connection may stay open without a request (after connecting or"
        " after its last response)",
        _seconds,
        _seconds_text,
        metavar="SECONDS",
        to_text=_seconds_to_text,
    ),
    SettingSpec(
        "allowed_origins",
        "--allowed-origins",
        "comma-separated browser origins (https://host[:port], or *) whose pages may use the"
        " API besides the node's own; requests from other pages' origins get 403",
        _origins,
        _origins_text,
        metavar="ORIGIN[,ORIGIN...]",
        default_text="none",
        to_text=",".join,
    ),
    # Gossip over mutual TLS (issue 13): all three files or none.
    SettingSpec(
        "tls_cert",
        "--tls-cert",
        "this node's certificate chain (PEM) for gossip over mutual TLS: every gossip"
        " connection in and out is then TLS 1.3 with a certificate from the cluster CA both"
        " ways; needs --tls-key and --tls-ca; re-read on SIGHUP",
        _file,
        _file,
        metavar="FILE",
        default_text="none: plain TCP",
    ),
    SettingSpec(
        "tls_key",
        "--tls-key",
        "the private key (PEM) of --tls-cert",
        _file,
        _file,
        metavar="FILE",
        default_text="none",
    ),
    SettingSpec(
        "tls_ca",
        "--tls-ca",
        "the cluster CA certificate (PEM): the only root trusted for gossip peers",
        _file,
        _file,
        metavar="FILE",
        default_text="none",
    ),
    SettingSpec(
        "plaintext_peers",
        "--plaintext-peers",
        "with TLS: IP:PORT gossip addresses of peers that cannot speak it (Go reference"
        " nodes), dialled in plain TCP; plain connections are also accepted from their IPs."
        " Trusted and unauthenticated: see the README's Security section",
        _peers,
        _peers_text,
        metavar="ADDR[,ADDR...]",
        default_text="none",
        to_text=",".join,
    ),
    # HTTPS and API tokens (issue 13); dcounter_node._security reads these.
    SettingSpec(
        "http_tls_cert",
        "--http-tls-cert",
        "certificate chain (PEM) to serve the HTTP API over HTTPS with; needs --http-tls-key",
        _file,
        _file,
        metavar="FILE",
        default_text="the gossip certificate (--tls-cert) if given, else plain HTTP",
    ),
    SettingSpec(
        "http_tls_key",
        "--http-tls-key",
        "private key (PEM) of --http-tls-cert",
        _file,
        _file,
        metavar="FILE",
        default_text="--tls-key when the certificate is --tls-cert",
    ),
    SettingSpec(
        "http_tls_ca",
        "--http-tls-ca",
        "CA certificates (PEM): HTTPS clients are asked for a certificate, and one they"
        " present must be signed by these; clients without one are still served",
        _file,
        _file,
        metavar="FILE",
        default_text="client certificates not requested",
    ),
    SettingSpec(
        "api_tokens",
        "--api-tokens",
        "file of API tokens, one 'SCOPE TOKEN' per line (scope read, write or admin);"
        " requests then need 'Authorization: Bearer TOKEN' (GET /health and the dashboard's"
        " page stay open); re-read on SIGHUP",
        _file,
        _file,
        metavar="FILE",
        default_text="none: the API is open to anyone who can reach it",
    ),
    SettingSpec(
        "require_auth",
        "--require-auth",
        "refuse to start (exit 2) when listening on a non-loopback address without TLS and"
        " API tokens, instead of warning",
        _boolean,
        None,
        default_text="off",
    ),
    # Membership (issue 14): see "Membership" in the node README.
    SettingSpec(
        "advertise",
        "--advertise",
        "the gossip address other nodes dial, and this node's identity; required when"
        " --listen is a wildcard (0.0.0.0, ::)",
        _peer,
        _peer,
        metavar="HOST:PORT",
        default_text="the listen address",
    ),
    SettingSpec(
        "join",
        "--join",
        "comma-separated gossip addresses of dcounter nodes to join (any member will do);"
        " members found this way become gossip peers besides --peers",
        _peers,
        _peers_text,
        metavar="ADDR[,ADDR...]",
        default_text="none: no membership, static --peers only",
        to_text=",".join,
    ),
    SettingSpec(
        "probe_interval",
        "--probe-interval",
        "seconds between membership probes (one member each)",
        _seconds,
        _seconds_text,
        metavar="SECONDS",
        to_text=_seconds_to_text,
    ),
    SettingSpec(
        "suspect_timeout",
        "--suspect-timeout",
        "seconds a member stays suspect (unanswered probes) before it is declared dead",
        _seconds,
        _seconds_text,
        metavar="SECONDS",
        to_text=_seconds_to_text,
    ),
)

_SPECS = {spec.key: spec for spec in SETTINGS}


@dataclass(frozen=True, slots=True)
class NodeSettings:
    """Everything one ``dcounter-node`` process needs, validated (see :data:`SETTINGS`)."""

    #: The entry's name in a cluster file ("" when the settings come from no [[nodes]] entry).
    name: str = ""
    listen: str = DEFAULT_LISTEN
    http: str = DEFAULT_HTTP
    peers: tuple[str, ...] = ()
    peer_http: tuple[tuple[str, str], ...] = ()
    sync_interval: float = _NODE_DEFAULTS.sync_interval
    full_sync_interval: float | None = _NODE_DEFAULTS.full_sync_interval
    max_sync_peers: int = _NODE_DEFAULTS.max_sync_peers
    max_replicas: int = _NODE_DEFAULTS.max_replicas
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
    probe_interval: float = 1.0
    suspect_timeout: float = 5.0

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
            delta_gossip=self.delta_gossip,
        )

    def http_limits(self) -> HTTPLimits:
        """The HTTP connection limits as :class:`HTTPLimits`."""
        return HTTPLimits(
            max_connections=self.http_max_connections,
            header_timeout=self.http_header_timeout,
            idle_timeout=self.http_idle_timeout,
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

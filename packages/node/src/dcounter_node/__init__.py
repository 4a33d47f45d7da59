"""dcounter node: a gossiping PN-counter replica (peer manager, node, statistics)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from dcounter_node.__about__ import __version__ as __version__
from dcounter_node._config import NodeConfig as NodeConfig
from dcounter_node._counters import Counters as Counters
from dcounter_node._errors import ConfigError as ConfigError
from dcounter_node._errors import CorruptStorageError as CorruptStorageError
from dcounter_node._errors import ForeignStorageError as ForeignStorageError
from dcounter_node._errors import InvalidPeerAddressError as InvalidPeerAddressError
from dcounter_node._errors import NodeClosedError as NodeClosedError
from dcounter_node._errors import NodeError as NodeError
from dcounter_node._errors import NodeNotStartedError as NodeNotStartedError
from dcounter_node._errors import StorageError as StorageError
from dcounter_node._errors import UnsupportedSchemaError as UnsupportedSchemaError
from dcounter_node._node import Node as Node
from dcounter_node._peers import PeerManager as PeerManager
from dcounter_node._peers import validate_peer_address as validate_peer_address
from dcounter_node._ready import READY_PREFIX as READY_PREFIX
from dcounter_node._ready import ReadyLine as ReadyLine
from dcounter_node._ready import ReadyLineError as ReadyLineError
from dcounter_node._ready import parse_ready_line as parse_ready_line
from dcounter_node._settings import ClusterFile as ClusterFile
from dcounter_node._settings import NodeSettings as NodeSettings
from dcounter_node._settings import load_config_file as load_config_file
from dcounter_node._settings import parse_config as parse_config
from dcounter_node._stats import NodeStats as NodeStats
from dcounter_node._stats import NodeStatsSnapshot as NodeStatsSnapshot
from dcounter_node._storage import StateStore as StateStore
from dcounter_node._storage import StoredState as StoredState
from dcounter_node._watch import ValueWatch as ValueWatch

if TYPE_CHECKING:
    from dcounter_node._http import create_app as create_app
    from dcounter_node._http_server import HTTPServer as HTTPServer
    from dcounter_node._http_server import start_http_server as start_http_server
    from dcounter_node._storage_sqlite import SQLiteStore as SQLiteStore

#: Names whose modules need aiohttp or sqlite3: imported on first use, so that using the
#: node itself (Node, PeerManager, ...) does not load the HTTP server or the database.
_LAZY = {
    "HTTPServer": "dcounter_node._http_server",
    "create_app": "dcounter_node._http",
    "start_http_server": "dcounter_node._http_server",
    "SQLiteStore": "dcounter_node._storage_sqlite",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "READY_PREFIX",
    "ClusterFile",
    "ConfigError",
    "CorruptStorageError",
    "Counters",
    "ForeignStorageError",
    "HTTPServer",
    "InvalidPeerAddressError",
    "Node",
    "NodeClosedError",
    "NodeConfig",
    "NodeError",
    "NodeNotStartedError",
    "NodeSettings",
    "NodeStats",
    "NodeStatsSnapshot",
    "PeerManager",
    "ReadyLine",
    "ReadyLineError",
    "SQLiteStore",
    "StateStore",
    "StorageError",
    "StoredState",
    "UnsupportedSchemaError",
    "ValueWatch",
    "__version__",
    "create_app",
    "load_config_file",
    "parse_config",
    "parse_ready_line",
    "start_http_server",
    "validate_peer_address",
]

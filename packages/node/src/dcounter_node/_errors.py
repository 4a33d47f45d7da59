"""The typed errors raised by :mod:`dcounter_node`."""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "CorruptStorageError",
    "ForeignStorageError",
    "InvalidPeerAddressError",
    "NodeClosedError",
    "NodeError",
    "NodeNotStartedError",
    "StorageError",
    "UnsupportedSchemaError",
]


class NodeError(Exception):
    """Base class of every error this package raises."""


class ConfigError(NodeError, ValueError):
    """A node setting that is missing, malformed or out of range."""


class NodeClosedError(NodeError):
    """The node was used after close()."""


class NodeNotStartedError(NodeError):
    """The node was used before start() (its replica id is not known yet)."""


class InvalidPeerAddressError(NodeError, ValueError):
    """A peer address that is not a non-empty "host:port" string."""


class StorageError(NodeError):
    """The node's durable state cannot be used; the node must not start on it."""


class CorruptStorageError(StorageError):
    """The database is unreadable or its contents fail validation."""


class ForeignStorageError(StorageError):
    """The database belongs to another node (its listen address does not match)."""


class UnsupportedSchemaError(StorageError):
    """The database was written by a newer dcounter with a schema this one does not know."""

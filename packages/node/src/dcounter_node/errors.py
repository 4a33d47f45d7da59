"""The typed errors raised by :mod:`dcounter_node`."""

from __future__ import annotations

__all__ = ["ConfigError", "NodeClosedError", "NodeError"]


class NodeError(Exception):
    """Base class of every error this package raises."""


class ConfigError(NodeError, ValueError):
    """A node setting that is missing, malformed or out of range."""


class NodeClosedError(NodeError):
    """The node was used after close()."""

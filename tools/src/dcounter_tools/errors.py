"""The typed errors raised by :mod:`dcounter_tools`."""

from __future__ import annotations

__all__ = [
    "ClusterError",
    "ClusterStateError",
    "InputError",
    "LabUnavailableError",
    "NodeStartError",
    "ToolError",
    "UsageError",
]


class ToolError(Exception):
    """Base class of every error this package raises."""


class UsageError(ToolError, ValueError):
    """Flags or a cluster description that cannot be used (the CLIs exit 2 on it)."""


class InputError(ToolError, ValueError):
    """Input to inspect that cannot even be read as bytes (bad hex, unreadable file)."""


class ClusterError(ToolError):
    """The launcher could not start, drive or stop its cluster."""


class NodeStartError(ClusterError):
    """A node process exited, or printed no ready line in time."""


class ClusterStateError(ClusterError):
    """The background cluster's state file is missing, unreadable, or already in use."""


class LabUnavailableError(UsageError):
    """``--hosts netns`` cannot run here: not root, or no ``ip`` command (exit 2)."""

"""The storage seam: where a node keeps its replica id and counts across restarts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from dcounter_crdt import CounterState

__all__ = ["StateStore", "StorageHealth", "StoredState"]


@dataclass(frozen=True, slots=True)
class StoredState:
    """What a store hands back on start: the replica id it belongs to and its counts.

    ``clean_shutdown`` is False when the store cannot prove the state is complete (the
    node did not shut down cleanly): the node must then bind a new replica id (a new
    incarnation) instead of resuming ``replica_id``, whose counts peers may hold higher.
    """

    replica_id: str
    state: CounterState
    clean_shutdown: bool = True


class StateStore(Protocol):
    """Durable home of one node's state.

    The node stages every change as it happens (cheap and synchronous, on the event loop)
    and awaits :meth:`commit` before it acknowledges a write to a client.
    """

    async def open(self) -> StoredState | None:
        """Open the store; return the saved state, or None when it is new."""
        ...

    async def bind(self, replica_id: str) -> None:
        """Record the replica id of a new store or a new incarnation (called once, after
        open() returned None or a state with ``clean_shutdown=False``)."""
        ...

    def stage(self, changes: CounterState) -> None:
        """Queue entries to persist; each count is kept as the max of old and new."""
        ...

    async def commit(self) -> None:
        """Return once everything staged so far is durable."""
        ...

    async def close(self) -> None:
        """Flush what is staged and release the store; idempotent."""
        ...


class StorageHealth(Protocol):
    """What the HTTP API asks a store while it serves (``/health``, ``/counter``)."""

    @property
    def problem(self) -> str | None:
        """Why commits currently fail (they are being retried), or None while they succeed."""
        ...

    def committed_state(self) -> CounterState:
        """The counts as last committed (shown instead of the live state while failing)."""
        ...

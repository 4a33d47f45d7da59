"""What the API shows of a node's counts while its storage fails: only committed ones.

While commits fail, the node's live state may hold counts that a failing disk can still
lose (a write answered 503 "not persisted" stays counted in memory). Every view of the
counter (``/counter``, ``/counter/value``, ``/counter/watch``, ``/metrics``, ``/cluster``)
shows the committed state instead, so no reader sees a value that may go back down.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from dcounter_crdt import CounterState
    from dcounter_node._storage import StorageHealth

__all__ = ["shown_state"]


def shown_state(storage: StorageHealth | None, live: Callable[[], CounterState]) -> CounterState:
    """``live()``, or the committed counts while ``storage`` reports a problem."""
    if storage is not None and storage.problem is not None:
        return storage.committed_state()
    return live()

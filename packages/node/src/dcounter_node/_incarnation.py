"""Which replica id a node takes when it starts without its complete durable state.

Such a start is a new incarnation: the old id's counts may be held higher by peers than
what the node has, and its next writes under that id would vanish in their max-merge
(Riak's kv679). So it takes an id no one has counted under yet:

* ``address#random`` by default;
* with an id fixed in the configuration (``NodeConfig.replica_id = "orders-1"``), the next
  in the series ``orders-1``, ``orders-1#2``, ``orders-1#3``, ...: still recognisable as that
  node, and unique because the store records each new id durably before any write under it
  is acknowledged.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from dcounter_node._errors import ConfigError, ForeignStorageError

if TYPE_CHECKING:
    from dcounter_crdt import CounterState
    from dcounter_node._storage import StoredState

__all__ = ["StartingPoint", "is_incarnation_of", "new_replica_id", "starting_point"]

#: Longest replica id (as in :class:`~dcounter_node._config.NodeConfig`).
_MAX_BYTES: Final = 255


def _number(replica_id: str, configured: str) -> int | None:
    """1 for ``configured`` itself, n for ``configured#n`` (n >= 2), None otherwise."""
    if replica_id == configured:
        return 1
    prefix = configured + "#"
    if not replica_id.startswith(prefix):
        return None
    digits = replica_id[len(prefix) :]
    if not digits.isascii() or not digits.isdigit() or digits[0] == "0" or int(digits) < 2:
        return None
    return int(digits)


def is_incarnation_of(replica_id: str, configured: str) -> bool:
    """Whether ``replica_id`` is ``configured`` or one of its later incarnations."""
    return _number(replica_id, configured) is not None


def new_replica_id(address: str, configured: str | None, previous: str | None) -> str:
    """The id of a new incarnation: ``address#random`` without ``configured``; with it,
    ``configured`` for a new store (``previous`` None), else the one after ``previous``.

    ConfigError when ``previous`` is not of the ``configured`` series or the next id would
    pass 255 bytes.
    """
    if configured is None:
        return f"{address}#{secrets.token_hex(4)}"
    if previous is None:
        return configured
    number = _number(previous, configured)
    if number is None:
        raise ConfigError(f"replica id {previous!r} is not an incarnation of {configured!r}")
    replica_id = f"{configured}#{number + 1}"
    if len(replica_id.encode("utf-8")) > _MAX_BYTES:
        raise ConfigError(
            f"replica_id {configured!r} leaves no room for the incarnation number after an"
            f" unclean shutdown ({replica_id!r} is over {_MAX_BYTES} bytes): shorten it"
        )
    return replica_id


@dataclass(frozen=True, slots=True)
class StartingPoint:
    """The replica id and counts a node starts with."""

    replica_id: str
    state: CounterState
    #: A new incarnation, which the store must record (``bind``) before any write.
    new_incarnation: bool
    #: The id of the incarnation a store without a clean shutdown belonged to (to log).
    unclean_previous: str | None = None


def starting_point(
    address: str, configured: str | None, initial: CounterState, stored: StoredState | None
) -> StartingPoint:
    """Where a node at ``address`` starts: the stored incarnation after a clean shutdown,
    else a new one (see the module's docstring); the counts are ``initial`` merged with the
    stored ones either way.

    ForeignStorageError when the store belongs to another id than ``configured``.
    """
    if stored is None:
        return StartingPoint(new_replica_id(address, configured, None), initial, True)
    if configured is not None and not is_incarnation_of(stored.replica_id, configured):
        raise ForeignStorageError(
            f"the store belongs to replica {stored.replica_id!r}, "
            f"but the configuration asks for {configured!r}"
        )
    state = initial.merged(stored.state)
    if stored.clean_shutdown:
        return StartingPoint(stored.replica_id, state, False)
    # The log's tail may be lost: peers may hold the old id's counts higher than we do.
    replica_id = new_replica_id(address, configured, stored.replica_id)
    return StartingPoint(replica_id, state, True, unclean_previous=stored.replica_id)

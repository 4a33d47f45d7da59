"""The gossip core's checks of a received push, as pure functions: limits and forged counts.

A peer, hostile or broken, can send anything. Over only the entries a push would change
here, these decide whether it is refused whole (it would take the state past
``max_replicas`` entries, or it names a replica id longer than 255 bytes) and which of its
entries claim more for our own replica than we counted ourselves (legitimate gossip never
does: those are refused, the rest merged). :class:`~dcounter_node._gossip.Gossip` applies
them; they live apart so the policy reads on its own, next to nothing else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from dcounter_crdt import CounterState
from dcounter_node._gossip_types import MAX_REPLICA_ID_BYTES, Rejection

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["limit_passed", "split_forged"]

#: Strings this short cannot exceed MAX_REPLICA_ID_BYTES (4 UTF-8 bytes per character).
_SURELY_SHORT: Final = MAX_REPLICA_ID_BYTES // 4


def limit_passed(
    gains: CounterState, known: Callable[[], frozenset[str]], max_replicas: int
) -> Rejection | None:
    """Whether merging ``gains`` (entries above ours) would pass a limit; ``known()`` gives
    the replica ids held already (ours included), asked only when needed."""
    ids = gains.increments.keys() | gains.decrements.keys()
    if max(map(len, ids)) > _SURELY_SHORT and any(
        len(replica_id.encode("utf-8", "surrogatepass")) > MAX_REPLICA_ID_BYTES
        for replica_id in ids
    ):
        return Rejection.REPLICA_ID_TOO_LONG
    held = known()
    if len(held) + len(ids - held) > max_replicas:
        return Rejection.TOO_MANY_REPLICAS
    return None


def split_forged(gains: CounterState, own: str) -> tuple[CounterState, CounterState]:
    """``gains`` without entries of our own replica ``own`` (above our own counts by
    definition: legitimate gossip never has them), and those entries."""
    increments, decrements = gains.increments, gains.decrements
    if own not in increments and own not in decrements:
        return gains, CounterState.empty()
    rest_inc = {r: c for r, c in increments.items() if r != own}
    rest_dec = {r: c for r, c in decrements.items() if r != own}
    forged = CounterState.from_maps(
        {own: increments[own]} if own in increments else None,
        {own: decrements[own]} if own in decrements else None,
    )
    return CounterState.from_maps(rest_inc, rest_dec), forged

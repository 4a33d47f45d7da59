"""Membership's broadcast queue, pure: the updates waiting to ride on outgoing messages.

One update per member (a newer one replaces what was queued about it), handed out
fewest-sent first so fresh news overtakes old, and dropped once sent ``budget`` times (the
caller's ``retransmit_mult * ceil(log10(n + 2))``), as hashicorp/memberlist's queue.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dcounter_node._membership_types import Update

__all__ = ["BroadcastQueue"]


@dataclass(slots=True)
class _Broadcast:
    update: Update
    sent: int = 0


class BroadcastQueue:
    """Updates to piggyback, by member address."""

    def __init__(self) -> None:
        self._pending: dict[str, _Broadcast] = {}

    def put(self, update: Update) -> None:
        """Queue ``update``, replacing anything queued about its member."""
        self._pending[update.address] = _Broadcast(update)

    def drop(self, address: str) -> None:
        """Forget what is queued about ``address``."""
        self._pending.pop(address, None)

    def take(self, most: int, budget: int) -> tuple[Update, ...]:
        """Up to ``most`` updates for one message; each leaves after ``budget`` sends."""
        chosen = sorted(self._pending.values(), key=lambda b: b.sent)[:most]
        for item in chosen:
            item.sent += 1
            if item.sent >= budget:
                del self._pending[item.update.address]
        return tuple(item.update for item in chosen)

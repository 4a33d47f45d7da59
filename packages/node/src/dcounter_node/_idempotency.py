"""A bounded memory of Idempotency-Key values, so a retried write counts once."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable

__all__ = ["IdempotencyCache", "IdempotencyEntry"]


@dataclass(frozen=True, slots=True)
class IdempotencyEntry:
    """What one key stands for: the request it came with and the outcome (once known)."""

    fingerprint: Hashable
    result: asyncio.Future[int]
    created: float


class IdempotencyCache:
    """Keys in arrival order, forgotten after ``ttl`` seconds or beyond ``max_keys``.

    The outcome is a future, so a duplicate arriving while the first request is still in
    flight waits for it instead of counting a second time. Owned by one event loop.
    """

    def __init__(
        self,
        *,
        max_keys: int = 10_000,
        ttl: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_keys < 1 or not ttl > 0:
            raise ValueError("max_keys must be >= 1 and ttl > 0")
        self._max_keys = max_keys
        self._ttl = ttl
        self._clock = clock
        self._entries: OrderedDict[str, IdempotencyEntry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> IdempotencyEntry | None:
        """The live entry for ``key``, or None."""
        self._expire()
        return self._entries.get(key)

    def begin(self, key: str, fingerprint: Hashable) -> asyncio.Future[int]:
        """Remember a new key (not present) and return the future its outcome goes into."""
        self._expire()
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._entries[key] = IdempotencyEntry(fingerprint, future, self._clock())
        while len(self._entries) > self._max_keys:
            self._entries.popitem(last=False)
        return future

    def abandon(self, key: str, error: BaseException) -> None:
        """Forget ``key`` after its request failed without counting, waking any waiters."""
        entry = self._entries.pop(key, None)
        if entry is not None and not entry.result.done():
            entry.result.set_exception(error)
            # Marks the exception retrieved: nobody may be waiting, and that is fine.
            entry.result.exception()

    def _expire(self) -> None:
        deadline = self._clock() - self._ttl
        entries = self._entries
        while entries:
            first = next(iter(entries.values()))
            if first.created > deadline:
                break
            entries.popitem(last=False)

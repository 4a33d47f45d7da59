"""A bounded memory of Idempotency-Key values, so a retried write counts once.

With a :class:`KeyJournal` (the node's database) every key is staged with the answer its
write got, in the same transaction as the count it produced, and the keys are read back at
start: a retry after a crash or a restart is answered from the stored result.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from dcounter_node._storage_schema import StoredKey

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Fingerprint", "IdempotencyCache", "IdempotencyEntry", "KeyJournal"]

#: What a key stands for: the operation ("increment" or "decrement"), its amount and the
#: counter's name.
Fingerprint = tuple[str, int, str]


class KeyJournal(Protocol):
    """Where keys are kept durably (:class:`~dcounter_node._storage_sqlite.SQLiteStore`)."""

    def stage_key(self, key: StoredKey) -> None:
        """Queue ``key``; it commits with every count staged before it."""
        ...

    def stored_keys(self) -> list[StoredKey]:
        """The keys kept from earlier runs, oldest first."""
        ...


@dataclass(frozen=True, slots=True)
class IdempotencyEntry:
    """What one key stands for: the request it came with and the outcome (once known)."""

    fingerprint: Fingerprint
    result: asyncio.Future[int]
    created: float


class IdempotencyCache:
    """Keys in arrival order, forgotten after ``ttl`` seconds or beyond ``max_keys``.

    The outcome is a future, so a duplicate arriving while the first request is still in
    flight waits for it instead of counting a second time. Owned by one event loop.
    ``clock`` is wall-clock time, since journaled keys outlive the process.
    """

    def __init__(
        self,
        *,
        max_keys: int = 100_000,
        ttl: float = 24 * 3600.0,
        clock: Callable[[], float] = time.time,
        journal: KeyJournal | None = None,
    ) -> None:
        if max_keys < 1 or not ttl > 0:
            raise ValueError("max_keys must be >= 1 and ttl > 0")
        self._max_keys = max_keys
        self._ttl = ttl
        self._clock = clock
        self._journal = journal
        self._entries: OrderedDict[str, IdempotencyEntry] = OrderedDict()
        # Restored on first use: futures need the running loop.
        self._restore: list[StoredKey] = journal.stored_keys() if journal is not None else []

    def __len__(self) -> int:
        self._restored()
        return len(self._entries)

    def get(self, key: str) -> IdempotencyEntry | None:
        """The live entry for ``key``, or None."""
        self._expire()
        return self._entries.get(key)

    def begin(self, key: str, fingerprint: Fingerprint) -> asyncio.Future[int]:
        """Remember a new key (not present) and return the future its outcome goes into."""
        self._expire()
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._add(key, IdempotencyEntry(fingerprint, future, self._clock()))
        return future

    def complete(self, key: str, value: int) -> None:
        """Record the answer of ``key``'s write (staged with it when journaled)."""
        entry = self._entries.get(key)
        if entry is None or entry.result.done():
            return
        entry.result.set_result(value)
        if self._journal is not None:
            op, amount, counter = entry.fingerprint
            self._journal.stage_key(StoredKey(key, op, amount, value, entry.created, counter))

    def abandon(self, key: str, error: BaseException) -> None:
        """Forget ``key`` after its request failed without counting, waking any waiters."""
        entry = self._entries.pop(key, None)
        if entry is not None and not entry.result.done():
            entry.result.set_exception(error)
            # Marks the exception retrieved: nobody may be waiting, and that is fine.
            entry.result.exception()

    def _add(self, key: str, entry: IdempotencyEntry) -> None:
        self._entries[key] = entry
        while len(self._entries) > self._max_keys:
            self._entries.popitem(last=False)

    def _restored(self) -> None:
        if not self._restore:
            return
        stored, self._restore = self._restore, []
        loop = asyncio.get_running_loop()
        for key in stored:
            future: asyncio.Future[int] = loop.create_future()
            future.set_result(key.value)
            fingerprint = (key.op, key.amount, key.counter)
            self._add(key.key, IdempotencyEntry(fingerprint, future, key.created))

    def _expire(self) -> None:
        self._restored()
        deadline = self._clock() - self._ttl
        entries = self._entries
        while entries:
            first = next(iter(entries.values()))
            if first.created > deadline:
                break
            entries.popitem(last=False)

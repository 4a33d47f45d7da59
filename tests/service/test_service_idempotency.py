"""The bounded Idempotency-Key memory behind POST /increment and /decrement."""

from __future__ import annotations

import asyncio

import pytest

from dcounter_node._idempotency import IdempotencyCache
from dcounter_node._storage_schema import StoredKey


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_key_is_remembered_with_its_fingerprint_and_outcome() -> None:
    cache = IdempotencyCache()
    result = cache.begin("k", ("increment", 2, "default"))
    result.set_result(7)
    entry = cache.get("k")
    assert entry is not None
    assert entry.fingerprint == ("increment", 2, "default")
    assert await entry.result == 7


async def test_key_expires_after_the_ttl() -> None:
    clock = FakeClock()
    cache = IdempotencyCache(ttl=60.0, clock=clock)
    cache.begin("k", ("increment", 1, "default")).set_result(1)
    clock.now += 59.9
    assert cache.get("k") is not None
    clock.now += 0.1
    assert cache.get("k") is None
    assert len(cache) == 0


async def test_oldest_keys_are_evicted_beyond_max_keys() -> None:
    cache = IdempotencyCache(max_keys=2)
    for key in ("a", "b", "c"):
        cache.begin(key, ("increment", 1, "default")).set_result(0)
    assert [cache.get(key) is not None for key in ("a", "b", "c")] == [False, True, True]


async def test_abandon_forgets_the_key_and_wakes_waiters_with_the_error() -> None:
    cache = IdempotencyCache()
    result = cache.begin("k", ("decrement", 1, "default"))
    waiter = asyncio.ensure_future(asyncio.shield(result))
    cache.abandon("k", OverflowError("too big"))
    assert cache.get("k") is None
    with pytest.raises(OverflowError, match="too big"):
        await waiter


def test_bad_limits_are_rejected() -> None:
    with pytest.raises(ValueError, match="max_keys must be >= 1"):
        IdempotencyCache(max_keys=0)


class Journal:
    """A KeyJournal in memory: what was staged, and what an earlier run left."""

    def __init__(self, stored: list[StoredKey] | None = None) -> None:
        self.staged: list[StoredKey] = []
        self.stored = stored or []

    def stage_key(self, key: StoredKey) -> None:
        self.staged.append(key)

    def stored_keys(self) -> list[StoredKey]:
        return list(self.stored)


async def test_a_completed_key_is_staged_in_the_journal_with_its_answer() -> None:
    clock = FakeClock()
    journal = Journal()
    cache = IdempotencyCache(clock=clock, journal=journal)
    cache.begin("k", ("decrement", 3, "default"))
    assert journal.staged == []
    cache.complete("k", -3)
    assert journal.staged == [StoredKey("k", "decrement", 3, -3, clock.now)]


async def test_keys_of_an_earlier_run_are_answered_until_they_expire() -> None:
    clock = FakeClock()
    stored = StoredKey("k", "increment", 2, 40, clock.now - 50.0)
    cache = IdempotencyCache(ttl=60.0, clock=clock, journal=Journal([stored]))
    entry = cache.get("k")
    assert entry is not None
    assert (entry.fingerprint, await entry.result) == (("increment", 2, "default"), 40)
    clock.now += 10.0
    assert cache.get("k") is None

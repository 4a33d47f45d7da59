"""Watching a node's value: a bounded async iterator per watcher."""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["WATCH_QUEUE_SIZE", "ValueWatch", "Watchers"]

#: Values a lagging watcher keeps before the oldest are dropped (the latest always stays).
WATCH_QUEUE_SIZE = 64


class ValueWatch(AsyncIterator[int]):
    """An async iterator over a node's value; ends when the node closes.

    Each watch has its own bounded buffer: a consumer that lags sees the oldest values
    dropped, never the latest one, and never slows the node down.
    """

    def __init__(self, maxlen: int = WATCH_QUEUE_SIZE) -> None:
        self._values: deque[int] = deque(maxlen=maxlen)
        self._wakeup = asyncio.Event()
        self._closed = False

    @property
    def closed(self) -> bool:
        """True once the watch ended (node closed or :meth:`aclose` called)."""
        return self._closed

    def _publish(self, value: int) -> None:
        if not self._closed:
            self._values.append(value)
            self._wakeup.set()

    def _end(self) -> None:
        self._closed = True
        self._wakeup.set()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> int:
        while not self._values:
            if self._closed:
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()
        return self._values.popleft()

    async def aclose(self) -> None:
        """Stop watching; buffered values are discarded."""
        self._values.clear()
        self._end()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class Watchers:
    """The live watches of one value. A watch its consumer dropped removes itself: a plain
    set of weak references, so that "any watchers?" on every update is a truth test."""

    __slots__ = ("_refs",)

    def __init__(self) -> None:
        self._refs: set[weakref.ref[ValueWatch]] = set()

    def __bool__(self) -> bool:
        return bool(self._refs)

    def new(self, initial: int | None, *, closed: bool = False) -> ValueWatch:
        """A watch starting with ``initial`` (none if None); ended at once when ``closed``."""
        watch = ValueWatch()
        if closed:
            watch._end()
            return watch
        if initial is not None:
            watch._publish(initial)
        self._refs.add(weakref.ref(watch, self._refs.discard))
        return watch

    def publish(self, value: int) -> None:
        for watch in self._live():
            watch._publish(value)

    def end(self) -> None:
        """End every watch (the value's owner is closing)."""
        for watch in self._live():
            watch._end()
        self._refs.clear()

    def _live(self) -> list[ValueWatch]:
        return [watch for watch in (ref() for ref in list(self._refs)) if watch is not None]

"""Watching a node's value: a bounded async iterator per watcher."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["WATCH_QUEUE_SIZE", "ValueWatch"]

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

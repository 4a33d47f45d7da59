"""Deadlines for many short operations: one FIFO and one timer per timeout, not one each."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

__all__ = ["Deadline", "Reaper"]


class Deadline:
    """One task's deadline; :meth:`clear` it when the guarded section is over."""

    __slots__ = ("expired", "owner", "task", "timeout", "when")

    def __init__(self, task: asyncio.Task[Any], when: float, timeout: float) -> None:
        #: The task to cancel at ``when``; None once cleared or fired.
        self.task: asyncio.Task[Any] | None = task
        self.owner = task
        self.when = when
        self.timeout = timeout
        #: Set when the reaper cancelled the task for this deadline.
        self.expired = False

    def clear(self) -> None:
        self.task = None

    def fired(self) -> bool:
        """Whether a CancelledError the owner sees now is this deadline's and no one else's.

        Uncancels the owner when so, exactly as ``asyncio.timeout()`` does on expiry.
        """
        return self.expired and self.owner.uncancel() == 0


class Reaper:
    """Cancels tasks that overrun one fixed timeout.

    Does the job of ``asyncio.timeout()`` for many short operations at a fraction of its cost:
    all deadlines of a reaper are "start + the same timeout", so they come in nondecreasing
    order and one FIFO plus a single timer replace a timer per operation. A task cancelled by
    the reaper sees CancelledError at its current await, with ``deadline.expired`` set; the
    caller checks :meth:`Deadline.fired` and raises its own error.
    """

    __slots__ = ("_queue", "_timer", "timeout")

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._queue: deque[Deadline] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def start(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> Deadline:
        queue = self._queue
        while queue and queue[0].task is None:  # finished ones, usually in order
            queue.popleft()
        deadline = Deadline(task, loop.time() + self.timeout, self.timeout)
        queue.append(deadline)
        if self._timer is None:
            self._timer = loop.call_at(deadline.when, self._expire, loop)
        return deadline

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        now = loop.time()
        queue = self._queue
        while queue:
            head = queue[0]
            task = head.task
            if task is not None:
                if head.when > now:
                    self._timer = loop.call_at(head.when, self._expire, loop)
                    return
                head.expired = True
                head.task = None
                task.cancel()
            queue.popleft()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._queue.clear()

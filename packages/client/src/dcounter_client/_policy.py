"""When to retry a request, on which node, after how long: pure decisions, no I/O.

The clients (sync and async) run the same loop: send to :attr:`Attempts.node`, and on a
failure ask :meth:`Attempts.failed` what to do next. Everything that makes retries exact
lives here, so it is tested without sockets or clocks:

* a read may go to any node, so any failure moves it to the next one;
* a write moves to another node only while no attempt of it can have reached a node
  (:attr:`Failure.NOT_SENT`). Once one may have (:attr:`Failure.UNKNOWN`), the write is
  pinned to that node: only that node's memory of the Idempotency-Key can tell a retry
  from a new write, so sending it anywhere else could count it twice;
* retries back off exponentially with jitter, and stop at ``retries`` or at the total
  ``deadline``, whichever comes first. A pinned write that stops is indeterminate.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dcounter_client._errors import InvalidArgumentError

if TYPE_CHECKING:
    import random

__all__ = ["Attempts", "Failure", "GiveUp", "Retry", "RetryPolicy"]

#: Below this much time left, another attempt could not get an answer anyway.
_MIN_ATTEMPT = 0.001


class Failure(enum.Enum):
    """What a failed attempt says about whether the node received the request."""

    #: Certainly not received: connection refused, DNS failure, connect timeout.
    NOT_SENT = "not sent"
    #: Perhaps received and applied: a timeout or reset after sending, or a 5xx answer.
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Retry:
    """Send again to node ``node`` (an index) after ``delay`` seconds."""

    node: int
    delay: float


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Stop. ``indeterminate``: a write may have been applied on node ``node``."""

    node: int
    indeterminate: bool


@dataclass(frozen=True)
class RetryPolicy:
    """How hard the clients try; one instance is shared by every call of a client.

    ``retries``: how many times a request may be sent again after its first attempt
    (moving on to a node not tried yet in this call is free). ``deadline``: seconds from a
    call's start after which it is not sent again. ``backoff``: the first retry's delay;
    each later one doubles, up to ``max_backoff``, and is drawn between half and all of
    that (jitter, so clients that failed together do not retry together).
    """

    retries: int = 8
    deadline: float = 30.0
    backoff: float = 0.1
    max_backoff: float = 2.0

    def __post_init__(self) -> None:
        if type(self.retries) is not int or self.retries < 0:
            raise InvalidArgumentError(f"retries must be an int >= 0, got {self.retries!r}")
        for name in ("deadline", "backoff", "max_backoff"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not value >= 0:
                raise InvalidArgumentError(f"{name} must be a number >= 0, got {value!r}")
        if not self.deadline > 0:
            raise InvalidArgumentError(f"deadline must be > 0, got {self.deadline!r}")

    def begin(
        self, *, nodes: int, first: int, write: bool, now: float, rng: random.Random
    ) -> Attempts:
        """The retry state of one call over ``nodes`` nodes, first sent to ``first``."""
        return Attempts(self, nodes, first, write, now, rng)

    def delay(self, retry: int, rng: random.Random) -> float:
        """The pause before retry number ``retry`` (0-based) to an already tried node."""
        ceiling = min(self.max_backoff, self.backoff * 2.0 ** min(retry, 32))
        return rng.uniform(ceiling / 2, ceiling)


class Attempts:
    """The retry state of one logical request (see the module docstring)."""

    def __init__(
        self,
        policy: RetryPolicy,
        nodes: int,
        first: int,
        write: bool,
        now: float,
        rng: random.Random,
    ) -> None:
        if nodes < 1 or not 0 <= first < nodes:
            raise InvalidArgumentError(f"node {first} out of range for {nodes} node(s)")
        self._policy = policy
        self._nodes = nodes
        self._write = write
        self._rng = rng
        self._deadline = now + policy.deadline
        self._tried = {first}
        self._retries = 0
        #: The node the next attempt goes to.
        self.node = first
        #: True once a write may have been applied on :attr:`node`.
        self.pinned = False

    def timeout(self, per_attempt: float, now: float) -> float:
        """How long the next attempt may wait: ``per_attempt``, cut at the deadline."""
        return max(_MIN_ATTEMPT, min(per_attempt, self._deadline - now))

    def failed(self, failure: Failure, now: float) -> Retry | GiveUp:
        """The attempt on :attr:`node` failed with ``failure`` at ``now``: what next?"""
        if self._write and failure is Failure.UNKNOWN:
            self.pinned = True
        # A pinned write stays; anything else moves on (to the same node if it is alone).
        target = self.node if self.pinned else (self.node + 1) % self._nodes
        if target in self._tried:
            if self._retries >= self._policy.retries:
                return GiveUp(self.node, self.pinned)
            delay = self._policy.delay(self._retries, self._rng)
            self._retries += 1
        else:
            delay = 0.0
        if now + delay + _MIN_ATTEMPT >= self._deadline:
            return GiveUp(self.node, self.pinned)
        self._tried.add(target)
        self.node = target
        return Retry(target, delay)

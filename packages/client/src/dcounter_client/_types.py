"""The records the clients return."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["CounterPage", "CounterSnapshot", "Member", "NodeHealth"]


@dataclass(frozen=True, slots=True)
class CounterSnapshot:
    """One node's ``GET /counter``: its value, its replica id and every replica's counts.

    ``value == sum(increments.values()) - sum(decrements.values())``.
    """

    value: int
    replica: str
    increments: Mapping[str, int]
    decrements: Mapping[str, int]
    #: The URL of the node that answered.
    node: str


@dataclass(frozen=True, slots=True)
class CounterPage:
    """One page of a node's ``GET /counters``: names (in order) and their values.

    ``next`` is the ``after`` that asks for the following page, None on the last one.
    """

    counters: Mapping[str, int]
    next: str | None
    #: The URL of the node that answered.
    node: str


@dataclass(frozen=True, slots=True)
class NodeHealth:
    """What one node's ``GET /health`` said: ``ok`` only for a 200 ``{"status": "ok"}``.

    ``status`` is the node's status text, or why it could not be asked.
    """

    node: str
    ok: bool
    status: str


@dataclass(frozen=True, slots=True)
class Member:
    """One entry of a node's ``GET /members``: a cluster member as that node sees it.

    ``state`` is ``"alive"``, ``"suspect"``, ``"dead"`` or ``"left"``; ``since`` is when it
    entered that state (Unix seconds, the node's clock).
    """

    address: str
    replica: str
    state: str
    incarnation: int
    since: float

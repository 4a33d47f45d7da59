"""SCAN for the Redis front end: cursors over sorted counter names, and MATCH patterns.

Counter names are listed in sorted order a page at a time (``Counters.names(prefix,
after=...)``), so a page resumes after the last name of the previous one. Redis clients
treat the cursor as an unsigned 64-bit integer (``redis-cli --scan`` parses it as one), so
the name cannot travel in the cursor itself: :class:`ScanCursors` keeps "cursor -> last
name" for the most recent cursors, server-wide (a pooled client may continue a scan on
another connection). Names are never removed, so a resumed scan skips nothing present
from start to end; a name added during the scan may or may not be returned, as in Redis.

A MATCH pattern is Redis's glob (``*``, ``?``, ``[...]`` with ``^`` and ranges, ``\\`` to
escape). Its literal start is the prefix given to the listing, so ``page:*`` reads only the
names starting with ``page:``; the rest of a pattern filters that page.
"""

from __future__ import annotations

import re
import secrets
from collections import OrderedDict
from typing import Final

__all__ = ["ScanCursors", "compile_match"]

_GLOB_SPECIAL: Final = frozenset("*?[\\")


class ScanCursors:
    """The last name of recent SCAN pages, by cursor (0 is never a saved cursor).

    Holds the ``capacity`` most recently used cursors; an older one is forgotten, and
    :meth:`resume` then returns None (the client gets an error and may start over).
    """

    __slots__ = ("_capacity", "_next", "_saved")

    def __init__(self, capacity: int = 10_000, *, first: int | None = None) -> None:
        self._capacity = capacity
        self._saved: OrderedDict[int, str] = OrderedDict()
        # A random start: a cursor from before a restart is unknown, not someone else's.
        self._next = first if first is not None else 1 + secrets.randbelow(2**62)

    def __len__(self) -> int:
        return len(self._saved)

    def save(self, last_name: str) -> int:
        """A new cursor that resumes after ``last_name``."""
        cursor = self._next
        self._next = cursor + 1 if cursor < 2**63 - 1 else 1
        self._saved[cursor] = last_name
        if len(self._saved) > self._capacity:
            self._saved.popitem(last=False)
        return cursor

    def resume(self, cursor: int) -> str | None:
        """The name a page with ``cursor`` starts after; None if unknown or forgotten."""
        name = self._saved.get(cursor)
        if name is not None:
            self._saved.move_to_end(cursor)
        return name


def compile_match(pattern: str) -> tuple[str, re.Pattern[str] | None]:
    """``pattern``'s literal prefix, and a regex for the whole (None when the prefix says all).

    ``"page:*"`` gives ``("page:", None)``; ``"*:views"`` gives ``("", <regex>)``.
    """
    prefix: list[str] = []
    index = 0
    while index < len(pattern) and pattern[index] not in _GLOB_SPECIAL:
        prefix.append(pattern[index])
        index += 1
    if pattern[index:] == "*":
        return "".join(prefix), None
    return "".join(prefix), re.compile(_translate(pattern), re.DOTALL)


def _translate(pattern: str) -> str:
    """Redis's glob (``stringmatchlen``) as a regular expression."""
    out: list[str] = []
    index = 0
    size = len(pattern)
    while index < size:
        char = pattern[index]
        index += 1
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char == "\\" and index < size:
            out.append(re.escape(pattern[index]))
            index += 1
        elif char == "[":
            end = pattern.find("]", index + 1 if pattern[index : index + 1] == "^" else index)
            if end < 0:  # no closing bracket: Redis reads to the end as the class
                end = size
            body = pattern[index:end]
            index = end + 1
            negate = body.startswith("^")
            if negate:
                body = body[1:]
            out.append("[" + ("^" if negate else "") + _class(body) + "]" if body else "(?!)")
        else:
            out.append(re.escape(char))
    return "".join(out)


def _class(body: str) -> str:
    """The inside of a ``[...]`` class: ranges ``a-z`` kept, everything else literal."""
    parts: list[str] = []
    index = 0
    while index < len(body):
        char = body[index]
        if char == "\\" and index + 1 < len(body):
            parts.append(re.escape(body[index + 1]))
            index += 2
        elif index + 2 < len(body) and body[index + 1] == "-":
            low, high = sorted((char, body[index + 2]))
            parts.append(f"{re.escape(low)}-{re.escape(high)}")
            index += 3
        else:
            parts.append(re.escape(char))
            index += 1
    return "".join(parts)

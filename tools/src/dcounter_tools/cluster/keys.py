"""``dcounter-cluster run --keys N``: writes spread over N named counters, checked per key.

Pure code: the names, and the comparison of what a node holds with what the acknowledged
writes add up to, key by key. A key no write was acknowledged on is expected at 0, and a
node that never heard of a key holds 0 (a counter name exists once counted, at 0 before).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["DEFAULT_COUNTER", "MAX_KEYS", "key_mismatches", "key_names"]

#: The counter every write goes to without ``--keys`` (the nodes' ``/counter``).
DEFAULT_COUNTER: Final = "default"
#: ``--keys`` at most: every node's counters are read each poll while converging.
MAX_KEYS: Final = 10_000


def key_names(count: int) -> tuple[str, ...]:
    """``count`` counter names, ``key-0`` .. ``key-<count-1>``, zero-padded to one width
    (so they list in numeric order), and never the default counter's name."""
    width = len(str(max(count - 1, 0)))
    return tuple(f"key-{i:0{width}d}" for i in range(count))


def key_mismatches(
    expected: Mapping[str, int], held: Mapping[str, int]
) -> dict[str, tuple[int, int]]:
    """Per key that differs: (value held, value expected); {} when every key is exact."""
    wrong: dict[str, tuple[int, int]] = {}
    for name in sorted(expected.keys() | held.keys()):
        have, want = held.get(name, 0), expected.get(name, 0)
        if have != want:
            wrong[name] = (have, want)
    return wrong

"""The Redis commands as clients see them: their metadata, and those a counter refuses.

:class:`RespCommand` is one command's entry in the table
:mod:`~dcounter_node._resp_commands` runs (Redis's arity, flags, categories and key
positions, which ``COMMAND`` shows clients such as ``redis-cli``, and the API token scope
it needs); :data:`CRDT_REFUSED` names the Redis commands that would overwrite or delete a
value, answered with why a CRDT counter cannot do that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from dcounter_node._resp_wire import Replies

if TYPE_CHECKING:
    from collections.abc import Callable

    from dcounter_node._auth import Scope
    from dcounter_node._resp_commands import RespSession

__all__ = ["CRDT_REFUSED", "RespCommand", "command_info"]


@dataclass(frozen=True, slots=True)
class RespCommand:
    """One command as Redis describes it (``COMMAND INFO``), and what runs it."""

    name: str
    #: Redis's arity: exactly ``n`` arguments (the name included), or at least ``-n``.
    arity: int
    handler: Callable[[RespSession, list[bytes]], bytes]
    flags: tuple[str, ...]
    categories: tuple[str, ...]
    #: First key, last key, step (Redis's key positions; 0 0 0 without keys).
    keys: tuple[int, int, int] = (0, 0, 0)
    #: The token scope it needs once authenticated (None: any token).
    scope: Scope | None = None


def command_info(command: RespCommand) -> bytes:
    """The command's ``COMMAND INFO`` entry (Redis 7's ten fields)."""
    first, last, step = command.keys
    return Replies.array(
        [
            Replies.text(command.name),
            Replies.integer(command.arity),
            Replies.array([Replies.simple(flag) for flag in command.flags]),
            Replies.integer(first),
            Replies.integer(last),
            Replies.integer(step),
            Replies.array([Replies.simple(c) for c in command.categories]),
            Replies.array([]),
            Replies.array([]),
            Replies.array([]),
        ]
    )


#: Commands that would overwrite or delete a value: answered with why they cannot be.
CRDT_REFUSED: Final = frozenset(
    {
        "set",
        "setnx",
        "setex",
        "psetex",
        "mset",
        "msetnx",
        "getset",
        "getdel",
        "getex",
        "del",
        "unlink",
        "rename",
        "renamenx",
        "expire",
        "pexpire",
        "expireat",
        "pexpireat",
        "persist",
        "flushdb",
        "flushall",
        "incrbyfloat",
        "append",
        "setrange",
        "move",
        "copy",
        "restore",
        "swapdb",
    }
)

"""Arguments of Redis commands, read as Redis reads them; :class:`CommandError` refusals."""

from __future__ import annotations

from typing import Final

from dcounter_node._errors import NodeError

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "CommandError",
    "client_name",
    "counter_name",
    "parse_cursor",
    "parse_integer",
]

INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
_NOT_INTEGER: Final = "ERR value is not an integer or out of range"


class CommandError(NodeError):
    """A command refused; ``str(error)`` is the whole error reply (``ERR ...``, ...)."""


def parse_integer(arg: bytes) -> int:
    """A signed 64-bit decimal as Redis accepts it (no sign '+', spaces or leading zeros)."""
    if (arg.isdigit() and (arg[:1] != b"0" or len(arg) == 1)) or (
        arg[:1] == b"-" and arg[1:].isdigit() and arg[1:2] != b"0"
    ):
        value = int(arg)
        if INT64_MIN <= value <= INT64_MAX:
            return value
    raise CommandError(_NOT_INTEGER)


def parse_cursor(arg: bytes) -> int:
    """A SCAN cursor: an unsigned decimal."""
    if arg.isdigit() and len(arg) <= 20:
        return int(arg)
    raise CommandError("ERR invalid cursor")


def counter_name(key: bytes) -> str:
    """A key as a counter name (UTF-8 text)."""
    try:
        return key.decode()
    except UnicodeDecodeError:
        raise CommandError("ERR counter names must be UTF-8 text") from None


def client_name(arg: bytes) -> str:
    """A CLIENT SETNAME name: printable ASCII without spaces (empty clears it)."""
    if any(byte <= 0x20 or byte > 0x7E for byte in arg):
        raise CommandError(
            "ERR Client names cannot contain spaces, newlines or special characters."
        )
    return arg.decode()

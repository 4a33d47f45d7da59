"""Inline commands (a line such as ``INCRBY "page views" 5``) split into arguments, sans-IO.

The rules are Redis's, so that a line typed into telnet (or sent raw by a script that quotes
arguments as ``redis-cli`` prints them) means the same here as there:

* arguments are separated by runs of blanks (space, tab, CR, and before an argument also
  the other C ``isspace`` bytes, vertical tab and form feed);
* ``"..."`` takes the blanks inside as part of the argument, with the escapes ``\\n \\r \\t
  \\b \\a``, ``\\xHH`` (two hex digits) for any byte, and ``\\`` before any other byte for
  that byte itself (``\\"``, ``\\\\``);
* ``'...'`` takes everything inside as it is, except ``\\'`` for a quote;
* a quote may start in the middle of an argument (``a"b c"`` is ``ab c``) but a closing quote
  ends it: after it comes a blank or the end of the line, otherwise (``"a"b``) the line, like
  one with a quote never closed, has unbalanced quotes;
* ``""`` and ``''`` are empty arguments.

Unlike Redis (whose C parser stops at a NUL byte and drops the rest of the line), a NUL
byte is an ordinary byte.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["split_inline"]

#: Where the fast way (``bytes.split``) would split differently: quotes, and the two blanks
#: that only separate before an argument (inside one, Redis keeps them).
_NOT_PLAIN: Final = re.compile(rb"[\"'\x0b\x0c]").search
#: Blanks before an argument are C's ``isspace`` bytes: the next argument starts at a byte
#: that is not one.
_BLANK: Final = frozenset(b" \t\n\r\x0b\x0c")
_NOT_BLANK: Final = re.compile(rb"[^ \t\n\r\x0b\x0c]").search
#: Where an argument's unquoted start ends: at a separator or a quote.
_UNQUOTED_END: Final = re.compile(rb"[ \t\n\r\"']").search
#: A quoted part's body and its closing quote; possessive, so that a failed match is found
#: in one pass (each body byte has one reading, as in Redis's left-to-right scan).
_DOUBLE: Final = re.compile(rb'((?:\\x[0-9A-Fa-f]{2}|\\.|[^\\"])*+)"', re.DOTALL).match
_SINGLE: Final = re.compile(rb"((?:\\'|[^'])*+)'").match
_ESCAPE: Final = re.compile(rb"\\(?:x([0-9A-Fa-f]{2})|(.))", re.DOTALL).sub
_LETTERS: Final = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"a": b"\a"}
_DOUBLE_QUOTE: Final = 0x22


def split_inline(line: bytes) -> list[bytes] | None:
    """``line``'s arguments (none for a blank line), or None if its quotes are unbalanced.

    ``line`` is without its line ending.
    """
    if _NOT_PLAIN(line) is None:
        return line.split()  # splits at the same bytes when nothing is quoted
    args: list[bytes] = []
    end = len(line)
    pos = _next_argument(line, 0)
    while pos < end:
        stop = _UNQUOTED_END(line, pos)
        start, pos = pos, end if stop is None else stop.start()
        arg = line[start:pos]
        if pos < end and line[pos] in b"\"'":
            double = line[pos] == _DOUBLE_QUOTE
            quoted = (_DOUBLE if double else _SINGLE)(line, pos + 1)
            if quoted is None:  # never closed
                return None
            pos = quoted.end()
            if pos < end and line[pos] not in _BLANK:  # a closing quote must end the argument
                return None
            body = quoted[1]
            arg += _ESCAPE(_unescape, body) if double else body.replace(b"\\'", b"'")
        args.append(arg)
        pos = _next_argument(line, pos)
    return args


def _next_argument(line: bytes, pos: int) -> int:
    """Where the blanks from ``pos`` end."""
    found = _NOT_BLANK(line, pos)
    return len(line) if found is None else found.start()


def _unescape(escape: re.Match[bytes]) -> bytes:
    hex_digits, byte = escape.groups()
    if hex_digits is not None:
        return bytes.fromhex(hex_digits.decode())
    return _LETTERS.get(byte, byte)

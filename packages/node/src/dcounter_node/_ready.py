"""The ready line: what ``dcounter-node`` prints on stdout once it serves, and its parser.

It is the contract between a node process and whatever started it (the cluster launcher,
tests, benchmarks, scripts): one line, ``dcounter-node ready`` followed by ``key=value``
words, with the addresses actually bound (port 0 resolved), the replica id and the pid.
Readers ignore words they do not know, so fields can be added later.
"""

from __future__ import annotations

from dataclasses import dataclass

from dcounter_node._errors import NodeError

__all__ = ["READY_PREFIX", "ReadyLine", "ReadyLineError", "parse_ready_line"]

#: The words every ready line starts with.
READY_PREFIX = "dcounter-node ready"
_FIELDS = ("gossip", "http", "replica", "pid")


class ReadyLineError(NodeError, ValueError):
    """A line that starts like a ready line but lacks a field or has a malformed one."""


@dataclass(frozen=True, slots=True)
class ReadyLine:
    """A node's announcement: bound gossip and HTTP addresses, replica id, process id,
    and the Redis-protocol address when it serves one (``--resp``)."""

    gossip: str
    http: str
    replica: str
    pid: int
    resp: str | None = None

    def format(self) -> str:
        """The line as the node prints it (without the newline)."""
        return (
            f"{READY_PREFIX} gossip={self.gossip} http={self.http}"
            f" replica={self.replica} pid={self.pid}"
            + (f" resp={self.resp}" if self.resp is not None else "")
        )


def parse_ready_line(line: str | bytes) -> ReadyLine | None:
    """The :class:`ReadyLine` in ``line``; None if it is another line (a log line, say).

    Raises :class:`ReadyLineError` when it starts like a ready line but is incomplete.
    """
    text = line.decode("utf-8", errors="replace") if isinstance(line, bytes) else line
    words = text.split()
    if words[:2] != READY_PREFIX.split():
        return None
    fields: dict[str, str] = {}
    for word in words[2:]:
        key, sep, value = word.partition("=")
        if sep:
            fields[key] = value
    missing = [key for key in _FIELDS if not fields.get(key)]
    if missing:
        raise ReadyLineError(f"ready line without {', '.join(missing)}: {text.strip()!r}")
    if not (fields["pid"].isascii() and fields["pid"].isdigit()):
        raise ReadyLineError(f"ready line with a malformed pid: {text.strip()!r}")
    return ReadyLine(
        fields["gossip"],
        fields["http"],
        fields["replica"],
        int(fields["pid"]),
        fields.get("resp") or None,
    )

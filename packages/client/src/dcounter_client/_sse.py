"""A server-sent events decoder: lines in, event data out (no I/O)."""

from __future__ import annotations

__all__ = ["SSEDecoder"]


class SSEDecoder:
    """Feed the stream's lines (without their line ending) one by one.

    :meth:`feed` returns an event's data when the blank line ending it arrives, else None.
    Comments (``: keepalive``) and fields other than ``data`` are ignored; several ``data``
    lines of one event are joined with newlines, as the SSE specification says.
    """

    def __init__(self) -> None:
        self._data: list[str] = []

    def feed(self, line: str) -> str | None:
        if not line:
            if not self._data:
                return None
            data = "\n".join(self._data)
            self._data.clear()
            return data
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        if field == "data":
            self._data.append(value.removeprefix(" "))
        return None

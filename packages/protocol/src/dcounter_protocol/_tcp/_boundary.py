"""The one boundary where OS and asyncio failures become this library's errors."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Literal

from dcounter_protocol._errors import ConnectError, TransportError, TransportTimeoutError

if TYPE_CHECKING:
    from types import TracebackType

    from dcounter_protocol._tcp._deadlines import Deadline

__all__ = ["error_text", "os_errors"]


def error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class os_errors:
    """Run a network operation, raising only :class:`TransportError` subclasses.

    ``action`` names the operation ("dial to host:port"). ``deadline`` (cleared on the way
    out) turning into a cancellation raises :class:`TransportTimeoutError`, as does the
    kernel's own ETIMEDOUT; any other OSError raises ``error`` (:class:`ConnectError` unless
    given) with ``failed`` (default "<action> failed") and the cause. The deadline may also
    be set inside the block, once it turns out that the operation has to wait. A class
    rather than a generator context manager: it guards every message sent with the seed
    framing.
    """

    __slots__ = ("_action", "_error", "_failed", "deadline")

    def __init__(
        self,
        action: str,
        *,
        failed: str | None = None,
        error: type[TransportError] = ConnectError,
        deadline: Deadline | None = None,
    ) -> None:
        self._action = action
        self._failed = failed
        self._error = error
        self.deadline = deadline

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> Literal[False]:
        deadline = self.deadline
        if deadline is not None:
            deadline.clear()
        if exc is None:
            return False
        if isinstance(exc, asyncio.CancelledError):
            if deadline is not None and deadline.fired():
                raise TransportTimeoutError(
                    f"{self._action} timed out after {deadline.timeout:g}s"
                ) from None
        elif isinstance(exc, TimeoutError):  # the kernel's own (ETIMEDOUT)
            raise TransportTimeoutError(f"{self._action} timed out: {exc}") from exc
        elif isinstance(exc, OSError):
            failed = self._failed or f"{self._action} failed"
            raise self._error(f"{failed}: {error_text(exc)}") from exc
        return False

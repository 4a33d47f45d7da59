"""The one boundary where OS and asyncio failures become this library's errors."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from dcounter_protocol._errors import ConnectError, TransportError, TransportTimeoutError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from dcounter_protocol._tcp._deadlines import Deadline

__all__ = ["error_text", "os_errors"]


def error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


@contextlib.contextmanager
def os_errors(
    action: str,
    *,
    failed: str | None = None,
    error: type[TransportError] = ConnectError,
    deadline: Deadline | None = None,
) -> Iterator[None]:
    """Run a network operation, raising only :class:`TransportError` subclasses.

    ``action`` names the operation ("dial to host:port"). ``deadline`` (cleared on the way
    out) turning into a cancellation raises :class:`TransportTimeoutError`, as does the
    kernel's own ETIMEDOUT; any other OSError raises ``error`` (:class:`ConnectError` unless
    given) with ``failed`` (default "<action> failed") and the cause.
    """
    try:
        yield
    except asyncio.CancelledError:
        if deadline is not None and deadline.fired():
            raise TransportTimeoutError(f"{action} timed out after {deadline.timeout:g}s") from None
        raise
    except TimeoutError as exc:  # the kernel's own (ETIMEDOUT)
        raise TransportTimeoutError(f"{action} timed out: {exc}") from exc
    except OSError as exc:
        raise error(f"{failed or f'{action} failed'}: {error_text(exc)}") from exc
    finally:
        if deadline is not None:
            deadline.clear()

"""``GET /counter/watch`` and ``GET /counters/{name}/watch``: a counter's value as
server-sent events.

:func:`watched_values` decides what to send (the value shown now, each change, a keepalive
after ``keepalive`` seconds of silence, the committed value while storage fails);
:func:`event_stream` writes it as ``text/event-stream``.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Final

from aiohttp import web

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from dcounter_node._watch import ValueWatch

__all__ = ["event_stream", "watched_values"]

#: Seconds between checks of a watched value while storage fails (its retries back off to
#: 1 s): the committed value moves when a retried commit succeeds, which no watch reports.
_STORAGE_RECHECK: Final = 0.5


async def event_stream(
    request: web.Request, values: AsyncIterator[int | None]
) -> web.StreamResponse:
    """Answer ``request`` with ``values`` as events (None: a keepalive comment line)."""
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    try:
        async for value in values:
            if value is None:
                await response.write(b": keepalive\n\n")
            else:
                await response.write(b'data: {"value": %d}\n\n' % value)
    except ConnectionError:
        return response  # the client went away
    return response


async def watched_values(
    changes: ValueWatch,
    shown: Callable[[int | None], int],
    *,
    failing: Callable[[], bool],
    closing: asyncio.Event,
    keepalive: float,
) -> AsyncIterator[int | None]:
    """The value shown now, then each change of it; None when ``keepalive`` passed in
    silence. ``changes`` are the counter's live values; ``shown(value)`` is what to show for
    one (``shown(None)``: for the counter now), the committed value while ``failing()``.

    Ends when ``changes`` ends or ``closing`` is set (the server begins shutting down).
    """
    loop = asyncio.get_running_loop()
    ended = asyncio.ensure_future(closing.wait())
    pending: asyncio.Future[int] | None = None
    last = shown(None)
    quiet_since = loop.time()
    try:
        yield last
        while not ended.done():
            if pending is None:
                pending = asyncio.ensure_future(anext(changes))
            was_failing = failing()
            keepalive_at = quiet_since + keepalive
            timeout = keepalive_at - loop.time()
            if was_failing:
                timeout = min(timeout, _STORAGE_RECHECK)
            done, _ = await asyncio.wait(
                (pending, ended),
                timeout=max(0.0, timeout),
                return_when=asyncio.FIRST_COMPLETED,
            )
            if ended in done:
                return
            if pending in done:
                try:
                    value = pending.result()
                except StopAsyncIteration:
                    return
                pending = None
                value = shown(value)
            elif was_failing or failing():
                value = shown(None)  # a retried commit may have succeeded
            else:
                value = last
            if value != last:
                last, quiet_since = value, loop.time()
                yield value
            elif loop.time() >= keepalive_at:
                quiet_since = loop.time()
                yield None
    finally:
        ended.cancel()
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await pending
        await changes.aclose()

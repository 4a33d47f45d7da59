"""Rate-limited warnings: repeated bad input logs one line per interval, not one per event."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import logging

__all__ = ["RateLimitedLog"]


class RateLimitedLog:
    """Logs a recurring warning once per interval per key, counting what it held back."""

    _MAX_KEYS = 1024

    def __init__(self, logger: logging.Logger, interval: float = 10.0) -> None:
        self._logger = logger
        self._interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, key: str, msg: str, *args: object) -> None:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        if len(self._last) >= self._MAX_KEYS:
            self._last.clear()
            self._suppressed.clear()
        self._last[key] = now
        held = self._suppressed.pop(key, 0)
        if held:
            self._logger.warning(msg + " (%d similar messages suppressed)", *args, held)
        else:
            self._logger.warning(msg, *args)

"""Fixtures shared by every test area."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pytest

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

REPO_ROOT = Path(__file__).resolve().parents[1]
#: The Go reference's wire vectors, part of the test data (see the README next to them).
GOLDEN_FILE = REPO_ROOT / "tests" / "protocol" / "golden" / "seed-wire-vectors.json"


@pytest.fixture(scope="session")
def golden() -> dict[str, Any]:
    """The Go reference's wire vectors (always present: a missing file is an error)."""
    data: dict[str, Any] = json.loads(GOLDEN_FILE.read_text(encoding="utf-8"))
    return data


#: Upper bound for one wait on a condition; real waits end far sooner.
WAIT_DEADLINE = 20.0


class WaitUntil(Protocol):
    async def __call__(
        self, predicate: Callable[[], Awaitable[bool]], *, seconds: float = ..., what: str = ...
    ) -> None: ...


async def _wait_until(
    predicate: Callable[[], Awaitable[bool]],
    *,
    seconds: float = WAIT_DEADLINE,
    what: str = "condition",
) -> None:
    """Poll ``predicate`` until it holds; fail the test after ``seconds``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not await predicate():
        if loop.time() > deadline:
            pytest.fail(f"timed out after {seconds} s waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
def wait_until() -> WaitUntil:
    """``await wait_until(async_predicate, seconds=..., what=...)``: a condition with a deadline."""
    return _wait_until

"""Fixtures shared by every test area."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pytest

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

REPO_ROOT = Path(__file__).resolve().parents[1]
#: The reference implementation's vectors live beside the repository, never inside it.
GOLDEN_DIR = Path(os.environ.get("DCOUNTER_GOLDEN_DIR", REPO_ROOT.parent / "shared" / "golden"))
GOLDEN_FILE = GOLDEN_DIR / "seed-wire-vectors.json"


@pytest.fixture(scope="session")
def golden() -> dict[str, Any]:
    """The Go reference's wire vectors; tests that need them skip, saying why, when absent."""
    if not GOLDEN_FILE.is_file():
        pytest.skip(
            f"golden vectors not found at {GOLDEN_FILE}: they come from ../shared/golden "
            "(set DCOUNTER_GOLDEN_DIR to point elsewhere)"
        )
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

"""Fixtures shared by every test area."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

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

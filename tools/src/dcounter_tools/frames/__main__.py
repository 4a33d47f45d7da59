"""``python -m dcounter_tools.frames``."""

from __future__ import annotations

from dcounter_tools.frames.cli import run

run()

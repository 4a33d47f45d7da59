"""``python -m dcounter_tools.cluster``."""

from __future__ import annotations

from dcounter_tools.cluster.cli import run

run()

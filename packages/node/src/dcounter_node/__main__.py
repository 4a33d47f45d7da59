"""``python -m dcounter_node``: the same as the ``dcounter-node`` command."""

from __future__ import annotations

from dcounter_node._cli import run

if __name__ == "__main__":
    run()

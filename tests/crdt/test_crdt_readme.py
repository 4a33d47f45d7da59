"""Each example in packages/crdt/README.md runs on its own and prints what its comments say."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

README = Path(__file__).resolve().parents[2] / "packages" / "crdt" / "README.md"


def _examples() -> Iterator[str]:
    yield from re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)


def _printed_in_comments(code: str) -> list[str]:
    """What the example's ``print(...)  # text`` lines say they print."""
    return re.findall(r"^\s*print\(.*\)\s+# (.*)$", code, re.MULTILINE)


@pytest.mark.parametrize("code", list(_examples()))
def test_readme_example_runs_alone(code: str, capsys: pytest.CaptureFixture[str]) -> None:
    exec(compile(code, str(README), "exec"), {})
    assert capsys.readouterr().out.splitlines() == _printed_in_comments(code)


def test_readme_has_the_counter_and_map_examples() -> None:
    assert len(list(_examples())) == 3

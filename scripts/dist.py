"""Build every distribution's wheel and sdist into one folder (``hatch run dist``).

Usage: ``python scripts/dist.py [OUT_DIR]`` (default ``dist`` at the repository root). The
folder is emptied first, then each workspace member of the default Hatch environment is
built with uv (the one Hatch runs with; ``HATCH_UV``), so that folder alone serves
``pip install --find-links dist dcounter-node``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

ROOT = Path(__file__).resolve().parents[1]


def members() -> list[Path]:
    """The distributions' folders: the default environment's workspace members, in order."""
    with (ROOT / "pyproject.toml").open("rb") as file:
        config = tomllib.load(file)
    entries = config["tool"]["hatch"]["envs"]["default"]["workspace"]["members"]
    return [ROOT / (entry if isinstance(entry, str) else entry["path"]) for entry in entries]


def uv() -> str:
    """Hatch's own uv when run through Hatch, else one on PATH."""
    found = os.environ.get("HATCH_UV") or shutil.which("uv")
    if not found:
        raise SystemExit("dist: uv not found; run this through `hatch run dist`")
    return found


def build(out_dir: Path) -> list[Path]:
    """Empty ``out_dir`` and build every member into it; the artifacts, sorted."""
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    for member in members():
        subprocess.run(
            [uv(), "build", "--quiet", "--out-dir", str(out_dir), str(member)], check=True
        )
    return sorted(path for path in out_dir.iterdir() if path.suffix in {".whl", ".gz"})


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) > 1 or any(arg.startswith("-") for arg in args):
        print("usage: python scripts/dist.py [OUT_DIR]", file=sys.stderr)
        return 2
    out_dir = Path(args[0]) if args else ROOT / "dist"
    for artifact in build(out_dir):
        print(artifact.relative_to(out_dir.parent) if out_dir.is_absolute() else artifact)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

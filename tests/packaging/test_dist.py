"""`hatch run dist` builds installable distributions: each one installs alone from dist/.

What the README promises a user who has only the dist/ folder: `pip install --find-links dist
dcounter-node` (and each other distribution) works in a fresh virtual environment, pulling
only third-party dependencies (msgpack, aiohttp, ...) from the index, and every wheel and
sdist carries the license. One build and one virtual environment per distribution keep the
cost to seconds (uv, which Hatch runs with, when available).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _distributions() -> dict[str, tuple[str, tuple[str, ...]]]:
    """Each workspace member: distribution name -> (import name, its console scripts)."""
    with (REPO_ROOT / "pyproject.toml").open("rb") as file:
        root = tomllib.load(file)
    found = {}
    for entry in root["tool"]["hatch"]["envs"]["default"]["workspace"]["members"]:
        folder = REPO_ROOT / (entry if isinstance(entry, str) else entry["path"])
        with (folder / "pyproject.toml").open("rb") as file:
            config = tomllib.load(file)
        (package,) = config["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
        scripts = tuple(config["project"].get("scripts", {}))
        found[config["project"]["name"]] = (Path(package).name, scripts)
    return found


#: distribution -> (import name, console scripts whose --help must work).
DISTRIBUTIONS = _distributions()
LICENSE = (REPO_ROOT / "LICENSE").read_bytes()
#: Building and installing hit the package index on a cold cache.
COMMAND_TIMEOUT = 300


def _run(*argv: str | Path) -> str:
    done = subprocess.run(
        [str(arg) for arg in argv],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, f"{argv} exited {done.returncode}:\n{done.stdout}{done.stderr}"
    return done.stdout


def _uv() -> str | None:
    return os.environ.get("HATCH_UV") or shutil.which("uv")


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder `hatch run dist` fills, built once into a temporary directory."""
    out = tmp_path_factory.mktemp("build") / "dist"
    _run(sys.executable, REPO_ROOT / "scripts" / "dist.py", out)
    return out


def _versions(dist: Path) -> dict[str, str]:
    """distribution name -> version, from the wheels' file names."""
    versions = {}
    for wheel in dist.glob("*.whl"):
        name, version = wheel.name.split("-")[:2]
        versions[name.replace("_", "-")] = version
    return versions


def _fresh_python(directory: Path) -> Path:
    uv = _uv()
    if uv is not None:
        _run(uv, "venv", "--quiet", "--python", sys.executable, directory)
    else:
        _run(sys.executable, "-m", "venv", directory)
    return directory / "bin" / "python"


def _install(python: Path, dist: Path, name: str) -> None:
    uv = _uv()
    if uv is not None:
        _run(uv, "pip", "install", "--quiet", "--python", python, "--find-links", dist, name)
    else:
        _run(python, "-m", "pip", "install", "--quiet", "--find-links", dist, name)


def test_dist_holds_one_wheel_and_one_sdist_per_distribution(dist: Path) -> None:
    expected = sorted(
        f"{name.replace('-', '_')}-{version}{suffix}"
        for name, version in _versions(dist).items()
        for suffix in ("-py3-none-any.whl", ".tar.gz")
    )
    assert sorted(_versions(dist)) == sorted(DISTRIBUTIONS)
    # (uv also leaves a .gitignore there.)
    assert sorted(p.name for p in dist.iterdir() if not p.name.startswith(".")) == expected


def test_every_wheel_and_sdist_carries_the_license(dist: Path) -> None:
    for wheel in dist.glob("*.whl"):
        with zipfile.ZipFile(wheel) as archive:
            (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
            assert archive.read(name) == LICENSE, wheel.name
    for sdist in dist.glob("*.tar.gz"):
        with tarfile.open(sdist) as archive:
            top = sdist.name.removesuffix(".tar.gz")
            member = archive.extractfile(f"{top}/LICENSE")
            assert member is not None, sdist.name
            assert member.read() == LICENSE, sdist.name


def test_the_distributions_are_the_four_layers_at_least() -> None:
    assert {"dcounter-crdt", "dcounter-protocol", "dcounter-node", "dcounter-tools"} <= set(
        DISTRIBUTIONS
    )
    assert DISTRIBUTIONS["dcounter-node"] == ("dcounter_node", ("dcounter-node",))


@pytest.mark.parametrize("name", list(DISTRIBUTIONS))
def test_each_distribution_installs_alone_from_dist(dist: Path, tmp_path: Path, name: str) -> None:
    python = _fresh_python(tmp_path / "venv")
    _install(python, dist, name)
    module, scripts = DISTRIBUTIONS[name]
    report = _run(
        python,
        "-c",
        "import importlib.metadata as m, json, sys; import " + module + "; "
        "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions() "
        "if d.metadata['Name'].startswith('dcounter-')}))",
    )
    # Every dcounter distribution it needed came from dist/, at the version built there.
    installed = json.loads(report)
    assert name in installed
    assert installed == {dep: _versions(dist)[dep] for dep in installed}
    for script in scripts:
        assert f"usage: {script}" in _run(python.parent / script, "--help")

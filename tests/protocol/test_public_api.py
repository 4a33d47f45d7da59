"""The public API of dcounter_protocol (and dcounter_crdt below it): importable and typed.

As trio does: every name in ``__all__`` exists, the package ships ``py.typed``, every public
function and method is fully annotated, and a type checker (which also resolves the
annotations, many of them imported only for type checking) sees no ``Any`` in any of them.
"""

from __future__ import annotations

import importlib
import inspect
import typing
from pathlib import Path

import pytest
from mypy import api as mypy_api

if typing.TYPE_CHECKING:
    from types import ModuleType

PACKAGES = ["dcounter_protocol", "dcounter_crdt"]


def _public(package: str) -> tuple[ModuleType, list[str]]:
    module = importlib.import_module(package)
    return module, [name for name in module.__all__ if not name.startswith("__")]


def _unannotated(function: typing.Callable[..., object]) -> list[str]:
    """The parameters (and "return") of ``function`` that carry no annotation."""
    signature = inspect.signature(function)
    missing = [
        name
        for name, parameter in signature.parameters.items()
        if name not in ("self", "cls") and parameter.annotation is inspect.Parameter.empty
    ]
    if signature.return_annotation is inspect.Signature.empty:
        missing.append("return")
    return missing


def _members(owner: type, package: str) -> list[tuple[str, typing.Callable[..., object]]]:
    """The functions a class defines itself (not inherited from outside the package)."""
    found: list[tuple[str, typing.Callable[..., object]]] = []
    for name, value in vars(owner).items():
        if name.startswith("_") and name != "__init__":
            continue
        function = value.fget if isinstance(value, property) else value
        function = getattr(function, "__func__", function)
        if inspect.isfunction(function) and function.__module__.startswith(package):
            found.append((name, function))
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_package_ships_py_typed(package: str) -> None:
    module = importlib.import_module(package)
    assert module.__file__ is not None
    assert (Path(module.__file__).parent / "py.typed").is_file()


@pytest.mark.parametrize("package", PACKAGES)
def test_every_name_in_all_is_importable(package: str) -> None:
    module, names = _public(package)
    assert [name for name in names if not hasattr(module, name)] == []
    assert len(set(module.__all__)) == len(module.__all__)


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_function_and_method_is_annotated(package: str) -> None:
    module, names = _public(package)
    missing: list[str] = []
    for name in names:
        value = getattr(module, name)
        if inspect.isfunction(value):
            missing += [f"{name}({param})" for param in _unannotated(value)]
        elif inspect.isclass(value):
            for member, function in _members(value, package):
                missing += [f"{name}.{member}({param})" for param in _unannotated(function)]
    assert missing == []


@pytest.mark.parametrize("package", PACKAGES)
def test_type_checker_sees_no_any_in_public_names(package: str, tmp_path: Path) -> None:
    _, names = _public(package)
    probe = tmp_path / "probe.py"
    probe.write_text(
        "".join(f"from {package} import {name}\nreveal_type({name})\n" for name in names),
        encoding="utf-8",
    )
    stdout, stderr, status = mypy_api.run(
        ["--strict", "--no-incremental", "--cache-dir", str(tmp_path / "cache"), str(probe)]
    )
    revealed = [line for line in stdout.splitlines() if "Revealed type" in line]
    assert (status, stderr) == (0, ""), stdout
    assert len(revealed) == len(names)
    assert [line for line in revealed if "Any" in line] == []

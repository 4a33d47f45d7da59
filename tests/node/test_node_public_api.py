"""The public surface of dcounter_node: every name in `__all__` imports, lazily where costly."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import dcounter_node


@pytest.mark.parametrize("name", dcounter_node.__all__)
def test_every_public_name_imports(name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from dcounter_node import {name}", namespace)
    assert namespace[name] is getattr(dcounter_node, name)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        dcounter_node.no_such_name  # noqa: B018


def test_dir_lists_the_lazy_names() -> None:
    assert set(dcounter_node.__all__) <= set(dir(dcounter_node))


def test_using_the_node_loads_neither_aiohttp_nor_sqlite() -> None:
    # A fresh interpreter: this test process has loaded both already.
    code = (
        "import sys\n"
        "from dcounter_node import Node, NodeConfig, PeerManager\n"
        "PeerManager(peers=['127.0.0.1:1'])\n"
        "heavy = ('aiohttp', 'sqlite3', 'dcounter_node._http_server',"
        " 'dcounter_node._storage_sqlite')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
        "from dcounter_node import SQLiteStore, start_http_server\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    before, after = result.stdout.splitlines()
    assert before == "[]"
    assert after == repr(
        sorted(
            ("aiohttp", "sqlite3", "dcounter_node._http_server", "dcounter_node._storage_sqlite")
        )
    )


def test_lazy_names_are_the_modules_own_objects() -> None:
    http = importlib.import_module("dcounter_node._http_server")
    assert dcounter_node.HTTPServer is http.HTTPServer

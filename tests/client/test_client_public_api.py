"""The public surface of dcounter_client, and the two clients matching method for method."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys

import dcounter_client
from dcounter_client import AsyncClient, Client


def test_all_names_are_importable() -> None:
    missing = [name for name in dcounter_client.__all__ if not hasattr(dcounter_client, name)]
    assert missing == []


def test_errors_form_one_tree() -> None:
    errors = [
        dcounter_client.IndeterminateError,
        dcounter_client.InvalidArgumentError,
        dcounter_client.RejectedError,
        dcounter_client.ResponseError,
        dcounter_client.UnavailableError,
    ]
    assert all(issubclass(e, dcounter_client.ClientError) for e in errors)
    assert issubclass(dcounter_client.InvalidArgumentError, ValueError)


def test_sync_and_async_clients_offer_the_same_methods() -> None:
    def api(cls: type) -> dict[str, inspect.Signature]:
        return {
            name: inspect.signature(member)
            for name, member in vars(cls).items()
            if not name.startswith("_") and callable(member)
        }

    sync, asynchronous = api(Client), api(AsyncClient)
    assert sync.pop("close") == asynchronous.pop("aclose")
    assert sync.keys() == asynchronous.keys()
    for name, signature in sync.items():
        assert signature.parameters == asynchronous[name].parameters, name
    assert inspect.signature(Client.__init__) == inspect.signature(AsyncClient.__init__)


def test_importing_the_client_loads_no_other_dcounter_package() -> None:
    code = "import sys, dcounter_client; print(*sorted(m.split('.')[0] for m in sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert {name for name in loaded if name.startswith("dcounter")} == {"dcounter_client"}


def test_version_is_a_release_number() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", dcounter_client.__version__)

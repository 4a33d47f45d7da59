"""The public surface of dcounter_crdt: what `__all__` promises is really there."""

from __future__ import annotations

import re

import dcounter_crdt


def test_all_names_are_importable() -> None:
    missing = [name for name in dcounter_crdt.__all__ if not hasattr(dcounter_crdt, name)]
    assert missing == []


def test_all_lists_the_contract_api() -> None:
    expected = {
        "MAX_COUNT",
        "CRDTError",
        "CountOverflowError",
        "CounterState",
        "GCounter",
        "InvalidAmountError",
        "InvalidReplicaIdError",
        "InvalidStateError",
        "PNCounter",
        "__version__",
    }
    assert set(dcounter_crdt.__all__) == expected


def test_version_is_a_release_number() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", dcounter_crdt.__version__)

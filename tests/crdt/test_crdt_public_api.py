"""The public surface of dcounter_crdt: what `__all__` promises is really there."""

from __future__ import annotations

import re

import dcounter_crdt


def test_all_names_are_importable() -> None:
    missing = [name for name in dcounter_crdt.__all__ if not hasattr(dcounter_crdt, name)]
    assert missing == []


def test_all_lists_the_contract_api() -> None:
    expected = {
        "DEFAULT_KEY",
        "DEFAULT_MAX_KEYS",
        "DEFAULT_MAX_KEY_LENGTH",
        "MAX_COUNT",
        "CRDTError",
        "CountOverflowError",
        "CounterMapState",
        "CounterState",
        "GCounter",
        "InvalidAmountError",
        "InvalidKeyError",
        "InvalidLimitError",
        "InvalidReplicaIdError",
        "InvalidStateError",
        "KeyLimitError",
        "KeyTooLongError",
        "PNCounter",
        "PNCounterMap",
        "TooManyKeysError",
        "__version__",
    }
    assert set(dcounter_crdt.__all__) == expected


def test_version_is_a_release_number() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", dcounter_crdt.__version__)

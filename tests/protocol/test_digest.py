"""The state digest: the reference's serialization, whatever the map order."""

from __future__ import annotations

import random

import msgpack
import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from dcounter_crdt import MAX_COUNT
from dcounter_protocol import CountOutOfRangeError, ProtocolError, serialize_state, state_digest

profile = settings.get_profile("protocol")

ids = st.one_of(
    st.integers(min_value=1, max_value=65535).map(lambda port: f"127.0.0.1:{port}"),
    st.text(min_size=1, max_size=12),
)
count_maps = st.dictionaries(ids, st.integers(min_value=0, max_value=MAX_COUNT), max_size=12)


def _reference_structure(
    increments: dict[str, int], decrements: dict[str, int]
) -> list[list[dict[str, object]]]:
    ids = sorted(increments.keys() | decrements.keys())
    return [
        [{"NodeID": node, "Value": increments.get(node, 0)} for node in ids],
        [{"NodeID": node, "Value": decrements.get(node, 0)} for node in ids],
    ]


def test_empty_state_serializes_to_two_empty_arrays() -> None:
    assert serialize_state({}, {}).hex() == "929090"


def test_element_is_a_nodeid_value_map_with_uint64_value() -> None:
    assert serialize_state({"a": 1}, {}).hex() == (
        "9291" + "82a64e6f64654944a161a556616c7565cf0000000000000001"
        "91" + "82a64e6f64654944a161a556616c7565cf0000000000000000"
    )


def test_sixteen_ids_use_an_array16_header() -> None:
    serialized = serialize_state({f"{i:02d}": 1 for i in range(16)}, {})
    assert serialized[:4].hex() == "92dc0010"


def test_zero_entry_changes_the_digest_versus_absence() -> None:
    assert state_digest({"a": 0}, {}) != state_digest({}, {})


def test_zero_in_one_map_equals_zero_in_both() -> None:
    assert serialize_state({"a": 0}, {}) == serialize_state({"a": 0}, {"a": 0})


def test_digest_is_xxhash64_of_the_serialization() -> None:
    increments, decrements = {"a": 5, "b": 2**40}, {"a": 1}
    expected = xxhash.xxh64_intdigest(serialize_state(increments, decrements), seed=0)
    assert state_digest(increments, decrements) == expected


def test_ids_sort_by_utf8_bytes() -> None:
    # U+00E4 (2 bytes in UTF-8) sorts after every ASCII id, as with Go's sort.Strings.
    serialized = serialize_state({"äpfel": 1, "zeta": 2, "Zeta": 3}, {})
    assert [serialized.find(s.encode()) for s in ("Zeta", "zeta", "äpfel")] == sorted(
        serialized.find(s.encode()) for s in ("Zeta", "zeta", "äpfel")
    )


@pytest.mark.parametrize("count", [-1, MAX_COUNT + 1])
def test_count_outside_uint64_is_rejected(count: int) -> None:
    with pytest.raises(CountOutOfRangeError):
        serialize_state({"a": count}, {})


def test_digest_error_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        state_digest({}, {"b": -2})


@profile
@given(count_maps, count_maps, st.integers(min_value=0, max_value=2**32))
def test_digest_does_not_depend_on_map_order(
    increments: dict[str, int], decrements: dict[str, int], seed: int
) -> None:
    rng = random.Random(seed)
    shuffled_inc = list(increments.items())
    shuffled_dec = list(decrements.items())
    rng.shuffle(shuffled_inc)
    rng.shuffle(shuffled_dec)
    assert state_digest(dict(shuffled_inc), dict(shuffled_dec)) == state_digest(
        increments, decrements
    )


@profile
@given(
    st.dictionaries(ids, st.integers(min_value=2**32, max_value=MAX_COUNT), max_size=30),
    st.dictionaries(ids, st.integers(min_value=2**32, max_value=MAX_COUNT), max_size=30),
)
def test_serialization_equals_msgpack_of_the_reference_structure(
    increments: dict[str, int], decrements: dict[str, int]
) -> None:
    # Where msgpack-python also writes uint64 (every value >= 2**32 and no zero fill needed),
    # its bytes and ours must agree exactly.
    decrements = {k: v for k, v in decrements.items() if k in increments}
    increments = {**dict.fromkeys(decrements, 2**32), **increments}
    decrements = {k: decrements.get(k, 2**33) for k in increments}
    expected = msgpack.packb(_reference_structure(increments, decrements))
    assert serialize_state(increments, decrements) == expected


@profile
@given(count_maps, count_maps)
def test_serialization_decodes_to_the_reference_structure(
    increments: dict[str, int], decrements: dict[str, int]
) -> None:
    unpacked = msgpack.unpackb(serialize_state(increments, decrements), raw=False)
    assert unpacked == _reference_structure(increments, decrements)

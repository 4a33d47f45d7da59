"""Bucketed digests of named counters: incremental equals recomputed, equal iff equal."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dcounter_crdt import CounterMapState, CounterState
from dcounter_protocol import (
    NAMED_BUCKETS,
    BucketDigests,
    InvalidOptionError,
    key_bucket,
    key_hash,
)

_names = st.text(min_size=1, max_size=8)
_counters = st.builds(
    CounterState.from_maps,
    st.dictionaries(st.sampled_from(["a", "b", "c"]), st.integers(1, 2**64 - 1), max_size=3),
    st.dictionaries(st.sampled_from(["a", "b", "c"]), st.integers(1, 2**64 - 1), max_size=3),
).filter(bool)
_states = st.dictionaries(_names, _counters, max_size=30).map(CounterMapState)


def _bucket_states(state: CounterMapState, buckets: int) -> list[dict[str, CounterState]]:
    split: list[dict[str, CounterState]] = [{} for _ in range(buckets)]
    for name, counter in state.counters.items():
        split[key_bucket(name, buckets)][name] = counter
    return split


@settings(settings.get_profile("protocol"))
@given(_states, st.lists(st.tuples(_names, _counters), max_size=30))
def test_updating_one_name_at_a_time_equals_recomputing(
    start: CounterMapState, changes: list[tuple[str, CounterState]]
) -> None:
    digests = BucketDigests.of(start, 16)
    state = start
    for name, counter in changes:
        state = state.merged(CounterMapState({name: counter}))
        digests.update(name, state.get(name))
    fresh = BucketDigests.of(state, 16)
    assert (digests.root, digests.digests) == (fresh.root, fresh.digests)
    assert len(digests) == len(state)


@settings(settings.get_profile("protocol"))
@given(_states, _states)
def test_bucket_digests_are_equal_exactly_where_the_states_are(
    ours: CounterMapState, theirs: CounterMapState
) -> None:
    a, b = BucketDigests.of(ours, 8), BucketDigests.of(theirs, 8)
    same = [x == y for x, y in zip(_bucket_states(ours, 8), _bucket_states(theirs, 8), strict=True)]
    assert [x == y for x, y in zip(a.digests, b.digests, strict=True)] == same
    assert a.differing(b.digests) == [i for i, equal in enumerate(same) if not equal]
    assert (a.root == b.root) == (ours == theirs)


def test_an_empty_state_removes_the_name() -> None:
    digests = BucketDigests(4)
    digests.update("pages/home", CounterState.from_maps({"a": 1}))
    assert digests.root != 0
    digests.update("pages/home", CounterState.empty())
    assert (digests.root, digests.digests, len(digests)) == (0, (0, 0, 0, 0), 0)


def test_bucket_keys_lists_each_name_with_its_hash() -> None:
    state = CounterState.from_maps({"a": 3}, {"b": 1})
    digests = BucketDigests()
    digests.update("pages/home", state)
    bucket = key_bucket("pages/home")
    assert digests.bucket_keys(bucket) == {"pages/home": key_hash("pages/home", state)}
    assert digests.digests[bucket] == digests.root == key_hash("pages/home", state)


def test_the_hash_covers_the_name_and_every_count() -> None:
    state = CounterState.from_maps({"a": 3}, {"b": 1})
    hashes = {
        key_hash("x", state),
        key_hash("y", state),
        key_hash("x", CounterState.from_maps({"a": 4}, {"b": 1})),
        key_hash("x", CounterState.from_maps({"a": 3}, {"b": 2})),
        key_hash("x", CounterState.from_maps({"a": 3, "b": 1})),
    }
    assert len(hashes) == 5


def test_known_values_pin_the_documented_functions() -> None:
    # bucket = xxh3_64("pages/home") mod 4096; the hash over the documented bytes.
    import struct

    import xxhash

    name = b"pages/home"
    assert key_bucket("pages/home") == xxhash.xxh3_64_intdigest(name) % NAMED_BUCKETS
    expected = xxhash.xxh3_64_intdigest(
        struct.pack(">I", len(name))
        + name
        + struct.pack(">H", 1)
        + b"a"
        + struct.pack(">QQ", 5, 0)
        + struct.pack(">H", 1)
        + b"b"
        + struct.pack(">QQ", 0, 2)
    )
    assert key_hash("pages/home", CounterState.from_maps({"a": 5}, {"b": 2})) == expected


@pytest.mark.parametrize("buckets", [0, 3, -4, 2.0])
def test_bucket_count_must_be_a_power_of_two(buckets: object) -> None:
    with pytest.raises(InvalidOptionError):
        BucketDigests(buckets)  # type: ignore[arg-type]


@settings(settings.get_profile("protocol"))
@given(_states, st.sampled_from([1, 2, 4, 8, 16]))
def test_folded_digests_equal_digests_over_fewer_buckets(state: CounterMapState, n: int) -> None:
    digests, fewer = BucketDigests.of(state, 16), BucketDigests.of(state, n)
    assert digests.folded(n) == fewer.digests
    assert all(digests.bucket_keys(i, n) == fewer.bucket_keys(i) for i in range(n))
    assert digests.differing(fewer.digests) == []


@pytest.mark.parametrize("n", [0, 3, 32])
def test_folding_needs_a_power_of_two_up_to_the_bucket_count(n: int) -> None:
    with pytest.raises(InvalidOptionError):
        BucketDigests(16).folded(n)

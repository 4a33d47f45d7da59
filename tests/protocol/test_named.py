"""Named-counter messages ("DCN" 01): exact bytes, round trips, splitting, strict decoding."""

from __future__ import annotations

import re
from pathlib import Path

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dcounter_crdt import MAX_COUNT, CounterMapState, CounterState
from dcounter_protocol import (
    CAP_MEMBERSHIP,
    CAP_NAMED,
    NAMED_MAGIC,
    EncodeError,
    InvalidFlagError,
    MessageError,
    NamedBuckets,
    NamedKeys,
    NamedMessage,
    NamedMessageError,
    NamedPull,
    NamedPush,
    NamedWant,
    OversizeMessageError,
    RemoteProtocolError,
    decode_message,
    decode_named,
    encode_named,
    is_named,
    split_named,
)

README = Path(__file__).resolve().parents[2] / "packages" / "protocol" / "README.md"

HOME = CounterMapState(
    {"pages/home": CounterState.from_maps({"a:1#x": 5}, {"b:2#y": 2})},
)
HASH = 0x1122334455667788

#: (message, its exact payload in hex): the examples of the protocol README.
EXAMPLES: list[tuple[NamedMessage, str]] = [
    (
        NamedPush(HOME),
        "44 43 4e 01 01 92 c2 81 aa 70 61 67 65 73 2f 68 6f 6d 65 82 a5 61 3a 31 23 78 92 05"
        " 00 a5 62 3a 32 23 79 92 00 02",
    ),
    (NamedPull(4096, 0x0123456789ABCDEF), "44 43 4e 01 02 92 cd 10 00 cf 01 23 45 67 89 ab cd ef"),
    (
        NamedBuckets(2, (1, 0)),
        "44 43 4e 01 03 92 02 c4 10 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00 00",
    ),
    (
        NamedKeys(4096, {7: (HASH,)}),
        "44 43 4e 01 04 92 cd 10 00 81 07 c4 08 11 22 33 44 55 66 77 88",
    ),
    (NamedWant((HASH,)), "44 43 4e 01 05 c4 08 11 22 33 44 55 66 77 88"),
]


@pytest.mark.parametrize(("message", "expected"), EXAMPLES)
def test_each_message_encodes_to_the_documented_bytes(message: NamedMessage, expected: str) -> None:
    assert encode_named(message).hex(" ") == expected
    assert decode_named(bytes.fromhex(expected)) == message


def test_the_readme_shows_exactly_these_bytes() -> None:
    text = README.read_text(encoding="utf-8")
    shown = re.findall(r"^  (44 43 4e 01 [0-9a-f ]+)$", text, re.MULTILINE)
    assert shown == [expected for _, expected in EXAMPLES]


def test_full_flag_is_the_c3_byte() -> None:
    assert encode_named(NamedPush(HOME, full=True))[6] == 0xC3
    assert decode_named(encode_named(NamedPush(HOME, full=True))).full is True  # type: ignore[union-attr]


def test_capability_bits_are_distinct() -> None:
    assert (CAP_MEMBERSHIP, CAP_NAMED) == (0x01, 0x02)


def test_a_named_payload_is_not_a_seed_message() -> None:
    payload = encode_named(NamedPull(4096, 1))
    assert is_named(payload)
    assert not is_named(b"\x00\x81")
    with pytest.raises(InvalidFlagError):
        decode_message(payload)


def test_the_same_state_always_encodes_to_the_same_bytes() -> None:
    forward = {
        f"k{i}": CounterState.from_maps({f"r{j}": j + 1 for j in range(5)}) for i in range(9)
    }
    backward = dict(reversed(list(forward.items())))
    assert encode_named(NamedPush(CounterMapState(forward))) == encode_named(
        NamedPush(CounterMapState(backward))
    )


_names = st.text(min_size=1, max_size=12).filter(lambda n: n != "default")
_replicas = st.text(min_size=1, max_size=10)
_counts = st.integers(min_value=0, max_value=MAX_COUNT)
_counters = st.builds(
    CounterState.from_maps,
    st.dictionaries(_replicas, _counts, max_size=4),
    st.dictionaries(_replicas, _counts, max_size=4),
).filter(bool)
_states = st.dictionaries(_names, _counters, min_size=1, max_size=6).map(CounterMapState)
_hashes = st.lists(_counts, max_size=20).map(tuple)


@st.composite
def _buckets(draw: st.DrawFn) -> NamedBuckets:
    size = 1 << draw(st.integers(min_value=0, max_value=6))
    return NamedBuckets(size, tuple(draw(st.lists(_counts, min_size=size, max_size=size))))


_messages = st.one_of(
    st.builds(NamedPush, _states, st.booleans()),
    st.builds(NamedPull, st.sampled_from([1, 2, 4096, 65536]), _counts),
    _buckets(),
    st.builds(
        NamedKeys,
        st.just(64),
        st.dictionaries(st.integers(min_value=0, max_value=63), _hashes, max_size=5),
    ),
    st.builds(NamedWant, _hashes),
)


@settings(settings.get_profile("protocol"))
@given(_messages)
def test_every_message_round_trips(message: NamedMessage) -> None:
    assert decode_named(encode_named(message)) == message


@settings(settings.get_profile("protocol"), max_examples=30)
@given(_states, st.integers(min_value=200, max_value=2000))
def test_a_split_push_fits_and_holds_the_whole_state(state: CounterMapState, limit: int) -> None:
    try:
        parts = split_named(NamedPush(state, True), max_size=limit)
    except OversizeMessageError:
        return  # one counter alone is larger than the limit
    assert all(len(part) <= limit for part in parts)
    merged = CounterMapState.empty()
    for part in parts:
        message = decode_named(part)
        assert isinstance(message, NamedPush)
        assert message.full
        merged = merged.merged(message.state)
    assert merged == state


def test_keys_and_wants_split_by_buckets_and_hashes() -> None:
    keys = NamedKeys(4096, {b: tuple(range(b * 100, b * 100 + 100)) for b in range(40)})
    parts = split_named(keys, max_size=2000)
    assert len(parts) > 1
    assert all(len(p) <= 2000 for p in parts)
    joined: dict[int, tuple[int, ...]] = {}
    for part in parts:
        message = decode_named(part)
        assert isinstance(message, NamedKeys)
        joined.update(message.keys)
    assert joined == dict(keys.keys)
    want = NamedWant(tuple(range(1000)))
    hashes = [h for p in split_named(want, max_size=500) for h in decode_named(p).hashes]  # type: ignore[union-attr]
    assert hashes == list(range(1000))


def test_a_buckets_message_that_does_not_fit_cannot_be_split() -> None:
    with pytest.raises(OversizeMessageError):
        split_named(NamedBuckets(4096, (0,) * 4096), max_size=1000)


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (NamedPush(CounterMapState()), "at least one counter"),
        (NamedPush(CounterMapState({"default": CounterState.from_maps({"r": 1})})), "default"),
        (NamedPull(3, 0), "power of two"),
        (NamedPull(1 << 17, 0), "bucket count"),
        (NamedPull(4, MAX_COUNT + 1), "uint64"),
        (NamedBuckets(4, (1, 2)), "2 digests for 4 buckets"),
        (NamedKeys(4, {4: (1,)}), "bucket index"),
        (NamedWant((-1,)), "uint64"),
    ],
)
def test_what_cannot_be_encoded_raises_encode_error(message: NamedMessage, reason: str) -> None:
    with pytest.raises(EncodeError, match=reason):
        encode_named(message)


def _payload(kind: int, body: object) -> bytes:
    return NAMED_MAGIC + bytes((kind,)) + msgpack.packb(body, use_bin_type=True)


_COUNTER = {"r": [1, 0]}

HOSTILE: list[tuple[str, bytes, str]] = [
    ("wrong magic", b"DCM\x01\x01\x90", "not a named-counter message"),
    ("future version", b"DCN\x02\x01\x90", "not a named-counter message"),
    ("no body", NAMED_MAGIC + b"\x01", "without kind or body"),
    ("unknown kind", NAMED_MAGIC + b"\x09\x90", "unknown named message kind 9"),
    ("not msgpack", NAMED_MAGIC + b"\x01\xc1", "not msgpack"),
    ("trailing bytes", _payload(2, [4, 1]) + b"\x00", "not msgpack"),
    ("push not an array", _payload(1, {"a": 1}), "array of 2"),
    ("push flag not bool", _payload(1, [1, {"k": _COUNTER}]), "full flag"),
    ("empty push", _payload(1, [False, {}]), "non-empty map of counters"),
    ("default counter", _payload(1, [False, {"default": _COUNTER}]), "seed's messages"),
    ("name not a string", _payload(1, [False, {b"k": _COUNTER}]), "counter name"),
    ("empty name", _payload(1, [False, {"": _COUNTER}]), "counter name"),
    ("name too long", _payload(1, [False, {"k" * 70000: _COUNTER}]), "65535"),
    ("empty counter", _payload(1, [False, {"k": {}}]), "non-empty map of replicas"),
    ("all-zero counter", _payload(1, [False, {"k": {"r": [0, 0]}}]), "counts nothing"),
    ("replica id too long", _payload(1, [False, {"k": {"r" * 256: [1, 0]}}]), "255"),
    ("counts not a pair", _payload(1, [False, {"k": {"r": [1]}}]), r"\[p, n\]"),
    ("negative count", _payload(1, [False, {"k": {"r": [-1, 0]}}]), "unsigned"),
    ("count not an int", _payload(1, [False, {"k": {"r": [1.5, 0]}}]), "unsigned"),
    ("bool count", _payload(1, [False, {"k": {"r": [True, 0]}}]), "unsigned"),
    ("unhashable key", NAMED_MAGIC + b"\x01\x92\xc2\x81\x90\x90", "malformed body|msgpack"),
    ("zero buckets", _payload(2, [0, 1]), "bucket count"),
    ("odd buckets", _payload(2, [6, 1]), "power of two"),
    ("too many buckets", _payload(2, [1 << 17, 1]), "bucket count"),
    ("root not uint64", _payload(2, [4, "x"]), "root digest"),
    ("digest count", _payload(3, [4, b"\x00" * 8]), "1 bucket digests for 4"),
    ("digest bytes", _payload(3, [1, b"\x00" * 7]), "8 per hash"),
    ("digests not bytes", _payload(3, [1, [0]]), "8 per hash"),
    ("keys not a map", _payload(4, [4, [1]]), "map of bucket"),
    ("bucket out of range", _payload(4, [4, {4: b""}]), "outside 0..3"),
    ("bucket not an int", _payload(4, [4, {"0": b""}]), "bucket index"),
    ("want not bytes", _payload(5, [1, 2]), "8 per hash"),
]


@pytest.mark.parametrize(
    ("payload", "reason"), [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE]
)
def test_garbage_raises_a_typed_remote_error(payload: bytes, reason: str) -> None:
    with pytest.raises(NamedMessageError, match=reason) as caught:
        decode_named(payload)
    assert isinstance(caught.value, RemoteProtocolError)
    assert isinstance(caught.value, MessageError)


def test_a_payload_over_the_limit_is_refused_before_decoding() -> None:
    payload = encode_named(NamedWant(tuple(range(100))))
    with pytest.raises(NamedMessageError, match="exceeds 100"):
        decode_named(payload, max_size=100)


@settings(settings.get_profile("protocol"), max_examples=200)
@given(st.binary(max_size=64))
def test_random_bytes_after_the_magic_decode_or_raise_the_typed_error(tail: bytes) -> None:
    # Nothing else escapes (no TypeError, KeyError, struct.error...).
    try:
        message = decode_named(NAMED_MAGIC + tail)
    except NamedMessageError:
        return
    assert decode_named(encode_named(message)) == message

"""A hostile-input corpus: whatever a peer sends, we raise our typed error and stay bounded."""

from __future__ import annotations

import struct
import time
import tracemalloc

import msgpack
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from dcounter_protocol import (
    DEFAULT_MAX_MESSAGE_SIZE,
    DecompressionError,
    DigestPull,
    Frame,
    FrameDecoder,
    FrameError,
    FrameTooLargeError,
    InvalidAddressError,
    InvalidAddressLengthError,
    MalformedMessageError,
    MessageError,
    MessageTooLargeError,
    Push,
    decode_frame,
    decode_message,
    encode_frame,
    encode_message,
)

profile = settings.get_profile("protocol")

NODE = "127.0.0.1:9000"
#: Messages whose every strict prefix must be rejected: plain, with a digest, compressed.
VALID_ENVELOPES = {
    "plain-push": encode_message(Push(NODE, {"a": 1, "b": 2}, {"a": 1})),
    "digest-pull": encode_message(DigestPull(NODE, 0x0123456789ABCDEF)),
    "compressed-push": encode_message(Push(NODE, {f"r{i}": i for i in range(200)}, None)),
}


def _plain(body: object) -> bytes:
    return b"\x00" + msgpack.packb(body)


def _decode_outcome(data: bytes) -> str:
    """'ok' or the name of the MessageError raised; anything else propagates and fails."""
    try:
        decode_message(data)
    except MessageError as exc:
        return type(exc).__name__
    return "ok"


# -- truncated and garbage messages -------------------------------------------------------


@pytest.mark.parametrize("name", sorted(VALID_ENVELOPES))
def test_every_truncation_of_a_message_is_rejected(name: str) -> None:
    data = VALID_ENVELOPES[name]
    outcomes = {_decode_outcome(data[:cut]) for cut in range(len(data))}
    assert "ok" not in outcomes


@profile
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_message_errors(data: bytes) -> None:
    _decode_outcome(data)


@profile
@given(st.binary(max_size=300))
def test_random_bytes_flagged_compressed_raise_only_message_errors(data: bytes) -> None:
    _decode_outcome(b"\x80" + data)


@profile
@given(
    st.sampled_from(sorted(VALID_ENVELOPES)),
    st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), min_size=1, max_size=4),
)
def test_corrupted_messages_raise_only_message_errors(
    name: str, flips: list[tuple[int, int]]
) -> None:
    data = bytearray(VALID_ENVELOPES[name])
    for position, value in flips:
        data[position % len(data)] = value
    _decode_outcome(bytes(data))


# -- wrong types and lying lengths --------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"t": 1.0, "id": NODE, "inc": {"a": 1}}, id="float-type"),
        pytest.param({"t": 2, "id": {"x": 1}}, id="map-node-id"),
        pytest.param({"t": 2, "id": [NODE]}, id="array-node-id"),
        pytest.param({"t": 1, "id": NODE, "inc": {"a": [1]}}, id="array-count"),
        pytest.param({"t": 1, "id": NODE, "inc": {"a": {"b": 1}}}, id="map-count"),
        pytest.param({"t": 1, "id": NODE, "inc": {"a": 1.5}}, id="float-count"),
        pytest.param({"t": 2, "id": NODE, "dig": 1.5}, id="float-digest"),
        pytest.param({"t": 2, "id": NODE, "dig": b"\x01"}, id="bin-digest"),
        pytest.param({"t": 2, "id": NODE, "dig": msgpack.ExtType(5, b"x")}, id="ext-digest"),
        pytest.param("just a string", id="str-body"),
        pytest.param(42, id="int-body"),
    ],
)
def test_wrong_field_types_are_malformed(body: object) -> None:
    with pytest.raises(MalformedMessageError):
        decode_message(_plain(body))


@pytest.mark.parametrize(
    "body_hex",
    [
        pytest.param("dfffffffff", id="map32-claims-4G-entries"),
        pytest.param("81a174dbffffffff", id="str32-claims-4GiB"),
        pytest.param("81a17add7fffffff", id="array32-claims-2G-items"),
        pytest.param("81a17ac6ffffffff", id="bin32-claims-4GiB"),
        pytest.param("81a17ac9ffffffff05", id="ext32-claims-4GiB"),
    ],
)
def test_lengths_beyond_the_body_are_rejected_without_allocating(body_hex: str) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(MalformedMessageError):
            decode_message(b"\x00" + bytes.fromhex(body_hex))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_deeply_nested_unknown_field_is_rejected() -> None:
    body = b"\x82\xa1t\x02\xa1z" + b"\x91" * 100_000 + b"\xc0"
    with pytest.raises(MalformedMessageError):
        decode_message(b"\x00" + body)


def test_unknown_field_named_like_a_field_but_binary_is_rejected() -> None:
    with pytest.raises(MalformedMessageError):
        decode_message(_plain({"t": 2, "id": NODE, b"dig": 5}))


def test_millions_of_duplicate_keys_decode_to_the_last_value() -> None:
    entry = b"\xa1t\x02"
    body = struct.pack(">BI", 0xDF, 200_001) + entry * 200_000 + b"\xa2id\xa1x"
    assert decode_message(b"\x00" + body) == DigestPull("x", 0)


# -- oversized messages and zstd bombs ------------------------------------------------------


def test_envelope_over_the_default_limit_is_rejected_before_parsing() -> None:
    data = b"\x00" + bytes(DEFAULT_MAX_MESSAGE_SIZE)
    started = time.perf_counter()
    with pytest.raises(MessageTooLargeError):
        decode_message(data)
    assert time.perf_counter() - started < 0.1


def test_gigabyte_bomb_is_rejected_quickly(zstd_bomb: bytes) -> None:
    started = time.perf_counter()
    with pytest.raises(MessageTooLargeError):
        decode_message(b"\x80" + zstd_bomb)
    assert (len(zstd_bomb) < 64 * 1024, time.perf_counter() - started < 1.0) == (True, True)


def test_gigabyte_bomb_is_rejected_without_allocating_its_output(zstd_bomb: bytes) -> None:
    data = b"\x80" + zstd_bomb
    tracemalloc.start()
    try:
        with pytest.raises(MessageTooLargeError):
            decode_message(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 << 20  # about one 128 KiB read chunk, far below the 10 MiB limit


def test_bomb_declaring_its_size_is_rejected_from_the_frame_header() -> None:
    bomb = zstandard.ZstdCompressor(level=1).compress(bytes(DEFAULT_MAX_MESSAGE_SIZE + 1))
    tracemalloc.start()
    try:
        with pytest.raises(MessageTooLargeError):
            decode_message(b"\x80" + bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_bomb_behind_a_harmless_first_frame_is_rejected(zstd_bomb: bytes) -> None:
    first = zstandard.ZstdCompressor().compress(b"\x82")
    with pytest.raises(MessageTooLargeError):
        decode_message(b"\x80" + first + zstd_bomb)


def test_bomb_under_a_small_configured_limit_is_rejected() -> None:
    bomb = zstandard.ZstdCompressor(level=1, write_content_size=False).compress(bytes(1 << 20))
    with pytest.raises(MessageTooLargeError):
        decode_message(b"\x80" + bomb, max_size=64 * 1024)


def test_frame_demanding_a_huge_window_is_rejected() -> None:
    # Magic, no content size, window descriptor 2**31 bytes, one 1-byte raw last block.
    frame = bytes.fromhex("28b52ffd" + "00" + "a8" + "090000" + "41")
    with pytest.raises(DecompressionError):
        decode_message(b"\x80" + frame)


def test_zstd_frame_with_trailing_garbage_is_rejected() -> None:
    frame = zstandard.ZstdCompressor().compress(_plain({"t": 2, "id": NODE})[1:])
    with pytest.raises(DecompressionError):
        decode_message(b"\x80" + frame + b"\x00\x01\x02\x03")


def test_zstd_frame_cut_before_its_checksum_is_rejected() -> None:
    body = msgpack.packb({"t": 2, "id": NODE})
    frame = zstandard.ZstdCompressor(write_checksum=True, write_content_size=False).compress(body)
    with pytest.raises(DecompressionError):
        decode_message(b"\x80" + frame[:-4])


def test_zstd_frame_with_a_wrong_checksum_is_rejected() -> None:
    body = msgpack.packb({"t": 2, "id": NODE})
    frame = bytearray(zstandard.ZstdCompressor(write_checksum=True).compress(body))
    frame[-1] ^= 0xFF
    with pytest.raises(DecompressionError):
        decode_message(b"\x80" + bytes(frame))


# -- hostile frames ---------------------------------------------------------------------------


def test_zero_length_address_is_rejected() -> None:
    with pytest.raises(InvalidAddressLengthError):
        decode_frame(b"\x00" + b"payload")


def test_255_byte_multibyte_address_is_accepted() -> None:
    sender = "€" * 85  # 3 bytes each
    assert decode_frame(b"\xff" + sender.encode() + b"p") == Frame(sender, b"p")


@pytest.mark.parametrize(
    "address",
    [
        pytest.param(b"\xff\xfe", id="invalid-bytes"),
        pytest.param(b"\xc0\x80", id="overlong-nul"),
        pytest.param(b"\xed\xa0\x80", id="encoded-surrogate"),
        pytest.param(b"\xf4\x90\x80\x80", id="beyond-unicode"),
        pytest.param(b"ab\xe2\x82", id="cut-character"),
    ],
)
def test_non_utf8_address_is_rejected(address: bytes) -> None:
    with pytest.raises(InvalidAddressError):
        decode_frame(bytes((len(address),)) + address + b"payload")


def test_oversized_frame_streamed_in_chunks_stops_at_the_limit() -> None:
    decoder = FrameDecoder(max_size=1 << 20)
    decoder.feed(encode_frame(NODE, b"x"))
    chunk = bytes(64 * 1024)

    def stream_forever() -> None:
        while True:
            decoder.feed(chunk)

    with pytest.raises(FrameTooLargeError):
        stream_forever()
    assert decoder.received <= 1 << 20


@profile
@given(st.binary(max_size=600), st.lists(st.integers(min_value=1, max_value=64), max_size=20))
def test_random_streams_raise_only_frame_errors(data: bytes, sizes: list[int]) -> None:
    decoder = FrameDecoder(max_size=512)
    position = 0
    try:
        for size in [*sizes, len(data)]:
            decoder.feed(data[position : position + size])
            position += size
        frame = decoder.end_of_stream()
    except FrameError:
        return
    assert encode_frame(frame.sender, frame.payload) == data

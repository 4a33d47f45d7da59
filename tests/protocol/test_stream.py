"""Stream mode, sans-IO: hello and confirmation bytes, frame encoding, the StreamDecoder."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dcounter_protocol import (
    DEFAULT_MAX_MESSAGE_SIZE,
    STREAM_ACK,
    EmptyStreamFrameError,
    EncodeError,
    FrameError,
    FrameTooLargeError,
    HandshakeError,
    InvalidAddressError,
    InvalidAddressLengthError,
    InvalidOptionError,
    StreamDecoder,
    TruncatedFrameError,
    encode_hello,
    encode_stream_frames,
    parse_ack,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

profile = settings.get_profile("protocol")

SENDER = "127.0.0.1:9000"
HELLO = b"\x00DCS\x01\x0e127.0.0.1:9000"
payloads = st.lists(st.binary(min_size=1, max_size=300), max_size=12)
addresses = st.text(min_size=1, max_size=255).filter(
    lambda text: 1 <= len(text.encode("utf-8")) <= 255
)


def split(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    """``data`` cut at the given offsets (any order, duplicates and out-of-range ignored)."""
    points = sorted({c for c in cuts if 0 < c < len(data)})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def feed_all(decoder: StreamDecoder, chunks: Sequence[bytes], frames: list[bytes]) -> None:
    """Feed every chunk, collecting frames into ``frames``, then end the stream."""
    for chunk in chunks:
        frames += decoder.feed(chunk)
    decoder.end_of_stream()


def decode_chunks(chunks: Sequence[bytes]) -> tuple[str | None, list[bytes]]:
    decoder = StreamDecoder(max_size=1024)
    frames: list[bytes] = []
    feed_all(decoder, chunks, frames)
    return decoder.sender, frames


# -- encoding ---------------------------------------------------------------------------------


def test_hello_is_marker_magic_version_and_address() -> None:
    assert encode_hello(SENDER) == HELLO


def test_hello_address_length_counts_utf8_bytes() -> None:
    assert encode_hello("ä:1") == b"\x00DCS\x01\x04\xc3\xa4:1"


@pytest.mark.parametrize(
    ("address", "error"),
    [
        pytest.param("", "empty", id="empty"),
        pytest.param("a" * 256, "256 bytes", id="256-bytes"),
        pytest.param("\udc80:1", "UTF-8", id="lone-surrogate"),
    ],
)
def test_hello_refuses_addresses_that_cannot_be_framed(address: str, error: str) -> None:
    with pytest.raises(EncodeError, match=error):
        encode_hello(address)


def test_frames_are_big_endian_length_then_payload() -> None:
    assert encode_stream_frames([b"ab", b"c" * 256]) == (
        b"\x00\x00\x00\x02ab" + b"\x00\x00\x01\x00" + b"c" * 256
    )


def test_no_payloads_encode_to_nothing() -> None:
    assert encode_stream_frames([]) == b""


def test_empty_payload_is_refused() -> None:
    with pytest.raises(EncodeError):
        encode_stream_frames([b"x", b""])


def test_payload_above_max_size_is_refused() -> None:
    with pytest.raises(EncodeError, match="5 bytes exceeds 4"):
        encode_stream_frames([b"12345"], max_size=4)


# -- the confirmation --------------------------------------------------------------------------


def test_ack_is_magic_and_version() -> None:
    assert STREAM_ACK == b"DCS\x01"


@pytest.mark.parametrize("prefix", [b"", b"D", b"DC", b"DCS"])
def test_ack_prefix_asks_for_more(prefix: bytes) -> None:
    assert parse_ack(prefix) is False


def test_complete_ack_is_accepted() -> None:
    assert parse_ack(bytearray(b"DCS\x01")) is True


@pytest.mark.parametrize(
    ("reply", "offset", "what"),
    [
        pytest.param(b"HTTP/1.1 400", 0, "magic", id="http"),
        pytest.param(b"DCX", 2, "magic", id="bad-magic"),
        pytest.param(b"DCS\x02", 3, "version", id="other-version"),
        pytest.param(b"DCS\x01!", 4, "after", id="trailing-bytes"),
    ],
)
def test_wrong_reply_is_a_handshake_error_at_its_offset(
    reply: bytes, offset: int, what: str
) -> None:
    with pytest.raises(HandshakeError, match=what) as caught:
        parse_ack(reply)
    assert caught.value.offset == offset


# -- decoding ---------------------------------------------------------------------------------


def test_sender_is_known_once_the_hello_is_complete() -> None:
    decoder = StreamDecoder()
    assert decoder.feed(HELLO[:-1]) == []
    assert decoder.sender is None
    assert decoder.feed(HELLO[-1:]) == []
    assert decoder.sender == SENDER


def test_hello_and_frames_in_one_chunk() -> None:
    decoder = StreamDecoder()

    frames = decoder.feed(HELLO + encode_stream_frames([b"one", b"two"]) + b"\x00\x00")

    assert (decoder.sender, frames) == (SENDER, [b"one", b"two"])
    assert decoder.buffered == 2
    assert decoder.received == len(HELLO) + 14 + 2


def test_frame_completed_across_feeds() -> None:
    decoder = StreamDecoder()
    data = HELLO + encode_stream_frames([b"payload"])

    assert decoder.feed(data[:-3]) == []
    assert decoder.feed(data[-3:]) == [b"payload"]
    assert decoder.buffered == 0


def test_frame_of_exactly_max_size_is_accepted() -> None:
    decoder = StreamDecoder(max_size=8)

    assert decoder.feed(HELLO + encode_stream_frames([b"12345678"])) == [b"12345678"]


def test_memoryview_and_bytearray_chunks_are_accepted() -> None:
    data = HELLO + encode_stream_frames([b"abc"])
    decoder = StreamDecoder()

    assert decoder.feed(bytearray(data[:10])) == []
    assert decoder.feed(memoryview(data)[10:]) == [b"abc"]


@given(addresses, payloads, st.lists(st.integers(min_value=0, max_value=4000), max_size=40))
@profile
def test_random_splits_give_the_same_frames(
    sender: str, messages: list[bytes], cuts: list[int]
) -> None:
    data = encode_hello(sender) + encode_stream_frames(messages)

    assert decode_chunks(split(data, cuts)) == (sender, messages)


@given(addresses, payloads)
@profile
def test_one_byte_at_a_time_gives_the_same_frames(sender: str, messages: list[bytes]) -> None:
    data = encode_hello(sender) + encode_stream_frames(messages)

    assert decode_chunks([data[i : i + 1] for i in range(len(data))]) == (sender, messages)


# -- violations -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "error", "offset"),
    [
        pytest.param(b"\x0e127.0.0.1:9000", HandshakeError, 0, id="seed-frame"),
        pytest.param(b"\x00DX", HandshakeError, 2, id="bad-magic"),
        pytest.param(b"\x00DCS\x03", HandshakeError, 4, id="unsupported-version"),
        pytest.param(b"\x00DCS\x01\x00", InvalidAddressLengthError, 5, id="zero-address"),
        pytest.param(b"\x00DCS\x01\x03a\xffb", InvalidAddressError, 7, id="non-utf8-address"),
        pytest.param(HELLO + b"\x00\x00\x00\x00", EmptyStreamFrameError, 20, id="zero-length"),
        pytest.param(HELLO + b"\x00\x00\x04\x01", FrameTooLargeError, 20, id="too-large"),
        pytest.param(HELLO + b"\xff\xff\xff\xff", FrameTooLargeError, 20, id="huge"),
    ],
)
def test_violation_raises_typed_error_with_offset(
    data: bytes, error: type[FrameError], offset: int
) -> None:
    decoder = StreamDecoder(max_size=1024)

    with pytest.raises(error) as caught:
        decoder.feed(data)

    assert caught.value.offset == offset
    assert decoder.error is caught.value


def test_huge_length_is_refused_before_its_body_arrives() -> None:
    decoder = StreamDecoder(max_size=DEFAULT_MAX_MESSAGE_SIZE)
    decoder.feed(HELLO)

    with pytest.raises(FrameTooLargeError, match="4294967295 bytes exceeds 10485760"):
        decoder.feed(b"\xff\xff\xff\xff")
    assert decoder.buffered == 0


def test_error_is_raised_again_by_every_later_call() -> None:
    decoder = StreamDecoder()
    with pytest.raises(HandshakeError) as first:
        decoder.feed(b"\x01")

    with pytest.raises(HandshakeError) as again:
        decoder.feed(HELLO)
    with pytest.raises(HandshakeError) as at_end:
        decoder.end_of_stream()
    assert first.value is again.value is at_end.value


def test_frames_before_a_violation_in_the_same_chunk_are_returned() -> None:
    decoder = StreamDecoder()
    data = HELLO + encode_stream_frames([b"ok", b"fine"]) + b"\x00\x00\x00\x00"

    assert decoder.feed(data) == [b"ok", b"fine"]

    assert isinstance(decoder.error, EmptyStreamFrameError)
    assert decoder.error.offset == len(HELLO) + 6 + 8
    with pytest.raises(EmptyStreamFrameError):
        decoder.feed(b"")


@given(
    payloads,
    st.sampled_from([b"\x00\x00\x00\x00", b"\x00\x01\x00\x00", b"\xff\xff\xff\xff"]),
    st.lists(st.integers(min_value=0, max_value=4000), max_size=20),
)
@profile
def test_violation_is_found_at_the_same_offset_after_the_same_frames_whatever_the_splits(
    messages: list[bytes], bad_prefix: bytes, cuts: list[int]
) -> None:
    valid = HELLO + encode_stream_frames(messages)
    decoder = StreamDecoder(max_size=1024)
    frames: list[bytes] = []

    with pytest.raises(FrameError) as caught:
        feed_all(decoder, split(valid + bad_prefix + b"tail", cuts), frames)

    assert frames == messages
    assert caught.value.offset == len(valid)


def test_buffer_never_holds_more_than_one_frame() -> None:
    decoder = StreamDecoder(max_size=1000)
    decoder.feed(HELLO)
    biggest = 0
    data = encode_stream_frames([bytes(1000)] * 3)

    for start in range(0, len(data), 7):
        decoder.feed(data[start : start + 7])
        biggest = max(biggest, decoder.buffered)

    assert biggest <= 4 + 1000
    assert decoder.buffered == 0


# -- end of stream ----------------------------------------------------------------------------


def test_clean_end_between_frames() -> None:
    decoder = StreamDecoder()
    decoder.feed(HELLO + encode_stream_frames([b"x"]))

    decoder.end_of_stream()

    with pytest.raises(FrameError, match="already ended"):
        decoder.feed(b"more")


@pytest.mark.parametrize(
    ("data", "where"),
    [
        pytest.param(b"", "handshake", id="nothing"),
        pytest.param(HELLO[:9], "handshake", id="inside-hello"),
        pytest.param(HELLO + b"\x00\x00", "frame", id="inside-length"),
        pytest.param(HELLO + b"\x00\x00\x00\x05abc", "frame", id="inside-payload"),
    ],
)
def test_end_inside_a_hello_or_frame_is_truncation(data: bytes, where: str) -> None:
    decoder = StreamDecoder()
    decoder.feed(data)

    with pytest.raises(TruncatedFrameError, match=f"inside (the|a) {where}") as caught:
        decoder.end_of_stream()
    assert caught.value.offset == len(data)


@pytest.mark.parametrize("max_size", [0, -1, True, 1.5])
def test_max_size_must_be_a_positive_int(max_size: object) -> None:
    with pytest.raises(InvalidOptionError, match="max_size"):
        StreamDecoder(max_size=max_size)  # type: ignore[arg-type]

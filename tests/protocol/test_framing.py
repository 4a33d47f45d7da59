"""Seed frames: the encoder, the one-shot parser and the incremental FrameDecoder."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dcounter_protocol import (
    DEFAULT_MAX_FRAME_SIZE,
    DEFAULT_MAX_MESSAGE_SIZE,
    MAX_ADDRESS_LENGTH,
    EncodeError,
    Frame,
    FrameDecoder,
    FrameError,
    FrameTooLargeError,
    InvalidAddressError,
    InvalidAddressLengthError,
    InvalidOptionError,
    LocalProtocolError,
    RemoteProtocolError,
    TruncatedFrameError,
    decode_frame,
    encode_frame,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

profile = settings.get_profile("protocol")
frames = st.from_type(Frame)

SENDER = "127.0.0.1:9000"
HEADER = b"\x0e" + SENDER.encode()


def feed_all(decoder: FrameDecoder, chunks: Sequence[bytes | bytearray | memoryview]) -> Frame:
    for chunk in chunks:
        decoder.feed(chunk)
    return decoder.end_of_stream()


# -- encode_frame -------------------------------------------------------------------------


def test_frame_is_length_address_payload() -> None:
    assert encode_frame(SENDER, b"hi") == HEADER + b"hi"


def test_address_length_counts_utf8_bytes() -> None:
    assert encode_frame("ä", b"x") == b"\x02\xc3\xa4x"


def test_address_of_255_bytes_is_framed() -> None:
    assert encode_frame("a" * 255, b"x")[:2] == b"\xffa"


def test_address_of_256_bytes_is_refused() -> None:
    with pytest.raises(EncodeError):
        encode_frame("a" * 256, b"x")


def test_empty_address_is_refused() -> None:
    with pytest.raises(EncodeError):
        encode_frame("", b"x")


def test_unencodable_address_is_refused() -> None:
    with pytest.raises(EncodeError):
        encode_frame("\ud800", b"x")


def test_empty_payload_is_refused() -> None:
    with pytest.raises(EncodeError):
        encode_frame(SENDER, b"")


def test_payload_over_max_size_is_refused() -> None:
    with pytest.raises(EncodeError):
        encode_frame(SENDER, b"x" * 10, max_size=9)


def test_encode_errors_are_local_misuse_not_remote_garbage() -> None:
    with pytest.raises(LocalProtocolError) as caught:
        encode_frame(SENDER, b"")
    assert not isinstance(caught.value, RemoteProtocolError)


def test_default_frame_limit_fits_a_maximum_message_behind_the_longest_address() -> None:
    assert DEFAULT_MAX_FRAME_SIZE == DEFAULT_MAX_MESSAGE_SIZE + 1 + MAX_ADDRESS_LENGTH


# -- decode_frame -------------------------------------------------------------------------


def test_frame_splits_into_sender_and_payload() -> None:
    assert decode_frame(HEADER + b"payload") == Frame(SENDER, b"payload")


def test_zero_address_length_is_rejected_at_offset_0() -> None:
    with pytest.raises(InvalidAddressLengthError) as caught:
        decode_frame(b"\x00abc")
    assert caught.value.offset == 0


def test_non_utf8_address_is_rejected_at_the_bad_byte() -> None:
    with pytest.raises(InvalidAddressError) as caught:
        decode_frame(b"\x03a\xffbpayload")
    assert caught.value.offset == 2


def test_address_cut_inside_a_character_is_rejected_at_its_start() -> None:
    # 'ä' is c3 a4: a 2-byte address holding "a" + c3 ends in the middle of a character.
    with pytest.raises(InvalidAddressError) as caught:
        decode_frame(b"\x02a\xc3\xa4payload")
    assert caught.value.offset == 2


def test_frame_without_payload_is_truncated() -> None:
    with pytest.raises(TruncatedFrameError) as caught:
        decode_frame(HEADER)
    assert caught.value.offset == len(HEADER)


def test_frame_shorter_than_its_address_is_truncated() -> None:
    with pytest.raises(TruncatedFrameError) as caught:
        decode_frame(HEADER[:5])
    assert caught.value.offset == 5


def test_empty_input_is_truncated_at_offset_0() -> None:
    with pytest.raises(TruncatedFrameError) as caught:
        decode_frame(b"")
    assert caught.value.offset == 0


def test_payload_over_max_size_is_rejected_at_the_limit() -> None:
    with pytest.raises(FrameTooLargeError) as caught:
        decode_frame(HEADER + b"x" * 100, max_size=50)
    assert caught.value.offset == len(HEADER) + 50


def test_payload_of_exactly_max_size_is_accepted() -> None:
    assert decode_frame(HEADER + b"x" * 10, max_size=10).payload == b"x" * 10


def test_max_size_bounds_the_payload_whatever_the_address_length() -> None:
    long_sender = "a" * MAX_ADDRESS_LENGTH
    frame = encode_frame(long_sender, b"x" * 10)
    assert decode_frame(frame, max_size=10) == Frame(long_sender, b"x" * 10)


def test_frame_errors_are_remote_garbage_with_an_unformatted_reason() -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        decode_frame(b"\x00abc")
    assert isinstance(caught.value, FrameError)
    assert caught.value.reason == "sender address length is 0"
    assert str(caught.value) == "sender address length is 0 (at byte 0)"


def test_error_message_names_the_offset() -> None:
    with pytest.raises(FrameError, match=r"\(at byte 0\)$"):
        decode_frame(b"\x00")


# -- FrameDecoder -------------------------------------------------------------------------


def test_sender_is_known_once_the_header_is_complete() -> None:
    decoder = FrameDecoder()
    decoder.feed(HEADER[:-1])
    before = decoder.sender
    decoder.feed(HEADER[-1:])
    assert (before, decoder.sender) == (None, SENDER)


def test_zero_length_byte_is_rejected_on_the_first_feed() -> None:
    decoder = FrameDecoder()
    with pytest.raises(InvalidAddressLengthError):
        decoder.feed(b"\x00")


def test_invalid_utf8_is_rejected_before_the_address_is_complete() -> None:
    decoder = FrameDecoder()
    decoder.feed(b"\x10abc")
    with pytest.raises(InvalidAddressError) as caught:
        decoder.feed(b"\xff")
    assert caught.value.offset == 4


def test_invalid_continuation_split_across_feeds_is_located() -> None:
    decoder = FrameDecoder()
    decoder.feed(b"\x10ab\xe2\x9c")  # the first two bytes of a 3-byte character
    with pytest.raises(InvalidAddressError) as caught:
        decoder.feed(b"x")
    assert caught.value.offset == 3


def test_feeding_past_the_limit_fails_without_buffering_it() -> None:
    decoder = FrameDecoder(max_size=100)
    decoder.feed(HEADER + b"x" * 100)
    with pytest.raises(FrameTooLargeError):
        decoder.feed(b"y")
    assert decoder.received == len(HEADER) + 100


def test_header_errors_win_over_size_in_one_big_feed() -> None:
    decoder = FrameDecoder(max_size=10)
    with pytest.raises(InvalidAddressLengthError):
        decoder.feed(b"\x00" + b"x" * 100)


def test_error_is_raised_again_by_later_calls() -> None:
    decoder = FrameDecoder()
    with pytest.raises(InvalidAddressLengthError) as first:
        decoder.feed(b"\x00")
    with pytest.raises(InvalidAddressLengthError) as again:
        decoder.end_of_stream()
    assert again.value is first.value


def test_feeding_after_the_end_of_stream_is_an_error() -> None:
    decoder = FrameDecoder()
    decoder.feed(HEADER + b"x")
    decoder.end_of_stream()
    with pytest.raises(FrameError):
        decoder.feed(b"more")


def test_end_of_stream_inside_the_header_is_truncated() -> None:
    decoder = FrameDecoder()
    decoder.feed(HEADER[:3])
    with pytest.raises(TruncatedFrameError) as caught:
        decoder.end_of_stream()
    assert caught.value.offset == 3


def test_empty_feeds_change_nothing() -> None:
    decoder = FrameDecoder()
    assert feed_all(decoder, [b"", HEADER, b"", b"p", b""]) == Frame(SENDER, b"p")


def test_memoryview_and_bytearray_chunks_are_accepted() -> None:
    decoder = FrameDecoder()
    assert feed_all(decoder, [bytearray(HEADER), memoryview(b"pay")]) == Frame(SENDER, b"pay")


def test_max_size_below_one_is_a_usage_error() -> None:
    with pytest.raises(InvalidOptionError, match=">= 1"):
        FrameDecoder(max_size=0)


# -- properties -----------------------------------------------------------------------------


@profile
@given(frames)
def test_decoding_an_encoded_frame_gives_it_back(frame: Frame) -> None:
    assert decode_frame(encode_frame(frame.sender, frame.payload)) == frame


@profile
@given(frames)
def test_decoder_fed_one_byte_at_a_time_gives_the_frame(frame: Frame) -> None:
    data = encode_frame(frame.sender, frame.payload)
    decoder = FrameDecoder()
    assert feed_all(decoder, [data[i : i + 1] for i in range(len(data))]) == frame


@profile
@given(frames, st.lists(st.integers(min_value=0, max_value=3000), max_size=12))
def test_decoder_fed_in_random_splits_gives_the_frame(frame: Frame, cuts: list[int]) -> None:
    data = encode_frame(frame.sender, frame.payload)
    bounds = [0, *sorted(cut % (len(data) + 1) for cut in cuts), len(data)]
    chunks = [data[a:b] for a, b in itertools.pairwise(bounds)]
    assert feed_all(FrameDecoder(), chunks) == frame


@profile
@given(frames, st.integers(min_value=1, max_value=3000))
def test_decoder_never_holds_more_than_its_limit(frame: Frame, limit: int) -> None:
    data = encode_frame(frame.sender, frame.payload)
    header = len(data) - len(frame.payload)
    decoder = FrameDecoder(max_size=limit)
    try:
        for i in range(0, len(data), 7):
            decoder.feed(data[i : i + 7])
        decoded = decoder.end_of_stream()
    except FrameTooLargeError:
        assert len(frame.payload) > limit
        assert decoder.received <= header + limit
    else:
        assert (len(frame.payload) <= limit, decoded) == (True, frame)

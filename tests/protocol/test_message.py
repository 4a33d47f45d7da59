"""The message codec: exact bytes, validation on both sides, compression and size limits."""

from __future__ import annotations

import threading
from types import MappingProxyType, SimpleNamespace
from typing import cast

import msgpack
import pytest
import zstandard

from dcounter_crdt import MAX_COUNT, CounterState
from dcounter_protocol import (
    COMPRESSION_THRESHOLD,
    FLAG_COMPRESSED,
    FLAG_PLAIN,
    CountOutOfRangeError,
    DecompressionError,
    DigestAck,
    DigestPull,
    EmptyMessageError,
    EmptyNodeIdError,
    EmptyPushError,
    EncodeError,
    InvalidFlagError,
    InvalidMessageTypeError,
    MalformedMessageError,
    Message,
    MessageError,
    MessageTooLargeError,
    MessageType,
    Push,
    decode_message,
    encode_message,
)
from dcounter_protocol import _message_encoder as encoder_module

NODE = "127.0.0.1:9000"
#: msgpack of the key/value pairs every message starts with: {"t": cc 01, "id": NODE}.
PUSH_HEAD = "a174cc01a26964ae3132372e302e302e313a39303030"


def plain(body: object) -> bytes:
    """An uncompressed envelope around msgpack-python's (compact) encoding of ``body``."""
    return b"\x00" + msgpack.packb(body)


def push_body(**fields: object) -> dict[str, object]:
    return {"t": 1, "id": NODE, **fields}


def body_of(envelope: bytes) -> bytes:
    """The msgpack body of an envelope, decompressed if need be."""
    if envelope[0] == FLAG_COMPRESSED:
        return zstandard.ZstdDecompressor().decompress(envelope[1:])
    return envelope[1:]


# -- encoding: exact bytes ----------------------------------------------------------------


def test_type_is_written_as_uint8_even_when_a_fixint_would_do() -> None:
    encoded = encode_message(DigestPull(NODE, 5))
    assert encoded[:5].hex() == "0085a174cc"


def test_small_counts_are_written_as_full_uint64() -> None:
    encoded = encode_message(Push(NODE, {"a": 1}, None))
    assert encoded.hex() == f"0084{PUSH_HEAD}a3696e6381a161cf0000000000000001a3646563c0"


def test_zero_digest_omits_the_dig_key() -> None:
    encoded = encode_message(DigestAck(NODE, 0))
    assert encoded.hex() == "0084a174cc03a26964ae3132372e302e302e313a39303030a3696e63c0a3646563c0"


def test_nonzero_digest_is_the_fifth_key_as_uint64() -> None:
    encoded = encode_message(DigestPull(NODE, 1))
    assert encoded.hex().endswith("a3646967cf0000000000000001")


def test_nil_and_empty_maps_are_distinct_on_the_wire() -> None:
    encoded = encode_message(Push(NODE, {"a": 1}, {}))
    assert encoded.hex().endswith("a364656380")


@pytest.mark.parametrize(
    ("size", "header"),
    [
        (31, "bf"),
        (32, "d920"),
        (255, "d9ff"),
        (256, "da0100"),
        (65535, "daffff"),
        (65536, "db00010000"),
    ],
)
def test_string_header_width_follows_utf8_byte_length(size: int, header: str) -> None:
    body = body_of(encode_message(DigestPull("k" * size, 1)))
    assert body.hex().startswith(f"85a174cc02a26964{header}6b")


def test_multibyte_node_id_length_counts_bytes() -> None:
    encoded = encode_message(DigestPull("ö" * 16, 1))  # 32 UTF-8 bytes: str8
    assert encoded.hex().startswith("0085a174cc02a26964d920c3b6")


@pytest.mark.parametrize(("size", "header"), [(15, "8f"), (16, "de0010"), (65535, "deffff")])
def test_map_header_width_follows_entry_count(size: int, header: str) -> None:
    counts = {f"r{i}": 1 for i in range(size)}
    body = body_of(encode_message(Push(NODE, counts, None)))
    assert body.hex().startswith(f"84{PUSH_HEAD}a3696e63{header}")


def test_body_of_exactly_the_threshold_is_not_compressed() -> None:
    # Body = 45 bytes of fixed parts + a str16 key of n bytes (as push_body_1024_bytes).
    message = Push(NODE, {"a" * 979: 1}, None)
    encoded = encode_message(message)
    assert (encoded[0], len(encoded) - 1) == (FLAG_PLAIN, COMPRESSION_THRESHOLD)


def test_body_one_byte_over_the_threshold_is_compressed() -> None:
    encoded = encode_message(Push(NODE, {"a" * 980: 1}, None))
    assert encoded[0] == FLAG_COMPRESSED


def test_compressed_envelope_is_one_zstd_frame_with_size_and_checksum() -> None:
    encoded = encode_message(Push(NODE, {"a" * 2000: 1}, None))
    params = zstandard.get_frame_parameters(encoded[1:])
    assert (params.content_size, params.has_checksum) == (45 + 2000, True)


class _NoGainCompressor:
    def compress(self, data: bytes) -> bytes:
        return bytes(len(data))


def test_body_that_compression_does_not_shrink_stays_plain(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # libzstd shrinks every msgpack body this codec can produce (Huffman-coded literals), so
    # the "not smaller" branch that Go's encoder often takes is reached with a stub.
    monkeypatch.setattr(encoder_module, "compressor", _NoGainCompressor)
    message = Push(NODE, {"a" * 2000: 1}, None)
    encoded = encode_message(message)
    assert (encoded[0], len(encoded)) == (FLAG_PLAIN, 1 + 45 + 2000)


def test_encoding_is_deterministic_for_a_given_map_order() -> None:
    message = Push(NODE, {"b": 2, "a": 1}, {"c": 3})
    assert encode_message(message) == encode_message(Push(NODE, {"b": 2, "a": 1}, {"c": 3}))


def test_entries_keep_the_map_insertion_order() -> None:
    encoded = encode_message(Push(NODE, {"b": 2, "a": 1}, None))
    assert "82a162cf0000000000000002a161cf0000000000000001" in encoded.hex()


def state_push(
    increments: dict[str, int], decrements: dict[str, int] | None = None, digest: int = 0
) -> Push:
    """A push as a node builds it: of a CounterState (packed by the layout of its shape)."""
    return Push.from_state(NODE, CounterState.from_maps(increments, decrements), digest)


def test_same_replicas_in_another_order_keep_that_order() -> None:
    # Messages of the same replica ids share a packed layout only when the order matches too.
    first = encode_message(state_push({"a": 1, "b": 2}))
    second = encode_message(state_push({"b": 2, "a": 1}))
    assert "82a161cf0000000000000001a162cf0000000000000002" in first.hex()
    assert "82a162cf0000000000000002a161cf0000000000000001" in second.hex()


def test_new_counts_of_the_same_replicas_are_encoded() -> None:
    encode_message(state_push({"a": 1, "b": 2}, {"a": 3}, digest=9))
    decoded = decode_message(encode_message(state_push({"a": 10, "b": 20}, {"a": 30}, digest=7)))
    assert (decoded.increments, decoded.decrements, decoded.digest) == (
        {"a": 10, "b": 20},
        {"a": 30},
        7,
    )


def test_push_from_state_encodes_as_the_same_maps_given_as_dicts() -> None:
    state = CounterState.from_maps({"b": 2, "a": MAX_COUNT}, {"c": 3})
    from_state = Push.from_state(NODE, state, digest=5)
    assert from_state == Push(NODE, {"b": 2, "a": MAX_COUNT}, {"c": 3}, digest=5)
    assert encode_message(from_state) == encode_message(
        Push(NODE, {"b": 2, "a": MAX_COUNT}, {"c": 3}, digest=5)
    )


def test_many_message_shapes_outgrow_no_cache() -> None:
    # More distinct replica sets than the layout cache holds: it starts over, still exact.
    for i in range(2000):
        ids = [f"r{i}-{j}" for j in range(10)]
        counts = {rid: j + 1 for j, rid in enumerate(ids)}
        assert decode_message(encode_message(state_push(counts))).increments == counts


# -- encoding: validation -----------------------------------------------------------------


class _Text(str):
    """A str subclass: not a wire string (only exact str is)."""

    __slots__ = ()


class _Count(int):
    """An int subclass: not a count (only exact int is)."""

    __slots__ = ()


def _not_a_message(kind: object, increments: dict[str, int] | None = None) -> Message:
    """A look-alike with a type no message class has (the union cannot represent one)."""
    fields = {"node_id": NODE, "increments": increments, "decrements": None, "digest": 1}
    return cast("Message", SimpleNamespace(type=kind, **fields))


@pytest.mark.parametrize(
    "message",
    [
        pytest.param(_not_a_message(0), id="type-0"),
        pytest.param(_not_a_message(4), id="type-4"),
        pytest.param(_not_a_message(True, {"a": 1}), id="type-bool"),
        pytest.param(_not_a_message(1.0, {"a": 1}), id="type-float"),
        pytest.param(DigestPull("", 1), id="empty-node-id"),
        pytest.param(DigestPull(cast("str", b"x"), 1), id="bytes-node-id"),
        pytest.param(DigestPull("\ud800", 1), id="surrogate-node-id"),
        pytest.param(Push(NODE, None, None), id="push-nil-maps"),
        pytest.param(Push(NODE, {}, {}), id="push-empty-maps"),
        pytest.param(Push(NODE, {"a": -1}, None), id="negative-count"),
        pytest.param(Push(NODE, {"a": MAX_COUNT + 1}, None), id="count-over-uint64"),
        pytest.param(Push(NODE, {"a": cast("int", True)}, None), id="bool-count"),
        pytest.param(Push(NODE, {"a": cast("int", 1.0)}, None), id="float-count"),
        pytest.param(Push(NODE, {"": 1}, None), id="empty-replica-id"),
        pytest.param(Push(NODE, {cast("str", 7): 1}, None), id="int-replica-id"),
        pytest.param(Push(NODE, {"\udc00": 1}, None), id="surrogate-replica-id"),
        pytest.param(Push(NODE, {"a": 1}, {"b": -5}), id="bad-decrement"),
        pytest.param(DigestPull(NODE, -1), id="negative-digest"),
        pytest.param(DigestPull(NODE, MAX_COUNT + 1), id="digest-over-uint64"),
        pytest.param(DigestAck(NODE, cast("int", True)), id="bool-digest"),
    ],
)
def test_invalid_message_is_not_encoded(message: Message) -> None:
    with pytest.raises(EncodeError):
        encode_message(message)


@pytest.mark.parametrize(
    "message",
    [
        pytest.param(Push("", {"a": 1}, {}), id="empty-node-id"),
        pytest.param(Push(cast("str", b"x"), {"a": 1}, {}), id="bytes-node-id"),
        pytest.param(Push(_Text(NODE), {"a": 1}, {}), id="str-subclass-node-id"),
        pytest.param(Push(NODE, {}, {}), id="empty-maps"),
        pytest.param(Push(NODE, {"a": 1}, {"b": cast("int", True)}), id="bool-count"),
        pytest.param(Push(NODE, {"a": cast("int", _Count(1))}, {}), id="int-subclass-count"),
        pytest.param(Push(NODE, {"a": cast("int", 1.0)}, {}), id="float-count"),
        pytest.param(Push(NODE, {"a": -1}, {}), id="negative-count"),
        pytest.param(Push(NODE, {}, {"a": MAX_COUNT + 1}), id="count-over-uint64"),
        pytest.param(Push(NODE, {"": 1}, {}), id="empty-replica-id"),
        pytest.param(Push(NODE, {"a": 1}, {cast("str", None): 1}), id="none-replica-id"),
        pytest.param(Push(NODE, {"a": 1}, {"b": 1}, cast("int", True)), id="bool-digest"),
        pytest.param(Push(NODE, {"a": 1}, {"b": 1}, cast("int", 0.0)), id="float-digest"),
        pytest.param(Push(NODE, {"a": 1}, {"b": 1}, -1), id="negative-digest"),
    ],
)
def test_invalid_push_of_two_maps_is_not_encoded(message: Push) -> None:
    # Pushes whose maps are both given are packed by the layout of their shape: the same
    # checks hold there, before and after that shape was packed once.
    encode_message(Push(NODE, {"a": 1}, {"b": 1}, 1))
    encode_message(Push(NODE, {"a": 1}, {}))
    with pytest.raises(EncodeError):
        encode_message(message)


def test_encode_error_names_the_offending_map() -> None:
    with pytest.raises(EncodeError, match=r"^decrements: "):
        encode_message(Push(NODE, {"a": 1}, {"b": -5}))


@pytest.mark.parametrize("decrements", [None, {}], ids=["nil", "empty"])
@pytest.mark.parametrize("bad", [True, 1.0, -1, MAX_COUNT + 1], ids=repr)
def test_bad_count_of_an_already_encoded_shape_is_rejected(
    bad: object, decrements: dict[str, int] | None
) -> None:
    encode_message(Push(NODE, {"a": 1, "b": 2}, decrements))
    with pytest.raises(EncodeError, match=r"^increments: "):
        encode_message(Push(NODE, {"a": 1, "b": cast("int", bad)}, decrements))


def test_valid_count_after_a_rejected_one_still_encodes() -> None:
    # The entry cache must not keep anything from a failed encoding.
    with pytest.raises(EncodeError):
        encode_message(Push(NODE, {"x": MAX_COUNT + 1}, None))
    assert decode_message(encode_message(Push(NODE, {"x": MAX_COUNT}, None))).increments == {
        "x": MAX_COUNT
    }


def test_body_over_max_size_is_refused() -> None:
    with pytest.raises(EncodeError):
        encode_message(Push(NODE, {"a" * 200: 1}, None), max_size=200)


def test_plain_envelope_one_byte_over_max_size_is_refused() -> None:
    # Decoders bound the whole envelope, so the encoder must not emit body + flag > max.
    message = Push(NODE, {"a": 1}, None)
    size = len(encode_message(message))
    with pytest.raises(EncodeError):
        encode_message(message, max_size=size - 1)


def test_envelope_of_exactly_max_size_is_encoded() -> None:
    message = Push(NODE, {"a": 1}, None)
    size = len(encode_message(message))
    assert len(encode_message(message, max_size=size)) == size


def test_compressible_body_under_max_size_is_sent_compressed_within_it() -> None:
    message = Push(NODE, {f"replica-{i}": i for i in range(200)}, None)
    encoded = encode_message(message, max_size=5000)
    assert (encoded[0], len(encoded) <= 5000) == (FLAG_COMPRESSED, True)


def test_encoding_from_many_threads_gives_identical_bytes() -> None:
    message = Push(NODE, {f"replica-{i}": i for i in range(300)}, {"x": 1})
    expected = encode_message(message)
    results: list[tuple[bytes, Message]] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(20):
            encoded = encode_message(message)
            decoded = decode_message(encoded)
            with lock:
                results.append((encoded, decoded))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [(expected, message)] * 80


# -- the Message value --------------------------------------------------------------------


def test_message_maps_are_read_only_copies() -> None:
    counts = {"a": 1}
    message = Push(NODE, counts, None)
    counts["a"] = 99
    assert (message.increments, type(message.increments)) == ({"a": 1}, MappingProxyType)


def test_message_state_is_the_counts_as_a_counter_state() -> None:
    message = Push(NODE, {"a": 3, "b": 0}, {"a": 1})
    assert message.state() == CounterState.from_maps({"a": 3}, {"a": 1})


def test_message_state_of_nil_maps_is_empty() -> None:
    assert DigestPull(NODE, 5).state() == CounterState.empty()


def test_message_constructors_set_the_type() -> None:
    kinds = [
        Push(NODE, {"a": 1}, None).type,
        DigestPull(NODE, 1).type,
        DigestAck(NODE, 1).type,
    ]
    assert kinds == [MessageType.PUSH, MessageType.DIGEST_PULL, MessageType.DIGEST_ACK]


def test_message_with_nil_map_differs_from_one_with_empty_map() -> None:
    assert Push(NODE, {"a": 1}, None) != Push(NODE, {"a": 1}, {})


def test_message_is_immutable() -> None:
    message = DigestPull(NODE, 1)
    with pytest.raises(AttributeError):
        message.digest = 2  # type: ignore[misc]


# -- decoding: leniency like the reference ------------------------------------------------


def test_decoder_accepts_compact_integers() -> None:
    decoded = decode_message(plain(push_body(inc={"a": 5}, dig=7)))
    assert decoded == Push(NODE, {"a": 5}, None, 7)


def test_decoder_accepts_any_field_order() -> None:
    data = plain({"dec": {"b": 2}, "dig": 3, "inc": None, "id": NODE, "t": 1})
    assert decode_message(data) == Push(NODE, None, {"b": 2}, 3)


def test_decoder_ignores_unknown_fields_of_any_type() -> None:
    data = plain(push_body(inc={"a": 1}, extra=[1, {"x": b"y"}, None, 2.5], v=2))
    assert decode_message(data) == Push(NODE, {"a": 1}, None)


def test_decoder_reads_nil_fields_as_zero_values() -> None:
    data = plain({"t": 2, "id": NODE, "inc": None, "dec": None, "dig": None})
    assert decode_message(data) == DigestPull(NODE, 0)


def test_decoder_reads_nil_count_as_zero() -> None:
    assert decode_message(plain(push_body(inc={"a": None}))).increments == {"a": 0}


def test_decoder_keeps_zero_counts() -> None:
    assert decode_message(plain(push_body(inc={"a": 0}))).increments == {"a": 0}


def test_decoder_accepts_uncompressed_body_above_threshold() -> None:
    counts = {f"replica-{i}": i for i in range(100)}
    assert decode_message(plain(push_body(inc=counts))).increments == counts


def test_decoded_maps_are_read_only() -> None:
    decoded = decode_message(plain(push_body(inc={"a": 1})))
    assert type(decoded.increments) is MappingProxyType


def test_decoder_accepts_concatenated_zstd_frames() -> None:
    body = msgpack.packb(push_body(inc={"a": 1}, dec={"b": 2}))
    compressor = zstandard.ZstdCompressor()
    data = b"\x80" + compressor.compress(body[:10]) + compressor.compress(body[10:])
    assert decode_message(data) == Push(NODE, {"a": 1}, {"b": 2})


def test_decoder_accepts_zstd_frame_without_content_size() -> None:
    body = msgpack.packb(push_body(inc={"a": 1}))
    compressor = zstandard.ZstdCompressor(write_content_size=False)
    assert decode_message(b"\x80" + compressor.compress(body)) == Push(NODE, {"a": 1}, None)


def test_decoder_honours_a_larger_max_size() -> None:
    counts = {f"replica-{i:07d}": i for i in range(1000)}
    data = plain(push_body(inc=counts))
    assert decode_message(data, max_size=len(data)).increments == counts


# -- decoding: one error class per cause --------------------------------------------------


@pytest.mark.parametrize(
    ("data", "error"),
    [
        pytest.param(b"", EmptyMessageError, id="empty"),
        pytest.param(b"\x00", EmptyMessageError, id="plain-flag-only"),
        pytest.param(b"\x80", EmptyMessageError, id="compressed-flag-only"),
        pytest.param(b"\x01\x80", InvalidFlagError, id="flag-01"),
        pytest.param(b"\x80\x00\x01\x02\x03", DecompressionError, id="not-zstd"),
        pytest.param(b"\x00\xc1", MalformedMessageError, id="never-used-code"),
        pytest.param(plain([1, NODE]), MalformedMessageError, id="array-body"),
        pytest.param(plain(None), MalformedMessageError, id="nil-body"),
        pytest.param(plain({1: 2}), MalformedMessageError, id="int-field-name"),
        pytest.param(plain({b"t": 2, "id": NODE}), MalformedMessageError, id="bin-field-name"),
        pytest.param(plain(push_body(t="1")), MalformedMessageError, id="str-type"),
        pytest.param(plain(push_body(t=True)), MalformedMessageError, id="bool-type"),
        pytest.param(plain(push_body(id=5)), MalformedMessageError, id="int-node-id"),
        pytest.param(plain(push_body(inc=[1])), MalformedMessageError, id="array-counts"),
        pytest.param(plain(push_body(inc={"a": "1"})), MalformedMessageError, id="str-count"),
        pytest.param(plain(push_body(inc={"a": True})), MalformedMessageError, id="bool-count"),
        pytest.param(plain(push_body(inc={b"a": 1})), MalformedMessageError, id="bin-replica"),
        pytest.param(plain(push_body(inc={"": 1})), MalformedMessageError, id="empty-replica"),
        pytest.param(plain(push_body(inc={"a": 1}, dig=-1)), MalformedMessageError, id="neg-dig"),
        pytest.param(plain(push_body(inc={"a": 1}, dig="x")), MalformedMessageError, id="str-dig"),
        pytest.param(plain({"t": 9, "id": NODE}), InvalidMessageTypeError, id="type-9"),
        pytest.param(plain({"t": -1, "id": NODE}), InvalidMessageTypeError, id="type-negative"),
        pytest.param(plain({"t": 2, "id": ""}), EmptyNodeIdError, id="empty-node-id"),
        pytest.param(plain({"t": 2, "id": None}), EmptyNodeIdError, id="nil-node-id"),
        pytest.param(plain(push_body(inc={}, dec=None)), EmptyPushError, id="push-no-counts"),
        pytest.param(plain(push_body(inc={"a": -3})), CountOutOfRangeError, id="negative-count"),
        pytest.param(plain(push_body(dec={"a": -(2**63)})), CountOutOfRangeError, id="int64-min"),
    ],
)
def test_decoder_raises_the_error_of_the_cause(data: bytes, error: type[MessageError]) -> None:
    with pytest.raises(error):
        decode_message(data)


def test_malformed_field_wins_over_later_validation() -> None:
    # Like the reference: unmarshalling errors come before type/id/push validation.
    with pytest.raises(MalformedMessageError):
        decode_message(plain({"t": 9, "id": "", "inc": {"a": 1.5}}))


def test_invalid_type_is_reported_before_empty_node_id() -> None:
    with pytest.raises(InvalidMessageTypeError):
        decode_message(plain({"t": 0, "id": ""}))


def test_envelope_over_max_size_is_rejected_before_decoding() -> None:
    data = plain(push_body(inc={"a": 1}))
    with pytest.raises(MessageTooLargeError):
        decode_message(data, max_size=len(data) - 1)


def test_decompressed_body_over_max_size_is_rejected() -> None:
    data = encode_message(Push(NODE, {"a" * 5000: 1}, None))
    assert len(data) < 100
    with pytest.raises(MessageTooLargeError):
        decode_message(data, max_size=4096)


def test_every_decoding_error_is_a_message_error() -> None:
    for error in (
        EmptyMessageError,
        InvalidFlagError,
        DecompressionError,
        MalformedMessageError,
        InvalidMessageTypeError,
        EmptyNodeIdError,
        EmptyPushError,
        MessageTooLargeError,
        CountOutOfRangeError,
        EncodeError,
    ):
        assert issubclass(error, MessageError)

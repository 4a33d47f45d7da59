"""The Go reference's own vectors (tests/protocol/golden), group by group as its README says."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest
import zstandard

from dcounter_protocol import (
    COMPRESSION_THRESHOLD,
    DEFAULT_MAX_MESSAGE_SIZE,
    FLAG_COMPRESSED,
    CountOutOfRangeError,
    DecompressionError,
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
    decode_frame,
    decode_message,
    encode_frame,
    encode_message,
    serialize_state,
    state_digest,
)

pytestmark = pytest.mark.golden

GoldenMessage = Callable[[Mapping[str, Any]], Message]

#: The reference's sentinel errors and the class we raise for the same cause.
ERROR_KINDS: dict[str, type[MessageError]] = {
    "ErrEmptyMessage": EmptyMessageError,
    "ErrDecompression": DecompressionError,
    "ErrUnmarshall": MalformedMessageError,
    "ErrInvalidType": InvalidMessageTypeError,
    "ErrEmptyNodeID": EmptyNodeIdError,
    "ErrEmptyPNMaps": EmptyPushError,
    "ErrMessageTooLarge": MessageTooLargeError,
}

#: Inputs the reference accepts by accident, and our deliberate verdict on each:
#: None = accepted like the reference, else the error class we raise instead. Keep in step
#: with "Deliberate differences" in packages/protocol/README.md.
QUIRKS: dict[str, tuple[type[MessageError] | None, str]] = {
    "flag_01_is_uncompressed": (
        InvalidFlagError,
        "only 00 and 80 are defined; rejecting the rest keeps the other flag values free "
        "for a future extension instead of silently reading them as plain",
    ),
    "flag_ff_is_uncompressed": (InvalidFlagError, "as flag_01: undefined flag value"),
    "flag_81_is_uncompressed": (
        InvalidFlagError,
        "as flag_01; 81 reading as *uncompressed* is the most surprising case of all",
    ),
    "type_as_uint16_overflow": (
        InvalidMessageTypeError,
        "258 is not a message type; wrapping it to 2 is an artifact of Go's uint8 field",
    ),
    "negative_map_value": (
        CountOutOfRangeError,
        "-1 wrapped to 2**64-1 would become a permanent maximum for that replica under "
        "max-merge: one bad message would poison every counter that merges it",
    ),
    "node_id_as_bin": (
        MalformedMessageError,
        "the reference always writes str; bin is a wrong type, and accepting it would mean "
        "guessing an encoding",
    ),
    "struct_as_array": (
        MalformedMessageError,
        "positional decoding is a library artifact no encoder relies on; a body is a map",
    ),
    "trailing_bytes": (
        MalformedMessageError,
        "a body is exactly one msgpack object; extra bytes mean a framing bug or tampering",
    ),
    "duplicate_key": (
        None,
        "harmless and free: the last value wins, exactly as in the reference",
    ),
}


# -- constants --------------------------------------------------------------------------


def test_constants_match_the_reference(golden: dict[str, Any]) -> None:
    constants = golden["constants"]
    ours = {
        "CompressionThreshold": COMPRESSION_THRESHOLD,
        "MaxMessageSize": DEFAULT_MAX_MESSAGE_SIZE,
        "MessageFlagCompressed": FLAG_COMPRESSED,
        "MessageTypePush": MessageType.PUSH,
        "MessageTypeDigestPull": MessageType.DIGEST_PULL,
        "MessageTypeDigestAck": MessageType.DIGEST_ACK,
    }
    assert ours == {name: constants[name] for name in ours}


# -- encode -----------------------------------------------------------------------------


def test_encoding_meets_the_reference(
    encode_vector: dict[str, Any], golden_message: GoldenMessage
) -> None:
    message = golden_message(encode_vector["message"])
    encoded = encode_message(message)
    if encode_vector["compressed"]:
        # zstd encoders differ in their bytes: same flag, and the same body once decompressed.
        body = zstandard.ZstdDecompressor().decompress(encoded[1:])
        assert (encoded[0], decode_message(encoded), len(body)) == (
            FLAG_COMPRESSED,
            message,
            encode_vector["msgpack_len"],
        )
    elif encode_vector["deterministic"]:
        assert encoded.hex() == encode_vector["hex"]
    else:
        # Go's map order is random; we emit one of the orders the reference was seen using.
        assert encoded.hex() in encode_vector["variants"]


def test_reference_encoding_decodes_to_its_message(
    encode_vector: dict[str, Any], golden_message: GoldenMessage
) -> None:
    decoded = decode_message(bytes.fromhex(encode_vector["hex"]))
    assert decoded == golden_message(encode_vector["message"])


def test_encoder_rejects_what_the_reference_refuses(
    encode_reject_vector: dict[str, Any], golden_message: GoldenMessage
) -> None:
    assert encode_reject_vector["outcome"] == "panic"
    with pytest.raises(EncodeError):
        encode_message(golden_message(encode_reject_vector["message"]))


# -- digest -----------------------------------------------------------------------------


def test_serialization_matches_reference_bytes(digest_vector: dict[str, Any]) -> None:
    serialized = serialize_state(digest_vector["inc"], digest_vector["dec"])
    assert serialized.hex() == digest_vector["serialized_hex"]


def test_digest_matches_reference(digest_vector: dict[str, Any]) -> None:
    assert state_digest(digest_vector["inc"], digest_vector["dec"]) == digest_vector["digest"]


# -- frames -----------------------------------------------------------------------------


def test_frame_matches_reference_bytes(frame_vector: dict[str, Any]) -> None:
    frame = encode_frame(frame_vector["sender_addr"], bytes.fromhex(frame_vector["payload_hex"]))
    assert frame.hex() == frame_vector["frame_hex"]


def test_reference_frame_splits_into_sender_and_payload(frame_vector: dict[str, Any]) -> None:
    frame = decode_frame(bytes.fromhex(frame_vector["frame_hex"]))
    assert (frame.sender, frame.payload.hex()) == (
        frame_vector["sender_addr"],
        frame_vector["payload_hex"],
    )


def test_frames_over_the_reference_read_buffer_are_valid_for_us(golden: dict[str, Any]) -> None:
    # tcp_receive_limits: Go cuts frames to its 16 KiB read; our decoder takes them whole.
    limit = golden["constants"]["ReadBufferSize"]
    payload = bytes(2 * limit)
    frame = decode_frame(encode_frame("127.0.0.1:9000", payload))
    assert len(frame.payload) == 2 * limit


# -- decode -----------------------------------------------------------------------------


def test_decode_gives_the_reference_verdict(
    decode_vector: dict[str, Any], golden_message: GoldenMessage
) -> None:
    data = bytes.fromhex(decode_vector["input_hex"])
    match decode_vector["class"]:
        case "must_accept":
            assert decode_message(data) == golden_message(decode_vector["decoded"])
        case "must_reject":
            with pytest.raises(ERROR_KINDS[decode_vector["error_kind"]]):
                decode_message(data)
        case "reference_quirk":
            expected, _reason = QUIRKS[decode_vector["name"]]
            if expected is None:
                assert decode_message(data) == golden_message(decode_vector["decoded"])
            else:
                with pytest.raises(expected):
                    decode_message(data)
        case other:
            pytest.fail(f"unknown vector class {other!r}")


def test_every_reference_quirk_has_a_documented_decision(golden: dict[str, Any]) -> None:
    quirks = {v["name"] for v in golden["decode"] if v["class"] == "reference_quirk"}
    assert quirks == set(QUIRKS)


def test_every_reference_error_kind_is_mapped(golden: dict[str, Any]) -> None:
    kinds = {v["error_kind"] for v in golden["decode"] if v["class"] == "must_reject"}
    assert kinds <= set(ERROR_KINDS)


def test_python_library_output_is_accepted(
    python_input_vector: dict[str, Any], golden_message: GoldenMessage
) -> None:
    decoded = decode_message(bytes.fromhex(python_input_vector["input_hex"]))
    assert decoded == golden_message(python_input_vector["decoded"])


# -- node_exchange ----------------------------------------------------------------------


def test_sent_frame_decodes_to_the_sent_message(
    exchange_step: dict[str, Any], golden: dict[str, Any], golden_message: GoldenMessage
) -> None:
    frame = decode_frame(bytes.fromhex(exchange_step["sent_frame_hex"]))
    assert (frame.sender, decode_message(frame.payload)) == (
        golden["node_exchange"]["peer_addr"],
        golden_message(exchange_step["sent"]),
    )


def test_sent_frame_is_what_we_would_send(
    exchange_step: dict[str, Any], golden: dict[str, Any], golden_message: GoldenMessage
) -> None:
    # Every message P sends has at most one key per map, so its bytes are deterministic.
    payload = encode_message(golden_message(exchange_step["sent"]))
    frame = encode_frame(golden["node_exchange"]["peer_addr"], payload)
    assert frame.hex() == exchange_step["sent_frame_hex"]


def test_reply_is_what_we_would_encode(
    exchange_reply_step: dict[str, Any], golden_message: GoldenMessage
) -> None:
    reply = golden_message(exchange_reply_step["reply"])
    payload = bytes.fromhex(exchange_reply_step["reply_payload_hex"])
    if exchange_reply_step["reply_bytes_deterministic"]:
        assert encode_message(reply) == payload
    else:
        assert decode_message(payload) == reply


def test_node_digest_after_step_matches(exchange_step: dict[str, Any]) -> None:
    digest = state_digest(exchange_step["node_inc_after"], exchange_step["node_dec_after"])
    assert digest == exchange_step["node_digest_after"]

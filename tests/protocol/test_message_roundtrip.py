"""Round-trip properties of the message codec (Hypothesis; strategies in conftest.py)."""

from __future__ import annotations

import msgpack
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from dcounter_protocol import (
    FLAG_COMPRESSED,
    DigestAck,
    DigestPull,
    Message,
    Push,
    decode_message,
    encode_message,
)

profile = settings.get_profile("protocol")
messages: st.SearchStrategy[Message] = st.one_of(
    st.from_type(Push), st.from_type(DigestPull), st.from_type(DigestAck)
)


def _body(envelope: bytes) -> bytes:
    if envelope[0] == FLAG_COMPRESSED:
        return zstandard.ZstdDecompressor().decompress(envelope[1:])
    return envelope[1:]


def _as_dict(message: Message) -> dict[str, object]:
    """The message as msgpack-python would hand it over (nil maps as None)."""
    fields: dict[str, object] = {
        "t": int(message.type),
        "id": message.node_id,
        "inc": None if message.increments is None else dict(message.increments),
        "dec": None if message.decrements is None else dict(message.decrements),
    }
    if message.digest:
        fields["dig"] = message.digest
    return fields


@profile
@given(messages)
def test_decoding_an_encoded_message_gives_it_back(message: Message) -> None:
    assert decode_message(encode_message(message)) == message


@profile
@given(messages)
def test_reencoding_a_decoded_message_gives_the_same_bytes(message: Message) -> None:
    encoded = encode_message(message)
    assert encode_message(decode_message(encoded)) == encoded


@profile
@given(messages)
def test_encoded_body_is_plain_msgpack_of_the_fields(message: Message) -> None:
    # Any msgpack library reads our bytes as the reference's field map, keys in its order.
    unpacked = msgpack.unpackb(_body(encode_message(message)), raw=False)
    assert list(unpacked.items()) == list(_as_dict(message).items())


@profile
@given(messages)
def test_compact_python_encoding_decodes_to_the_same_message(message: Message) -> None:
    # msgpack-python picks the smallest int widths: the reference accepts that, and so do we.
    assert decode_message(b"\x00" + msgpack.packb(_as_dict(message))) == message


@profile
@given(messages)
def test_encoded_messages_are_compressed_only_when_over_threshold(message: Message) -> None:
    encoded = encode_message(message)
    assert encoded[0] in (0x00, 0x80)
    assert encoded[0] == 0x00 or len(_body(encoded)) > 1024

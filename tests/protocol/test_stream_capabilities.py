"""Version 2 of the stream hello: capability bytes both ways, and version 1 kept for old nodes."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from dcounter_protocol import (
    CAP_MEMBERSHIP,
    STREAM_ACK,
    EncodeError,
    HandshakeError,
    InvalidOptionError,
    StreamDecoder,
    TCPOptions,
    TCPTransport,
    encode_ack,
    encode_hello,
    encode_stream_frames,
    parse_ack,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from tests.conftest import WaitUntil

DEADLINE = 30.0


def test_version_2_hello_ends_with_the_capability_byte() -> None:
    assert encode_hello("a:1", capabilities=CAP_MEMBERSHIP) == b"\x00DCS\x02\x03a:1\x01"
    assert encode_hello("a:1") == b"\x00DCS\x01\x03a:1"


def test_version_2_ack_carries_the_listeners_capabilities() -> None:
    assert encode_ack(5) == b"DCS\x02\x05"
    assert encode_ack() == STREAM_ACK
    assert parse_ack(b"DCS\x02", version=2) is False
    assert parse_ack(b"DCS\x02\x05", version=2) is True


@pytest.mark.parametrize("reply", [b"DCS\x01", b"DCS\x02\x01!"])
def test_a_version_2_hello_wants_a_version_2_ack(reply: bytes) -> None:
    with pytest.raises(HandshakeError):
        parse_ack(reply, version=2)


@pytest.mark.parametrize("capabilities", [-1, 256, True])
def test_capabilities_are_one_byte(capabilities: int) -> None:
    with pytest.raises(EncodeError):
        encode_hello("a:1", capabilities=capabilities)
    with pytest.raises(InvalidOptionError):
        TCPOptions(capabilities=capabilities)


def test_decoder_reads_version_and_capabilities_at_any_chunking() -> None:
    data = encode_hello("a:1", capabilities=3) + encode_stream_frames([b"x", b"yz"])
    decoder = StreamDecoder()
    frames = [frame for i in range(len(data)) for frame in decoder.feed(data[i : i + 1])]
    assert (decoder.sender, decoder.version, decoder.capabilities) == ("a:1", 2, 3)
    assert frames == [b"x", b"yz"]


class OldListener:
    """A listener that only knows version 1, like dcounter before capabilities."""

    def __init__(self) -> None:
        self.hellos: list[int] = []
        self.frames: list[bytes] = []
        self.server: asyncio.Server | None = None

    @property
    def address(self) -> str:
        assert self.server is not None
        return f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readexactly(5)
            self.hellos.append(head[4])
            if head[4] != 1:
                return  # unsupported version: closed without a confirmation
            decoder = StreamDecoder()
            decoder.feed(head)
            writer.write(STREAM_ACK)
            while data := await reader.read(65536):
                self.frames.extend(decoder.feed(data))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def old_listener() -> AsyncIterator[OldListener]:
    listener = OldListener()
    listener.server = await asyncio.start_server(listener.handle, "127.0.0.1", 0)
    try:
        yield listener
    finally:
        listener.server.close()
        await listener.server.wait_closed()


async def ignore(sender: str, payload: bytes) -> None:
    return None


async def test_capabilities_are_exchanged_between_new_transports(wait_until: WaitUntil) -> None:
    received: list[bytes] = []

    async def collect(sender: str, payload: bytes) -> None:
        received.append(payload)

    listener = TCPTransport(options=TCPOptions(capabilities=CAP_MEMBERSHIP))
    dialer = TCPTransport(options=TCPOptions(capabilities=CAP_MEMBERSHIP))
    try:
        await listener.listen(collect)
        await dialer.listen(ignore)
        assert dialer.capabilities(listener.address) is None
        assert await dialer.open_stream(listener.address)
        assert dialer.capabilities(listener.address) == CAP_MEMBERSHIP
        assert dialer.send_nowait(listener.address, b"\x00hello")
        await wait_until(lambda: bool(received), within=DEADLINE, what="the message")
        assert received == [b"\x00hello"]
    finally:
        await dialer.close()
        await listener.close()


async def test_a_listener_without_capabilities_answers_version_2_with_none() -> None:
    listener = TCPTransport()
    dialer = TCPTransport(options=TCPOptions(capabilities=CAP_MEMBERSHIP))
    try:
        await listener.listen(ignore)
        await dialer.listen(ignore)
        assert await dialer.open_stream(listener.address)
        assert dialer.capabilities(listener.address) == 0
    finally:
        await dialer.close()
        await listener.close()


async def test_an_old_listener_gets_a_version_1_stream_not_the_seed_framing(
    old_listener: OldListener, wait_until: WaitUntil
) -> None:
    dialer = TCPTransport(options=TCPOptions(capabilities=CAP_MEMBERSHIP))
    try:
        await dialer.listen(ignore)
        await dialer.send(old_listener.address, b"\x00counter")
        await wait_until(lambda: bool(old_listener.frames), within=DEADLINE, what="the frame")
        assert old_listener.hellos == [2, 1]
        assert old_listener.frames == [b"\x00counter"]
        assert dialer.capabilities(old_listener.address) == 0
        assert dialer.stats().seed_sent == 0
    finally:
        await dialer.close()


async def test_without_capabilities_the_hello_stays_version_1(old_listener: OldListener) -> None:
    dialer = TCPTransport()
    try:
        await dialer.listen(ignore)
        assert await dialer.open_stream(old_listener.address)
        assert old_listener.hellos == [1]
    finally:
        await dialer.close()


async def test_open_stream_with_the_seed_wire_opens_nothing() -> None:
    dialer = TCPTransport(options=TCPOptions(wire="seed"))
    try:
        await dialer.listen(ignore)
        assert not await dialer.open_stream("127.0.0.1:9")
    finally:
        await dialer.close()

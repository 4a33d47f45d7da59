"""TCPTransport's stream mode: negotiation and fallback, reconnects, queues, idle and hostile
streams, close. The contract tests run on it too, through the ``tcp-auto`` kit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import TYPE_CHECKING, Literal

import pytest

from dcounter_protocol import (
    STREAM_ACK,
    ConnectError,
    EncodeError,
    StreamDecoder,
    TransportClosedError,
    decode_frame,
    encode_frame,
    encode_hello,
    encode_stream_frames,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from tests.protocol.transport.conftest import Inbox, MakeTCP, RawClients, WaitUntil

    from dcounter_protocol._tcp import TCPTransport

LOGGER = "dcounter_protocol._tcp"
HELLO = encode_hello("127.0.0.1:9000")
#: Big enough that a few of them fill the socket buffers of a peer that does not read.
BIG = 256 * 1024


def warnings_of(caplog: pytest.LogCaptureFixture, text: str = "") -> list[str]:
    """The transport's warning lines (containing ``text``)."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == LOGGER and r.levelno == logging.WARNING and text in r.getMessage()
    ]


def port_of(address: str) -> int:
    return int(address.rpartition(":")[2])


class _Server:
    """A raw asyncio server whose connection handlers are tracked and cancelled on close."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.writers: list[asyncio.StreamWriter] = []

    @property
    def address(self) -> str:
        if self.server is None:
            raise RuntimeError("not started")
        return f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def start(self, *, sock: socket.socket | None = None) -> None:
        if sock is None:
            self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        else:
            self.server = await asyncio.start_server(self._serve, sock=sock)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)
        self.writers.append(writer)
        try:
            await self.serve(reader, writer)
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        """Stop listening and reset every connection (like a killed process)."""
        if self.server is not None:
            self.server.close()
        for writer in self.writers:
            writer.transport.abort()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.server is not None:
            await self.server.wait_closed()


Behaviour = Literal["closes", "resets", "garbage", "silent"]


class SeedOnlyServer(_Server):
    """A listener that knows only the seed's framing, like the Go reference.

    On a stream hello it does what ``behaviour`` says (the reference reads once and closes);
    seed frames it reads to EOF and queues as (raw bytes, sender, payload).
    """

    def __init__(self, behaviour: Behaviour) -> None:
        super().__init__()
        self.behaviour = behaviour
        self.probes = 0
        self.frames: asyncio.Queue[tuple[bytes, str, bytes]] = asyncio.Queue()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = await reader.read(65536)  # one read, as the reference does
        if first[:1] == b"\x00":
            self.probes += 1
            if self.behaviour == "resets":
                writer.transport.abort()
                return
            if self.behaviour == "garbage":
                writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            if self.behaviour in ("garbage", "silent"):
                await reader.read()  # until the dialer gives up
            return
        data = first + await reader.read()
        frame = decode_frame(data)
        self.frames.put_nowait((data, frame.sender, frame.payload))

    async def get(self) -> tuple[bytes, str, bytes]:
        async with asyncio.timeout(5):
            return await self.frames.get()


class SlowToConfirm(_Server):
    """Confirms a stream only once ``confirm`` is set; queues (wire, payload) it receives."""

    def __init__(self) -> None:
        super().__init__()
        self.confirm = asyncio.Event()
        self.received: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = await reader.read(65536)
        if first[:1] != b"\x00":
            self.received.put_nowait(("seed", decode_frame(first + await reader.read()).payload))
            return
        await self.confirm.wait()
        writer.write(STREAM_ACK)
        decoder = StreamDecoder()
        for payload in decoder.feed(first):
            self.received.put_nowait(("stream", payload))
        while chunk := await reader.read(65536):
            for payload in decoder.feed(chunk):
                self.received.put_nowait(("stream", payload))

    async def get(self) -> tuple[str, bytes]:
        async with asyncio.timeout(5):
            return await self.received.get()


class StallingListener(_Server):
    """Confirms every stream, then never reads again (a peer whose handler hangs)."""

    async def start_stalling(self, port: int = 0) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.bind(("127.0.0.1", port))
        await self.start(sock=sock)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        header = await reader.readexactly(6)
        await reader.readexactly(header[5])
        writer.write(STREAM_ACK)
        await asyncio.Event().wait()


@pytest.fixture
async def servers() -> AsyncIterator[list[_Server]]:
    """Raw servers made by a test; all closed after it."""
    made: list[_Server] = []
    yield made
    for server in made:
        await server.close()


async def seed_only(servers: list[_Server], behaviour: Behaviour) -> SeedOnlyServer:
    server = SeedOnlyServer(behaviour)
    await server.start()
    servers.append(server)
    return server


async def stalling(servers: list[_Server], port: int = 0) -> StallingListener:
    server = StallingListener()
    await server.start_stalling(port)
    servers.append(server)
    return server


async def fill_until_queued(sender: TCPTransport, address: str) -> bytes:
    """Send big payloads to a peer that does not read until one stays queued; returns it."""
    for index in range(400):
        payload = index.to_bytes(4, "big") + bytes(BIG)
        await sender.send(address, payload)
        await asyncio.sleep(0)  # let the flush run; not waiting for any condition
        if sender.stats().queued:
            return payload
    raise AssertionError("the stream never stopped taking data")


# -- the stream between two of ours -----------------------------------------------------------


async def test_many_messages_share_one_stream(make_tcp: MakeTCP, inbox: Inbox) -> None:
    receiver = make_tcp()
    await receiver.listen(inbox)
    sender = make_tcp()

    for index in range(50):
        await sender.send(receiver.address, b"m%d" % index)

    assert await inbox.get_many(50) == [("127.0.0.1:0", b"m%d" % i) for i in range(50)]
    sent, received = sender.stats(), receiver.stats()
    assert (sent.streams_opened, sent.stream_sent, sent.seed_sent) == (1, 50, 0)
    assert (received.stream_received, received.seed_received, received.open_streams_in) == (
        50,
        0,
        1,
    )


async def test_concurrent_first_sends_share_one_handshake(make_tcp: MakeTCP, inbox: Inbox) -> None:
    receiver = make_tcp()
    await receiver.listen(inbox)
    sender = make_tcp()

    await asyncio.gather(*(sender.send(receiver.address, b"c%d" % i) for i in range(10)))

    assert sorted(p for _, p in await inbox.get_many(10)) == sorted(b"c%d" % i for i in range(10))
    assert (sender.stats().streams_opened, sender.stats().stream_sent) == (1, 10)


async def test_seed_wire_never_offers_a_stream(make_tcp: MakeTCP, inbox: Inbox) -> None:
    receiver = make_tcp()
    await receiver.listen(inbox)
    sender = make_tcp(wire="seed")

    for index in range(3):
        await sender.send(receiver.address, b"s%d" % index)

    assert [p for _, p in await inbox.get_many(3)] == [b"s0", b"s1", b"s2"]
    assert (sender.stats().seed_sent, sender.stats().streams_opened) == (3, 0)
    assert (receiver.stats().seed_received, receiver.stats().stream_received) == (3, 0)


async def test_seed_wire_listener_still_accepts_streams(make_tcp: MakeTCP, inbox: Inbox) -> None:
    receiver = make_tcp(wire="seed")
    await receiver.listen(inbox)
    sender = make_tcp()

    await sender.send(receiver.address, b"streamed")

    assert await inbox.get() == ("127.0.0.1:0", b"streamed")
    assert receiver.stats().stream_received == 1


async def test_payload_above_max_message_size_takes_the_seed_framing(
    make_tcp: MakeTCP, inbox: Inbox
) -> None:
    receiver = make_tcp()
    await receiver.listen(inbox)
    sender = make_tcp(max_message_size=1000)

    await sender.send(receiver.address, bytes(1500))

    assert await inbox.get() == ("127.0.0.1:0", bytes(1500))
    assert (sender.stats().seed_sent, sender.stats().streams_opened) == (1, 0)


async def test_empty_payload_is_refused(make_tcp: MakeTCP, inbox: Inbox) -> None:
    receiver = make_tcp()
    await receiver.listen(inbox)

    with pytest.raises(EncodeError):
        await make_tcp().send(receiver.address, b"")


async def test_send_nowait_queues_only_on_an_open_stream(make_tcp: MakeTCP, inbox: Inbox) -> None:
    receiver = make_tcp()
    await receiver.listen(inbox)
    sender = make_tcp()

    assert sender.send_nowait(receiver.address, b"no stream yet") is False
    await sender.send(receiver.address, b"opens it")
    assert sender.send_nowait(receiver.address, b"queued") is True

    assert await inbox.get_many(2) == [("127.0.0.1:0", b"opens it"), ("127.0.0.1:0", b"queued")]
    assert sender.stats().stream_sent == 2


async def test_corked_sends_are_held_then_written_together_when_the_block_ends(
    make_tcp: MakeTCP, inbox: Inbox
) -> None:
    receiver = make_tcp()
    await receiver.listen(inbox)
    sender = make_tcp()
    await sender.send(receiver.address, b"opens it")
    await inbox.get_many(1)

    with sender.corked():
        with sender.corked():
            assert sender.send_nowait(receiver.address, b"one") is True
        assert sender.send_nowait(receiver.address, b"two") is True
        assert (sender.stats().queued, sender.stats().stream_sent) == (2, 1)
    # Written as the outer block ends, before any pass of the loop.
    assert (sender.stats().queued, sender.stats().stream_sent) == (0, 3)
    assert await inbox.get_many(2) == [("127.0.0.1:0", b"one"), ("127.0.0.1:0", b"two")]


async def test_send_nowait_never_queues_for_the_seed_wire(make_tcp: MakeTCP, inbox: Inbox) -> None:
    receiver = make_tcp()
    await receiver.listen(inbox)
    sender = make_tcp(wire="seed")
    await sender.send(receiver.address, b"one")

    assert sender.send_nowait(receiver.address, b"two") is False
    assert sender.stats().queued == 0


async def test_send_nowait_after_close_raises(make_tcp: MakeTCP) -> None:
    sender = make_tcp()
    await sender.close()

    with pytest.raises(TransportClosedError):
        sender.send_nowait("127.0.0.1:1", b"late")


# -- seed-only peers --------------------------------------------------------------------------


@pytest.mark.parametrize("behaviour", ["closes", "resets", "garbage", "silent"])
async def test_seed_only_peer_gets_the_reference_bytes_after_one_probe(
    make_tcp: MakeTCP, servers: list[_Server], behaviour: Behaviour, wait_until: WaitUntil
) -> None:
    peer = await seed_only(servers, behaviour)
    # A silent peer gets the seed framing after handshake_timeout, and is taken for
    # seed-only once read_timeout has passed without a confirmation.
    sender = make_tcp(handshake_timeout=0.2, read_timeout=0.4)

    await sender.send(peer.address, b"first")
    await sender.send(peer.address, b"second")

    assert await peer.get() == (encode_frame("127.0.0.1:0", b"first"), "127.0.0.1:0", b"first")
    assert await peer.get() == (encode_frame("127.0.0.1:0", b"second"), "127.0.0.1:0", b"second")
    await wait_until(lambda: sender.stats().seed_fallbacks == 1)
    assert peer.probes == 1
    stats = sender.stats()
    assert (stats.seed_sent, stats.streams_opened) == (2, 0)


async def test_late_confirmation_still_opens_the_stream(
    make_tcp: MakeTCP, servers: list[_Server], wait_until: WaitUntil
) -> None:
    peer = SlowToConfirm()
    await peer.start()
    servers.append(peer)
    sender = make_tcp(handshake_timeout=0.1)

    await sender.send(peer.address, b"first")  # not confirmed in time: the seed framing
    assert await peer.get() == ("seed", b"first")
    peer.confirm.set()
    await wait_until(lambda: sender.stats().streams_opened == 1)
    await sender.send(peer.address, b"second")

    assert await peer.get() == ("stream", b"second")
    assert (sender.stats().seed_fallbacks, sender.stats().seed_sent) == (0, 1)


async def test_seed_only_peer_is_reprobed_after_the_interval(
    make_tcp: MakeTCP, servers: list[_Server], inbox: Inbox
) -> None:
    loop = asyncio.get_running_loop()
    reference = await seed_only(servers, "closes")
    address = reference.address
    sender = make_tcp(reprobe_interval=0.3)
    before_fallback = loop.time()
    await sender.send(address, b"to the reference")
    assert (await reference.get())[2] == b"to the reference"
    # The peer is replaced by one of ours on the same port (obtained from port 0).
    await reference.close()
    upgraded = make_tcp(address)
    await upgraded.listen(inbox)

    sent_with_seed = 0
    async with asyncio.timeout(5):
        while sender.stats().streams_opened == 0:
            await sender.send(address, b"probe?")
            assert await inbox.get() == ("127.0.0.1:0", b"probe?")
            sent_with_seed += 1

    assert loop.time() - before_fallback >= 0.3
    assert sent_with_seed > 1
    assert sender.stats().seed_fallbacks == 1
    assert upgraded.stats().stream_received == 1


async def test_silent_peer_is_probed_again_sooner_than_a_refusing_one(
    make_tcp: MakeTCP, servers: list[_Server], wait_until: WaitUntil
) -> None:
    peer = await seed_only(servers, "silent")
    sender = make_tcp(
        handshake_timeout=0.1, read_timeout=0.2, reconnect_max_delay=0.3, reprobe_interval=60.0
    )
    await sender.send(peer.address, b"first")
    await wait_until(lambda: sender.stats().seed_fallbacks == 1)

    async with asyncio.timeout(5):
        while peer.probes < 2:
            await sender.send(peer.address, b"again")
            await peer.get()

    assert peer.probes == 2


# -- reconnecting -----------------------------------------------------------------------------


async def test_sender_reaches_a_receiver_restarted_on_the_same_port(
    make_tcp: MakeTCP, make_inbox: type[Inbox], wait_until: WaitUntil
) -> None:
    first_inbox, second_inbox = make_inbox(), make_inbox()
    first = make_tcp()
    await first.listen(first_inbox)
    sender = make_tcp()
    await sender.send(first.address, b"one")
    assert await first_inbox.get() == ("127.0.0.1:0", b"one")

    await first.close()
    await wait_until(lambda: sender.stats().open_streams_out == 0)
    second = make_tcp(first.address)
    await second.listen(second_inbox)
    await sender.send(second.address, b"two")

    assert await second_inbox.get() == ("127.0.0.1:0", b"two")
    assert sender.stats().streams_opened == 2


async def test_queued_messages_survive_a_broken_stream_and_follow_the_reconnect(
    make_tcp: MakeTCP, servers: list[_Server], inbox: Inbox
) -> None:
    stalled = await stalling(servers)
    address = stalled.address
    sender = make_tcp()
    queued_big = await fill_until_queued(sender, address)
    await sender.send(address, b"queued 1")
    await sender.send(address, b"queued 2")

    await stalled.close()  # the peer dies with its socket buffers full
    await sender.send(address, b"sent while reconnecting")  # only queues: no error
    restarted = make_tcp(address)
    await restarted.listen(inbox)

    received = [payload for _, payload in await inbox.get_many(4)]
    assert received == [queued_big, b"queued 1", b"queued 2", b"sent while reconnecting"]
    stats = sender.stats()
    assert stats.streams_opened == 2
    assert stats.reconnects >= 1
    assert stats.queued == 0


async def test_full_queue_drops_the_oldest_and_counts_it(
    make_tcp: MakeTCP, servers: list[_Server]
) -> None:
    stalled = await stalling(servers)
    sender = make_tcp(stream_queue_size=4)
    await fill_until_queued(sender, stalled.address)

    for index in range(10):
        await sender.send(stalled.address, b"q%d" % index)

    stats = sender.stats()
    assert (stats.queued, stats.queue_drops) == (4, 7)


async def test_reconnecting_gives_up_after_the_longest_delay_then_sends_raise_again(
    make_tcp: MakeTCP,
    servers: list[_Server],
    caplog: pytest.LogCaptureFixture,
    wait_until: WaitUntil,
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    stalled = await stalling(servers)
    address = stalled.address
    sender = make_tcp(reconnect_delay=0.02, reconnect_max_delay=0.04)
    await fill_until_queued(sender, address)
    await sender.send(address, b"doomed")

    await stalled.close()

    await wait_until(lambda: sender.stats().undelivered == 2)
    assert sender.stats().queued == 0
    assert len(warnings_of(caplog, "cannot reconnect")) == 1
    with pytest.raises(ConnectError):
        await sender.send(address, b"next")


async def test_stream_without_progress_is_aborted_after_write_timeout(
    make_tcp: MakeTCP,
    servers: list[_Server],
    caplog: pytest.LogCaptureFixture,
    wait_until: WaitUntil,
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    stalled = await stalling(servers)
    sender = make_tcp(write_timeout=0.3)
    await fill_until_queued(sender, stalled.address)

    await wait_until(lambda: sender.stats().reconnects >= 1)

    (warning,) = warnings_of(caplog, "made no progress")
    assert "made no progress for 0.3s" in warning


# -- idle streams -----------------------------------------------------------------------------


async def test_idle_outbound_stream_is_closed_and_the_next_send_opens_another(
    make_tcp: MakeTCP, inbox: Inbox, wait_until: WaitUntil, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    receiver = make_tcp()
    await receiver.listen(inbox)
    sender = make_tcp(stream_idle_timeout=0.2)
    await sender.send(receiver.address, b"one")
    assert await inbox.get() == ("127.0.0.1:0", b"one")

    await wait_until(
        lambda: sender.stats().open_streams_out == 0 and receiver.stats().open_streams_in == 0
    )
    await sender.send(receiver.address, b"two")

    assert await inbox.get() == ("127.0.0.1:0", b"two")
    assert sender.stats().streams_opened == 2
    assert warnings_of(caplog) == []


async def test_idle_inbound_stream_is_closed_by_the_listener(
    make_tcp: MakeTCP, raw: RawClients, inbox: Inbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    receiver = make_tcp(stream_idle_timeout=0.1, read_timeout=0.2)
    await receiver.listen(inbox)
    reader, writer = await raw.connect(receiver.address)

    writer.write(HELLO + encode_stream_frames([b"hi"]))

    assert await inbox.get() == ("127.0.0.1:9000", b"hi")
    async with asyncio.timeout(5):
        assert await reader.read() == STREAM_ACK  # then EOF: closed, not reset
    assert warnings_of(caplog) == []
    assert receiver.stats().inbound_dropped == 0


# -- hostile streams --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "half_close", "error"),
    [
        pytest.param(b"\x00XYZ\x01\x03a:1", False, "HandshakeError: bad stream magic", id="magic"),
        pytest.param(b"\x00DCS\x07", False, "unsupported stream version 7", id="version"),
        pytest.param(b"\x00DCS\x01\x00", False, "InvalidAddressLengthError", id="zero-address"),
        pytest.param(HELLO + b"\xff\xff\xff\xff", False, "FrameTooLargeError", id="huge-length"),
        pytest.param(HELLO + bytes(4), False, "EmptyStreamFrameError", id="zero-length"),
        pytest.param(b"\x00DC", False, "no complete handshake within 0.3s", id="stall-in-hello"),
        pytest.param(HELLO + b"\x00\x00\x00\x10ab", False, "no complete frame", id="stall-frame"),
        pytest.param(HELLO + b"\x00\x00\x00\x10ab", True, "TruncatedFrameError", id="truncated"),
    ],
)
async def test_hostile_stream_is_dropped_with_one_line_while_another_keeps_delivering(
    make_tcp: MakeTCP,
    raw: RawClients,
    inbox: Inbox,
    caplog: pytest.LogCaptureFixture,
    data: bytes,
    half_close: bool,
    error: str,
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    receiver = make_tcp(read_timeout=0.3)
    await receiver.listen(inbox)
    good = make_tcp()
    await good.send(receiver.address, b"before")
    assert await inbox.get() == ("127.0.0.1:0", b"before")

    reader, writer = await raw.connect(receiver.address)
    writer.write(data)
    if half_close:
        writer.write_eof()
    async with asyncio.timeout(5):
        with contextlib.suppress(ConnectionResetError):
            await reader.read()  # returns once the listener dropped the connection
    await good.send(receiver.address, b"after")

    assert await inbox.get() == ("127.0.0.1:0", b"after")
    (drop,) = warnings_of(caplog)
    assert error in drop
    assert good.stats().streams_opened == 1
    assert receiver.stats().inbound_dropped == 1


async def test_huge_length_is_dropped_without_waiting_for_its_body(
    make_tcp: MakeTCP, raw: RawClients, inbox: Inbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    receiver = make_tcp(read_timeout=60.0)
    await receiver.listen(inbox)
    reader, writer = await raw.connect(receiver.address)

    writer.write(HELLO + b"\x7f\xff\xff\xff" + bytes(1000))

    async with asyncio.timeout(5):
        with contextlib.suppress(ConnectionResetError):
            await reader.read()
    (drop,) = warnings_of(caplog)
    assert "FrameTooLargeError: stream frame of 2147483647 bytes exceeds 10485760" in drop


async def test_bad_hello_gets_no_confirmation(
    make_tcp: MakeTCP, raw: RawClients, inbox: Inbox
) -> None:
    receiver = make_tcp()
    await receiver.listen(inbox)
    reader, writer = await raw.connect(receiver.address)

    writer.write(b"\x00DCS\x03\x03a:1")

    async with asyncio.timeout(5):
        with contextlib.suppress(ConnectionResetError):
            assert await reader.read() == b""


async def test_frames_before_a_violation_are_still_delivered(
    make_tcp: MakeTCP, raw: RawClients, inbox: Inbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    receiver = make_tcp()
    await receiver.listen(inbox)
    reader, writer = await raw.connect(receiver.address)

    writer.write(HELLO + encode_stream_frames([b"ok", b"fine"]) + bytes(4))

    assert await inbox.get_many(2) == [("127.0.0.1:9000", b"ok"), ("127.0.0.1:9000", b"fine")]
    async with asyncio.timeout(5):
        with contextlib.suppress(ConnectionResetError):
            await reader.read()
    (drop,) = warnings_of(caplog)
    assert "EmptyStreamFrameError" in drop


# -- limits and close -------------------------------------------------------------------------


async def test_stream_with_a_frame_in_progress_keeps_its_slot(
    make_tcp: MakeTCP, raw: RawClients, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    seen: asyncio.Queue[tuple[bytes, int, int]] = asyncio.Queue()
    receiver = make_tcp(max_connections=1, read_timeout=0.5)

    async def handler(sender: str, payload: bytes) -> None:
        seen.put_nowait((payload, receiver.stats().streams_evicted, len(warnings_of(caplog))))

    await receiver.listen(handler)
    _, writer = await raw.connect(receiver.address)
    writer.write(HELLO + b"\x00\x00\x00\x10half")  # holds the only slot, mid-frame

    # Completes at once (the kernel queues the connection) but waits for the slot.
    await make_tcp(wire="seed").send(receiver.address, b"seed")

    async with asyncio.timeout(5):
        # Delivered only once the stalled stream was dropped at its read timeout.
        assert await seen.get() == (b"seed", 0, 1)


async def test_idle_stream_is_evicted_when_a_connection_waits_for_a_slot(
    make_tcp: MakeTCP, make_inbox: type[Inbox], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    inbox = make_inbox()
    receiver = make_tcp(max_connections=2)
    await receiver.listen(inbox)
    first, second = make_tcp(), make_tcp()
    await first.send(receiver.address, b"first")
    await second.send(receiver.address, b"second")
    assert sorted(p for _, p in await inbox.get_many(2)) == [b"first", b"second"]

    await make_tcp(wire="seed").send(receiver.address, b"newcomer")

    assert await inbox.get() == ("127.0.0.1:0", b"newcomer")
    assert receiver.stats().streams_evicted == 1
    assert any("to make room" in r.getMessage() for r in caplog.records)


async def test_silent_connection_is_evicted_before_an_idle_stream(
    make_tcp: MakeTCP, make_inbox: type[Inbox], raw: RawClients, wait_until: WaitUntil
) -> None:
    inbox = make_inbox()
    receiver = make_tcp(max_connections=2, first_byte_timeout=60.0, read_timeout=60.0)
    await receiver.listen(inbox)
    streaming = make_tcp()
    await streaming.send(receiver.address, b"stream")
    assert await inbox.get() == (streaming.address, b"stream")
    await raw.connect(receiver.address)  # sends nothing, holds the second slot
    await wait_until(lambda: receiver.active_connections == 2)

    await make_tcp(wire="seed").send(receiver.address, b"newcomer")

    assert await inbox.get() == ("127.0.0.1:0", b"newcomer")
    stats = receiver.stats()
    assert (stats.silent_evicted, stats.streams_evicted, stats.open_streams_in) == (1, 0, 1)


async def test_close_writes_what_is_queued(make_tcp: MakeTCP, inbox: Inbox) -> None:
    receiver = make_tcp()
    await receiver.listen(inbox)
    sender = make_tcp()
    await sender.send(receiver.address, b"m0")

    for index in range(1, 20):
        await sender.send(receiver.address, b"m%d" % index)  # only queued: no loop pass yet
    await sender.close()

    assert [p for _, p in await inbox.get_many(20)] == [b"m%d" % i for i in range(20)]


async def test_close_leaves_no_task_or_socket_with_streams_both_ways(
    make_tcp: MakeTCP, inbox: Inbox, wait_until: WaitUntil, open_sockets: Callable[[], int]
) -> None:
    tasks_before = asyncio.all_tasks()
    sockets_before = open_sockets()
    a, b = make_tcp(), make_tcp()
    await a.listen(inbox)
    await b.listen(inbox)
    await a.send(b.address, b"to b")
    await b.send(a.address, b"to a")
    assert sorted(p for _, p in await inbox.get_many(2)) == [b"to a", b"to b"]
    with socket.create_connection(("127.0.0.1", port_of(a.address))) as half:
        half.sendall(HELLO + b"\x00\x00\x00\x09half")
        await wait_until(lambda: a.active_connections == 2)

        await a.close()
        await b.close()

    assert open_sockets() == sockets_before
    assert asyncio.all_tasks() - tasks_before == set()
    assert (a.stats().open_streams_out, a.stats().open_streams_in) == (0, 0)


async def test_lone_message_on_a_quiet_stream_is_written_at_once(
    make_tcp: MakeTCP, inbox: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Any gap counts as quiet here, so the outcome does not depend on the machine's speed.
    monkeypatch.setattr("dcounter_protocol._tcp._outbound.WRITE_NOW_AFTER", 0.0)
    receiver = make_tcp()
    await receiver.listen(inbox)
    sender = make_tcp()
    await sender.send(receiver.address, b"first")  # opens the stream
    await inbox.get_many(1)
    sent = sender.stats().stream_sent

    await sender.send(receiver.address, b"lone")

    # Written before the loop ran again (a scheduled flush would not have run yet).
    assert sender.stats().stream_sent == sent + 1
    assert await inbox.get_many(1) == [("127.0.0.1:0", b"lone")]


async def test_messages_sent_together_are_written_in_order(make_tcp: MakeTCP, inbox: Inbox) -> None:
    receiver = make_tcp()
    await receiver.listen(inbox)
    sender = make_tcp()
    await sender.send(receiver.address, b"first")
    await inbox.get_many(1)

    for index in range(20):
        await sender.send(receiver.address, b"t%d" % index)

    assert await inbox.get_many(20) == [("127.0.0.1:0", b"t%d" % i) for i in range(20)]


# -- handle_now: the synchronous fast path ------------------------------------------------------


class _Log:
    """handle_now takes the payloads starting with b"now" (when offered); the handler gets
    the rest. Both write to one log, so its order is the order of handling."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, bytes]] = []

    def handle_now(self, sender: str, payload: bytes) -> bool:
        if not payload.startswith(b"now"):
            return False
        self.entries.append(("now", payload))
        return True

    async def handler(self, sender: str, payload: bytes) -> None:
        self.entries.append(("handler", payload))


async def test_handle_now_takes_stream_messages_in_order(
    make_tcp: MakeTCP, wait_until: WaitUntil
) -> None:
    log = _Log()
    receiver = make_tcp()
    await receiver.listen(log.handler, handle_now=log.handle_now)
    sender = make_tcp()
    payloads = [b"now%d" % i if i % 3 else b"later%d" % i for i in range(12)]

    # One at a time: each arrives while the connection's task waits, so it is offered.
    for count, payload in enumerate(payloads, 1):
        await sender.send(receiver.address, payload)
        await wait_until(lambda count=count: len(log.entries) == count)  # type: ignore[misc]

    assert log.entries == [
        ("now" if payload.startswith(b"now") else "handler", payload) for payload in payloads
    ]
    assert receiver.stats().stream_received == len(payloads)


async def test_messages_in_one_burst_keep_their_order(
    make_tcp: MakeTCP, wait_until: WaitUntil
) -> None:
    log = _Log()
    receiver = make_tcp()
    await receiver.listen(log.handler, handle_now=log.handle_now)
    sender = make_tcp()
    payloads = [b"now%d" % i if i % 3 else b"later%d" % i for i in range(60)]

    for payload in payloads:
        await sender.send(receiver.address, payload)

    await wait_until(lambda: len(log.entries) == len(payloads))
    assert [payload for _, payload in log.entries] == payloads
    assert all(kind == "handler" for kind, p in log.entries if p.startswith(b"later"))


async def test_handle_now_is_not_offered_seed_frames(
    make_tcp: MakeTCP, wait_until: WaitUntil
) -> None:
    log = _Log()
    receiver = make_tcp()
    await receiver.listen(log.handler, handle_now=log.handle_now)
    sender = make_tcp(wire="seed")

    await sender.send(receiver.address, b"now-seed")

    await wait_until(lambda: len(log.entries) == 1)
    assert log.entries == [("handler", b"now-seed")]


async def test_handle_now_failure_is_logged_and_counts_as_handled(
    make_tcp: MakeTCP, inbox: Inbox, caplog: pytest.LogCaptureFixture
) -> None:
    def failing(sender: str, payload: bytes) -> bool:
        if payload == b"boom":
            raise RuntimeError("bug")
        return False

    receiver = make_tcp()
    await receiver.listen(inbox, handle_now=failing)
    sender = make_tcp()
    await sender.send(receiver.address, b"first")
    assert await inbox.get_many(1) == [("127.0.0.1:0", b"first")]

    await sender.send(receiver.address, b"boom")
    await sender.send(receiver.address, b"after")

    assert await inbox.get_many(1) == [("127.0.0.1:0", b"after")]
    assert any("handler failed" in r.getMessage() for r in caplog.records)

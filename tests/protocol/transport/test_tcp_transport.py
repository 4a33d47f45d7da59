"""TCPTransport specifics: the seed's tests, hostile peers, limits, addresses, golden frames.

Sending behaviour that must hold for both wires is parametrized with the ``wire`` fixture;
the stream mode's own behaviour is in ``test_tcp_stream.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import socket
from typing import TYPE_CHECKING, Any

import pytest

from dcounter_protocol._errors import (
    BindError,
    ConnectError,
    InvalidOptionError,
    TransportClosedError,
    TransportError,
    TransportTimeoutError,
)
from dcounter_protocol._framing import encode_frame
from dcounter_protocol._tcp import TCPOptions, TCPTransport

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from tests.protocol.transport.conftest import Inbox, MakeTCP, RawClients, WaitUntil

    from dcounter_protocol._tcp import WireMode

LOGGER = "dcounter_protocol._tcp"
SIXTEEN_MIB = 16 * 1024 * 1024


@pytest.fixture(params=["seed", "auto"])
def wire(request: pytest.FixtureRequest) -> WireMode:
    """Both ways of sending."""
    mode: WireMode = request.param
    return mode


@contextlib.contextmanager
def silent_listener() -> Iterator[socket.socket]:
    """A listening socket with tiny buffers whose connections are never read."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.setblocking(False)
        yield listener


def address_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"{host}:{port}"


def drops(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The transport's warnings about dropped inbound connections."""
    return [
        r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING
    ]


# -- the seed's tests (part2/protocol/tcp_test.go) ---------------------------------------


async def test_seed_basic_delivery(make_tcp: MakeTCP, inbox: Inbox, wire: WireMode) -> None:
    receiver = make_tcp()
    await receiver.listen(inbox)
    sender = make_tcp(wire=wire)

    await sender.send(receiver.address, b"hello world")

    assert await inbox.get() == ("127.0.0.1:0", b"hello world")


async def test_seed_connection_refused(
    make_tcp: MakeTCP, free_address: str, wire: WireMode
) -> None:
    with pytest.raises(ConnectError, match="ConnectionRefusedError"):
        await make_tcp(wire=wire).send(free_address, b"test")


async def test_seed_ten_concurrent_connections(
    make_tcp: MakeTCP, inbox: Inbox, wire: WireMode
) -> None:
    receiver = make_tcp()
    await receiver.listen(inbox)

    await asyncio.gather(*(make_tcp(wire=wire).send(receiver.address, b"test") for _ in range(10)))

    assert [payload for _, payload in await inbox.get_many(10)] == [b"test"] * 10
    assert inbox.queue.empty()


# -- hostile and slow peers ----------------------------------------------------------------


async def test_stalled_client_does_not_block_others_and_is_dropped_after_read_timeout(
    make_tcp: MakeTCP,
    raw: RawClients,
    inbox: Inbox,
    caplog: pytest.LogCaptureFixture,
    wait_until: WaitUntil,
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    loop = asyncio.get_running_loop()
    receiver = make_tcp(read_timeout=1.0)
    await receiver.listen(inbox)
    connected_at = loop.time()
    stalled_reader, stalled_writer = await raw.connect(receiver.address)
    stalled_writer.write(b"\x0e12")
    await wait_until(lambda: receiver.active_connections == 1)

    await make_tcp().send(receiver.address, b"not blocked")

    assert await inbox.get() == ("127.0.0.1:0", b"not blocked")
    assert drops(caplog) == []
    async with asyncio.timeout(5):
        assert await stalled_reader.read() == b""
    assert loop.time() - connected_at >= 0.99
    assert len(drops(caplog)) == 1
    assert "no complete frame within 1s (3 bytes received)" in drops(caplog)[0]


@pytest.mark.parametrize(
    ("data", "error"),
    [
        # A 0 address length starts a stream hello, so this is judged as one.
        pytest.param(b"\x00garbage", "HandshakeError: bad stream magic", id="zero-first-byte"),
        pytest.param(b"\x03\xff\xfe\xfdpayload", "InvalidAddressError", id="non-utf8-address"),
        pytest.param(b"\x0e127.0", "TruncatedFrameError", id="half-a-header"),
        pytest.param(b"\x0e127.0.0.1:9000", "TruncatedFrameError", id="no-payload"),
    ],
)
async def test_bad_frame_is_logged_once_and_dropped_while_serving_continues(
    make_tcp: MakeTCP,
    raw: RawClients,
    inbox: Inbox,
    caplog: pytest.LogCaptureFixture,
    data: bytes,
    error: str,
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    receiver = make_tcp()
    await receiver.listen(inbox)

    await raw.send_raw(receiver.address, data)
    await make_tcp().send(receiver.address, b"still served")

    assert await inbox.get() == ("127.0.0.1:0", b"still served")
    assert len(drops(caplog)) == 1
    assert error in drops(caplog)[0]
    assert inbox.queue.empty()


async def test_frame_above_max_size_is_dropped(
    make_tcp: MakeTCP, raw: RawClients, inbox: Inbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    receiver = make_tcp(max_message_size=1024)
    await receiver.listen(inbox)

    await raw.send_raw(receiver.address, encode_frame("big:1", bytes(2000)))
    await raw.send_raw(receiver.address, encode_frame("fits:1", bytes(1024)))

    assert await inbox.get() == ("fits:1", bytes(1024))
    assert len(drops(caplog)) == 1
    assert "FrameTooLargeError" in drops(caplog)[0]


async def test_connection_without_data_is_closed_quietly(
    make_tcp: MakeTCP,
    raw: RawClients,
    inbox: Inbox,
    caplog: pytest.LogCaptureFixture,
    wait_until: WaitUntil,
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    receiver = make_tcp()
    await receiver.listen(inbox)

    await raw.send_raw(receiver.address, b"")

    await wait_until(lambda: any("without data" in r.getMessage() for r in caplog.records))
    assert drops(caplog) == []


async def test_frame_split_across_many_small_writes_arrives_whole(
    make_tcp: MakeTCP, raw: RawClients, inbox: Inbox
) -> None:
    receiver = make_tcp()
    await receiver.listen(inbox)
    rng = random.Random(3)
    payload = rng.randbytes(3000)
    frame = encode_frame("127.0.0.1:9000", payload)
    _, writer = await raw.connect(receiver.address)
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    offset = 0
    while offset < len(frame):
        step = rng.randint(1, 7)
        writer.write(frame[offset : offset + step])
        await writer.drain()
        offset += step
    writer.write_eof()

    assert await inbox.get() == ("127.0.0.1:9000", payload)


# -- limits ----------------------------------------------------------------------------------


async def test_connection_cap_makes_excess_connections_wait_for_a_free_slot(
    make_tcp: MakeTCP,
    raw: RawClients,
    caplog: pytest.LogCaptureFixture,
    wait_until: WaitUntil,
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    seen: asyncio.Queue[tuple[bytes, int, int]] = asyncio.Queue()
    receiver = make_tcp(max_connections=1, read_timeout=0.5)

    async def handler(sender: str, payload: bytes) -> None:
        seen.put_nowait((payload, len(drops(caplog)), receiver.active_connections))

    await receiver.listen(handler)
    await raw.connect(receiver.address)  # holds the only slot until its read timeout
    await wait_until(lambda: receiver.active_connections == 1)

    # Completes at once: the kernel queues the connection until a slot frees.
    await make_tcp().send(receiver.address, b"queued")

    async with asyncio.timeout(5):
        payload, drops_before_delivery, active = await seen.get()
    assert (payload, drops_before_delivery, active) == (b"queued", 1, 1)


async def test_zero_byte_connections_holding_every_slot_do_not_stall_delivery(
    make_tcp: MakeTCP, raw: RawClients, inbox: Inbox, wait_until: WaitUntil
) -> None:
    # All 256 default slots held by connections that never send a byte, each of which the
    # read timeout alone would keep for 60 s: a real sender must still get through at once.
    receiver = make_tcp(read_timeout=60.0, first_byte_timeout=60.0)
    await receiver.listen(inbox)
    slots = receiver.options.max_connections
    for _ in range(slots):
        await raw.connect(receiver.address)
    await wait_until(lambda: receiver.active_connections == slots)

    await make_tcp(wire="seed").send(receiver.address, b"not stalled")

    assert await inbox.get(within=10) == ("127.0.0.1:0", b"not stalled")
    assert receiver.active_connections <= slots


async def test_connection_sending_nothing_is_closed_at_the_first_byte_deadline(
    make_tcp: MakeTCP,
    raw: RawClients,
    inbox: Inbox,
    caplog: pytest.LogCaptureFixture,
    wait_until: WaitUntil,
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    receiver = make_tcp(read_timeout=60.0, first_byte_timeout=0.3)
    await receiver.listen(inbox)
    silent_reader, _ = await raw.connect(receiver.address)

    async with asyncio.timeout(10):
        assert await silent_reader.read() == b""
    await wait_until(lambda: len(drops(caplog)) == 1)
    assert "no data within 0.3s" in drops(caplog)[0]


async def test_dial_timeout_raises_transport_timeout_error(
    make_tcp: MakeTCP, wire: WireMode
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as full:
        full.bind(("127.0.0.1", 0))
        full.listen(0)
        # A backlog of 0 holds one connection; the kernel ignores further SYNs.
        with (
            socket.create_connection(full.getsockname(), timeout=5),
            pytest.raises(TransportTimeoutError, match=r"dial .* timed out after 0.2s"),
        ):
            await make_tcp(dial_timeout=0.2, wire=wire).send(address_of(full), b"x")


async def test_write_timeout_raises_transport_timeout_error(
    make_tcp: MakeTCP, wire: WireMode
) -> None:
    # In auto mode the silent peer never confirms the stream: the seed framing follows.
    sender = make_tcp(write_timeout=0.2, handshake_timeout=0.2, wire=wire)
    with (
        silent_listener() as listener,
        pytest.raises(TransportTimeoutError, match=r"write .* timed out after 0.2s"),
    ):
        await sender.send(address_of(listener), bytes(SIXTEEN_MIB))


# -- close -----------------------------------------------------------------------------------


async def test_close_during_send_raises_transport_closed(make_tcp: MakeTCP, wire: WireMode) -> None:
    sender = make_tcp(wire=wire)
    with silent_listener() as listener:
        sending = asyncio.create_task(sender.send(address_of(listener), bytes(SIXTEEN_MIB)))
        async with asyncio.timeout(5):
            conn, _ = await asyncio.get_running_loop().sock_accept(listener)
        with conn:
            await sender.close()

            with pytest.raises(TransportClosedError):
                await sending


async def test_close_drops_connections_being_read_without_waiting_for_timeout(
    make_tcp: MakeTCP,
    raw: RawClients,
    inbox: Inbox,
    caplog: pytest.LogCaptureFixture,
    wait_until: WaitUntil,
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    receiver = make_tcp(read_timeout=60.0)
    await receiver.listen(inbox)
    stalled_reader, _ = await raw.connect(receiver.address)
    await wait_until(lambda: receiver.active_connections == 1)

    async with asyncio.timeout(5):
        await receiver.close()
        assert await stalled_reader.read() == b""

    assert receiver.active_connections == 0
    assert drops(caplog) == []


async def test_close_releases_every_socket(
    make_tcp: MakeTCP,
    inbox: Inbox,
    wait_until: WaitUntil,
    wire: WireMode,
    open_sockets: Callable[[], int],
) -> None:
    before = open_sockets()
    receiver = make_tcp(wire=wire)
    await receiver.listen(inbox)
    sender = make_tcp(wire=wire)
    await sender.listen(inbox)
    await sender.send(receiver.address, b"one")
    await receiver.send(sender.address, b"two")
    assert set(await inbox.get_many(2)) == {(receiver.address, b"two"), (sender.address, b"one")}
    streams = 1 if wire == "auto" else 0  # the sender's stream stays open
    stalled = socket.create_connection(("127.0.0.1", int(receiver.address.rpartition(":")[2])))
    with stalled:
        await wait_until(lambda: receiver.active_connections == streams + 1)
        await receiver.close()
        await sender.close()

    assert open_sockets() == before


async def test_listen_twice_raises(make_tcp: MakeTCP, inbox: Inbox) -> None:
    transport = make_tcp()
    await transport.listen(inbox)

    with pytest.raises(TransportError, match="already listening"):
        await transport.listen(inbox)


# -- addresses -------------------------------------------------------------------------------


async def test_address_in_use_raises_bind_error(make_tcp: MakeTCP, inbox: Inbox) -> None:
    first = make_tcp()
    await first.listen(inbox)

    with pytest.raises(BindError, match="cannot listen on"):
        await make_tcp(first.address).listen(inbox)


async def test_port_zero_is_replaced_by_the_bound_port(make_tcp: MakeTCP, inbox: Inbox) -> None:
    receiver = make_tcp("127.0.0.1:0")
    assert receiver.address == "127.0.0.1:0"

    await receiver.listen(inbox)

    match = re.fullmatch(r"127\.0\.0\.1:(\d+)", receiver.address)
    assert match is not None
    assert int(match.group(1)) != 0
    await make_tcp().send(receiver.address, b"reachable")
    assert await inbox.get() == ("127.0.0.1:0", b"reachable")


def _ipv6_loopback_available() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback_available(), reason="no IPv6 loopback here")
async def test_ipv6_address_is_bracketed(make_tcp: MakeTCP, inbox: Inbox) -> None:
    receiver = make_tcp("[::1]:0")
    await receiver.listen(inbox)
    sender = make_tcp("[::1]:0")
    await sender.listen(inbox)

    assert re.fullmatch(r"\[::1\]:[1-9]\d*", receiver.address)
    await sender.send(receiver.address, b"over v6")
    assert await inbox.get() == (sender.address, b"over v6")


@pytest.mark.parametrize(
    "target", ["no-port", "127.0.0.1:http", "127.0.0.1:70000", "[::1", "::1:80"]
)
async def test_malformed_target_raises_connect_error(make_tcp: MakeTCP, target: str) -> None:
    with pytest.raises(ConnectError, match="malformed address"):
        await make_tcp().send(target, b"x")


async def test_unresolvable_host_raises_connect_error(make_tcp: MakeTCP) -> None:
    with pytest.raises(ConnectError, match="cannot resolve"):
        await make_tcp(dial_timeout=5.0).send("no-such-host.invalid:7946", b"x")


@pytest.mark.parametrize("address", ["", "no-port", "h:99999", "a" * 254 + ":1"])
def test_bad_listen_address_is_rejected(address: str) -> None:
    with pytest.raises(InvalidOptionError, match="address"):
        TCPTransport(address)


@pytest.mark.parametrize(
    "options",
    [
        {"dial_timeout": 0},
        {"read_timeout": -1.0},
        {"write_timeout": float("inf")},
        {"max_connections": 0},
        {"max_message_size": 0},
        {"backlog": True},
        {"wire": "fast"},
        {"handshake_timeout": 0},
        {"stream_idle_timeout": float("nan")},
        {"stream_queue_size": 0},
        {"reprobe_interval": -1},
        {"reconnect_delay": "1"},
        {"reconnect_max_delay": 0.01},
    ],
)
def test_invalid_options_are_rejected(options: dict[str, Any]) -> None:
    with pytest.raises(InvalidOptionError, match=next(iter(options))):
        TCPOptions(**options)


# -- interoperability with the reference (golden tcp_frames) ----------------------------------


@pytest.mark.golden
async def test_golden_frames_reach_the_handler(
    golden: dict[str, Any], make_tcp: MakeTCP, raw: RawClients, inbox: Inbox
) -> None:
    receiver = make_tcp()
    await receiver.listen(inbox)

    for vector in golden["tcp_frames"]:
        await raw.send_raw(receiver.address, bytes.fromhex(vector["frame_hex"]))

        assert await inbox.get() == (vector["sender_addr"], bytes.fromhex(vector["payload_hex"]))


@pytest.mark.golden
async def test_send_writes_exactly_the_reference_bytes(
    golden: dict[str, Any], make_tcp: MakeTCP
) -> None:
    captured: asyncio.Queue[bytes] = asyncio.Queue()

    async def read_to_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        captured.put_nowait(await reader.read())
        writer.close()

    server = await asyncio.start_server(read_to_eof, "127.0.0.1", 0)
    try:
        for vector in golden["tcp_frames"]:
            sender = make_tcp(vector["sender_addr"], wire="seed")

            await sender.send(address_of(server.sockets[0]), bytes.fromhex(vector["payload_hex"]))

            async with asyncio.timeout(5):
                assert (await captured.get()).hex() == vector["frame_hex"]
    finally:
        server.close()
        await server.wait_closed()

"""dcounter-frames listen / proxy: live frames over TCP, bad ones reported, a real exchange."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import subprocess
from typing import TYPE_CHECKING

import pytest

from dcounter_node import Node, NodeConfig, PeerManager
from dcounter_protocol import MessageType, Push, TCPTransport, encode_hello, encode_message
from dcounter_tools.frames import FrameEvent, FrameListener, FrameProxy

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from tests.conftest import WaitUntil

PUSH = encode_message(Push("127.0.0.1:9", {"a": 5}, {"a": 2}))


async def _send_raw(address: str, data: bytes) -> None:
    host, port = address.rsplit(":", 1)
    _, writer = await asyncio.open_connection(host, int(port))
    writer.write(data)
    await writer.drain()
    writer.close()
    await writer.wait_closed()


@pytest.fixture
async def listener() -> AsyncIterator[tuple[FrameListener, list[FrameEvent]]]:
    events: list[FrameEvent] = []
    server = FrameListener(events.append, read_timeout=5.0)
    await server.start()
    yield server, events
    await server.close()


async def test_listener_reports_a_frame_from_a_real_transport(
    listener: tuple[FrameListener, list[FrameEvent]], wait_until: WaitUntil
) -> None:
    server, events = listener
    sender = TCPTransport("127.0.0.1:0")

    async def ignore(addr: str, data: bytes) -> None:
        pass

    await sender.listen(ignore)
    try:
        await sender.send(server.address, PUSH)

        async def arrived() -> bool:
            return len(events) == 1

        await wait_until(arrived, what="the frame")
    finally:
        await sender.close()
    (event,) = events
    assert event.ok
    assert event.inspection is not None
    assert event.inspection.sender == sender.address
    message = event.inspection.message
    assert message is not None
    assert message.type is MessageType.PUSH
    assert dict(message.increments or {}) == {"a": 5}


async def test_listener_reports_bad_frames_and_carries_on(
    listener: tuple[FrameListener, list[FrameEvent]], wait_until: WaitUntil
) -> None:
    server, events = listener
    await _send_raw(server.address, b"\x00garbage")

    async def first() -> bool:
        return len(events) == 1

    await wait_until(first, what="the bad frame")
    await _send_raw(server.address, b"\x0e127.0")  # the connection ends inside the header

    async def second() -> bool:
        return len(events) == 2

    await wait_until(second, what="the truncated frame")
    await _send_raw(server.address, b"\x03a:1" + PUSH)

    async def third() -> bool:
        return len(events) == 3

    await wait_until(third, what="the good frame after them")
    problems = [(e.problem.error, e.problem.offset) if e.problem else None for e in events]
    assert problems == [("InvalidAddressLengthError", 0), ("TruncatedFrameError", 6), None]
    assert events[2].ok


async def test_proxy_between_two_nodes_forwards_and_they_converge(wait_until: WaitUntil) -> None:
    config = NodeConfig(sync_interval=0.05)
    a = Node(TCPTransport("127.0.0.1:0"), config, peers=PeerManager())
    b = Node(TCPTransport("127.0.0.1:0"), config, peers=PeerManager())
    events: list[FrameEvent] = []
    await a.start()
    await b.start()
    proxy = FrameProxy(b.address, events.append)
    await proxy.start()
    try:
        # a reaches b only through the proxy; b answers the sender named in each frame (a).
        a.peers.add(proxy.address)
        b.peers.add(a.address)
        a.increment(3)
        b.decrement(1)

        async def converged() -> bool:
            return a.value == b.value == 2

        await wait_until(converged, what="both nodes at 2")
    finally:
        await proxy.close()
        await a.close()
        await b.close()
    assert events
    assert all(e.ok and e.forwarded_to == b.address for e in events)
    senders = {e.inspection.sender for e in events if e.inspection is not None}
    assert senders == {a.address}
    carried = [e.inspection.message for e in events if e.inspection is not None]
    assert any(m is not None and m.type is MessageType.PUSH for m in carried)


async def test_proxy_reports_an_unreachable_target(wait_until: WaitUntil) -> None:
    closed = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    target = f"127.0.0.1:{closed.sockets[0].getsockname()[1]}"
    closed.close()
    await closed.wait_closed()
    events: list[FrameEvent] = []
    async with FrameProxy(target, events.append) as proxy:
        await _send_raw(proxy.address, b"\x03a:1" + PUSH)

        async def reported() -> bool:
            return len(events) == 1

        await wait_until(reported, what="the forward failure")
    assert events[0].forwarded_to == target
    assert events[0].forward_error is not None
    assert events[0].ok is False


@pytest.mark.slow
async def test_listen_cli_prints_the_bound_address_and_each_frame(python: str) -> None:
    argv = [python, "-m", "dcounter_tools.frames", "listen", "--port", "0", "--json"]
    proc = await asyncio.create_subprocess_exec(
        *argv, "--count", "2", stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(20):
            address = json.loads(await proc.stdout.readline())["listening"]
            await _send_raw(address, b"\x00")
            await _send_raw(address, b"\x03a:1" + PUSH)
            lines = [json.loads(await proc.stdout.readline()) for _ in range(2)]
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert lines[0]["problem"]["error"] == "InvalidAddressLengthError"
    assert lines[0]["problem"]["offset"] == 0
    assert lines[1]["ok"] is True
    assert lines[1]["frame"]["sender"] == "a:1"
    assert lines[1]["frame"]["message"]["value"] == 3


async def test_listener_closes_a_stream_probe_without_confirming_or_reporting(
    listener: tuple[FrameListener, list[FrameEvent]], wait_until: WaitUntil
) -> None:
    server, events = listener
    host, port = server.address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(encode_hello("127.0.0.1:9"))
        await writer.drain()
        reply = await asyncio.wait_for(reader.read(), timeout=5.0)
    finally:
        writer.close()
        await writer.wait_closed()
    await _send_raw(server.address, b"\x03a:1" + PUSH)

    async def arrived() -> bool:
        return len(events) == 1

    await wait_until(arrived, what="the frame after the probe")
    assert reply == b""
    assert len(events) == 1
    assert events[0].ok


async def test_listener_close_with_a_connection_open_logs_no_asyncio_error(
    wait_until: WaitUntil, caplog: pytest.LogCaptureFixture
) -> None:
    server = FrameListener(lambda event: None, read_timeout=5.0)
    await server.start()
    host, port = server.address.rsplit(":", 1)
    _, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(b"\x03a:")
        await writer.drain()

        async def serving() -> bool:
            return len(server._connections) == 1

        await wait_until(serving, what="the connection in progress")
        with caplog.at_level(logging.ERROR, logger="asyncio"):
            await server.close()
    finally:
        writer.close()
        with contextlib.suppress(ConnectionResetError):
            await writer.wait_closed()
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []


async def test_listener_closed_by_its_own_frame_callback_logs_no_asyncio_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # What `dcounter-frames listen --count N` does: the Nth frame ends the listener at once.
    done = asyncio.Event()
    server = FrameListener(lambda event: done.set(), read_timeout=5.0)
    await server.start()

    async def close_when_done() -> None:
        await done.wait()
        await server.close()

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        closer = asyncio.ensure_future(close_when_done())
        try:
            host, port = server.address.rsplit(":", 1)
            _, writer = await asyncio.open_connection(host, int(port))
            writer.write(b"\x00")
            await asyncio.wait_for(asyncio.shield(closer), 10.0)
            writer.close()
            await asyncio.sleep(0.1)  # asyncio logs a failed connection callback a tick later
        finally:
            closer.cancel()
            await server.close()
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []

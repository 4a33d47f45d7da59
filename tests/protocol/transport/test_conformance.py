"""The transport contract, checked identically against every implementation (``kit``)."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import TYPE_CHECKING

import pytest

from dcounter_protocol._errors import ConnectError, TransportClosedError
from dcounter_protocol._transport import Transport

if TYPE_CHECKING:
    from tests.protocol.transport.conftest import Inbox, TransportKit, WaitUntil

FIVE_MIB = 5 * 1024 * 1024


async def _ignore(sender: str, payload: bytes) -> None:
    """Handler of transports that only send in a test."""


def test_implementations_satisfy_the_protocol(kit: TransportKit) -> None:
    assert isinstance(kit.create(), Transport)


async def test_delivers_payload_with_sender_address(kit: TransportKit, inbox: Inbox) -> None:
    receiver = await kit.listening(inbox)
    sender = await kit.listening(_ignore)

    await sender.send(receiver.address, b"hello world")

    assert await inbox.get() == (sender.address, b"hello world")


async def test_ten_concurrent_senders_are_all_delivered(kit: TransportKit, inbox: Inbox) -> None:
    receiver = await kit.listening(inbox)
    senders = [await kit.listening(_ignore) for _ in range(10)]

    await asyncio.gather(
        *(s.send(receiver.address, f"message {i}".encode()) for i, s in enumerate(senders))
    )

    received = await inbox.get_many(10)
    assert sorted(received) == sorted(
        (s.address, f"message {i}".encode()) for i, s in enumerate(senders)
    )


async def test_send_to_unreachable_address_raises_connect_error(kit: TransportKit) -> None:
    sender = await kit.listening(_ignore)

    with pytest.raises(ConnectError):
        await sender.send(kit.unreachable_address(), b"test")


async def test_send_after_close_raises_transport_closed(kit: TransportKit, inbox: Inbox) -> None:
    receiver = await kit.listening(inbox)
    sender = await kit.listening(_ignore)
    await sender.close()

    with pytest.raises(TransportClosedError):
        await sender.send(receiver.address, b"late")


async def test_listen_after_close_raises_transport_closed(kit: TransportKit) -> None:
    transport = kit.create()
    await transport.close()

    with pytest.raises(TransportClosedError):
        await transport.listen(_ignore)


async def test_closed_transport_is_no_longer_reachable(kit: TransportKit, inbox: Inbox) -> None:
    receiver = await kit.listening(inbox)
    sender = await kit.listening(_ignore)
    address = receiver.address
    await receiver.close()

    with pytest.raises(ConnectError):
        await sender.send(address, b"anyone there?")


async def test_close_is_idempotent(kit: TransportKit, inbox: Inbox) -> None:
    transport = await kit.listening(inbox)

    await transport.close()
    await transport.close()

    with pytest.raises(TransportClosedError):
        await transport.send(kit.unreachable_address(), b"x")


async def test_close_without_listen_is_fine(kit: TransportKit) -> None:
    transport = kit.create()

    await transport.close()
    await transport.close()


async def test_close_cancels_running_handler_and_leaves_no_task(kit: TransportKit) -> None:
    before = asyncio.all_tasks()
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def stuck_handler(sender: str, payload: bytes) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    receiver = await kit.listening(stuck_handler)
    sender = await kit.listening(_ignore)
    await sender.send(receiver.address, b"never handled to the end")
    async with asyncio.timeout(5):
        await started.wait()

    await receiver.close()
    await sender.close()

    assert cancelled.is_set()
    assert asyncio.all_tasks() - before == set()


async def test_handler_exception_is_logged_and_serving_continues(
    kit: TransportKit, caplog: pytest.LogCaptureFixture, wait_until: WaitUntil
) -> None:
    inbox_after_failure: asyncio.Queue[bytes] = asyncio.Queue()

    async def handler(sender: str, payload: bytes) -> None:
        if payload == b"boom":
            raise RuntimeError("handler bug")
        inbox_after_failure.put_nowait(payload)

    receiver = await kit.listening(handler)
    sender = await kit.listening(_ignore)
    with caplog.at_level(logging.ERROR, logger="dcounter_protocol"):
        await sender.send(receiver.address, b"boom")
        await sender.send(receiver.address, b"fine")
        async with asyncio.timeout(5):
            assert await inbox_after_failure.get() == b"fine"
        await wait_until(lambda: any(r.exc_info for r in caplog.records))

    failures = [r for r in caplog.records if r.exc_info]
    assert len(failures) == 1
    exc_info = failures[0].exc_info
    assert exc_info is not None
    assert isinstance(exc_info[1], RuntimeError)


async def test_five_mib_payload_arrives_intact(kit: TransportKit, inbox: Inbox) -> None:
    payload = random.Random(5).randbytes(FIVE_MIB)
    receiver = await kit.listening(inbox)
    sender = await kit.listening(_ignore)

    await sender.send(receiver.address, payload)

    got_sender, got_payload = await inbox.get(within=10)
    assert got_sender == sender.address
    assert len(got_payload) == FIVE_MIB
    assert got_payload == payload

"""The transport contract as a reusable check, for every :class:`Transport` implementation.

``await check_transport(make, unreachable=...)`` runs every check in :data:`CHECKS` against
transports built by ``make`` (a new, not yet listening transport per call) and raises
AssertionError (or the unexpected exception) at the first broken promise. Each check closes
every transport it made. It needs no test framework; the project's own tests run it against
the TCP transport (both wires) and the in-memory one, one check at a time::

    from dcounter_protocol.testing import check_transport

    await check_transport(lambda: MyTransport(), unreachable=lambda: "nowhere:1")
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final, TypeAlias

from dcounter_protocol._errors import ConnectError, TransportClosedError
from dcounter_protocol._transport import Transport

if TYPE_CHECKING:
    from dcounter_protocol._transport import Handler

__all__ = ["CHECKS", "Check", "TransportKit", "check_transport"]

#: Upper bound of one wait: generous on a loaded machine, reached only when a check fails.
DEADLINE: Final = 10.0
_FIVE_MIB: Final = 5 * 1024 * 1024


class TransportKit:
    """Makes transports for one check and closes all of them afterwards."""

    def __init__(self, make: Callable[[], Transport], unreachable: Callable[[], str]) -> None:
        self._make = make
        self._unreachable = unreachable
        self.made: list[Transport] = []

    def create(self) -> Transport:
        """A new transport, not yet listening."""
        transport = self._make()
        self.made.append(transport)
        return transport

    async def listening(self, handler: Handler) -> Transport:
        """A new transport already serving ``handler``."""
        transport = self.create()
        await transport.listen(handler)
        return transport

    def unreachable_address(self) -> str:
        """An address of this kind where nothing listens."""
        return self._unreachable()

    async def aclose(self) -> None:
        for transport in self.made:
            await transport.close()


class _Inbox:
    """A handler that queues every (sender, payload) it is given."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()

    async def __call__(self, sender: str, payload: bytes) -> None:
        self.queue.put_nowait((sender, payload))

    async def get_many(self, count: int, *, within: float = DEADLINE) -> list[tuple[str, bytes]]:
        async with asyncio.timeout(within):
            return [await self.queue.get() for _ in range(count)]


async def _ignore(sender: str, payload: bytes) -> None:
    """Handler of transports that only send in a check."""


async def _raises(error: type[Exception], sending: Awaitable[None]) -> None:
    try:
        await sending
    except error:
        return
    raise AssertionError(f"expected {error.__name__}")


async def satisfies_the_protocol(kit: TransportKit) -> None:
    assert isinstance(kit.create(), Transport)


async def delivers_payload_with_sender_address(kit: TransportKit) -> None:
    inbox = _Inbox()
    receiver = await kit.listening(inbox)
    sender = await kit.listening(_ignore)

    await sender.send(receiver.address, b"hello world")

    assert await inbox.get_many(1) == [(sender.address, b"hello world")]


async def delivers_ten_concurrent_senders(kit: TransportKit) -> None:
    inbox = _Inbox()
    receiver = await kit.listening(inbox)
    senders = [await kit.listening(_ignore) for _ in range(10)]

    await asyncio.gather(
        *(s.send(receiver.address, f"message {i}".encode()) for i, s in enumerate(senders))
    )

    expected = sorted((s.address, f"message {i}".encode()) for i, s in enumerate(senders))
    assert sorted(await inbox.get_many(10)) == expected


async def unreachable_address_raises_connect_error(kit: TransportKit) -> None:
    sender = await kit.listening(_ignore)

    await _raises(ConnectError, sender.send(kit.unreachable_address(), b"test"))


async def send_after_close_raises_transport_closed(kit: TransportKit) -> None:
    receiver = await kit.listening(_Inbox())
    sender = await kit.listening(_ignore)
    await sender.close()

    await _raises(TransportClosedError, sender.send(receiver.address, b"late"))


async def listen_after_close_raises_transport_closed(kit: TransportKit) -> None:
    transport = kit.create()
    await transport.close()

    await _raises(TransportClosedError, transport.listen(_ignore))


async def closed_transport_is_no_longer_reachable(kit: TransportKit) -> None:
    receiver = await kit.listening(_Inbox())
    sender = await kit.listening(_ignore)
    address = receiver.address
    await receiver.close()

    await _raises(ConnectError, sender.send(address, b"anyone there?"))


async def close_is_idempotent(kit: TransportKit) -> None:
    transport = await kit.listening(_Inbox())

    await transport.close()
    await transport.close()

    await _raises(TransportClosedError, transport.send(kit.unreachable_address(), b"x"))


async def close_without_listen_is_fine(kit: TransportKit) -> None:
    transport = kit.create()

    await transport.close()
    await transport.close()


async def close_cancels_running_handler_and_leaves_no_task(kit: TransportKit) -> None:
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
    async with asyncio.timeout(DEADLINE):
        await started.wait()

    await receiver.close()
    await sender.close()

    assert cancelled.is_set()
    assert asyncio.all_tasks() - before == set()


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.failures: list[BaseException | None] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.failures.append(record.exc_info[1])


async def handler_exception_is_logged_and_serving_continues(kit: TransportKit) -> None:
    handled: asyncio.Queue[bytes] = asyncio.Queue()

    async def handler(sender: str, payload: bytes) -> None:
        if payload == b"boom":
            raise RuntimeError("handler bug")
        handled.put_nowait(payload)

    records = _Records()
    logger = logging.getLogger("dcounter_protocol")
    logger.addHandler(records)
    try:
        receiver = await kit.listening(handler)
        sender = await kit.listening(_ignore)
        await sender.send(receiver.address, b"boom")
        await sender.send(receiver.address, b"fine")
        async with asyncio.timeout(DEADLINE):
            assert await handled.get() == b"fine"
            # Polling: a log record has no event to wait on.
            while not records.failures:  # noqa: ASYNC110
                await asyncio.sleep(0.001)
    finally:
        logger.removeHandler(records)

    assert len(records.failures) == 1
    assert isinstance(records.failures[0], RuntimeError)


async def five_mib_payload_arrives_intact(kit: TransportKit) -> None:
    payload = random.Random(5).randbytes(_FIVE_MIB)
    inbox = _Inbox()
    receiver = await kit.listening(inbox)
    sender = await kit.listening(_ignore)

    await sender.send(receiver.address, payload)

    [(got_sender, got_payload)] = await inbox.get_many(1, within=2 * DEADLINE)
    assert got_sender == sender.address
    assert got_payload == payload


#: One check of the contract: given a kit, raise if the transport breaks a promise.
Check: TypeAlias = Callable[[TransportKit], Awaitable[None]]

#: Every check, in the order :func:`check_transport` runs them.
CHECKS: Final[tuple[Check, ...]] = (
    satisfies_the_protocol,
    delivers_payload_with_sender_address,
    delivers_ten_concurrent_senders,
    unreachable_address_raises_connect_error,
    send_after_close_raises_transport_closed,
    listen_after_close_raises_transport_closed,
    closed_transport_is_no_longer_reachable,
    close_is_idempotent,
    close_without_listen_is_fine,
    close_cancels_running_handler_and_leaves_no_task,
    handler_exception_is_logged_and_serving_continues,
    five_mib_payload_arrives_intact,
)


async def check_transport(make: Callable[[], Transport], *, unreachable: Callable[[], str]) -> None:
    """Run every check in :data:`CHECKS` against transports from ``make``.

    ``make`` returns a new transport (not listening) each call; ``unreachable`` returns an
    address of the same kind where nothing listens. Every transport made is closed.
    """
    for check in CHECKS:
        kit = TransportKit(make, unreachable)
        try:
            await check(kit)
        finally:
            await kit.aclose()

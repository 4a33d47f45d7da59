"""The transport contract (:mod:`dcounter_protocol.testing`), run against every transport."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from dcounter_protocol._memory import MemoryNetwork, MemoryTransport
from dcounter_protocol.testing import CHECKS, Check, TransportKit, check_transport

if TYPE_CHECKING:
    from dcounter_protocol._transport import Handler


@pytest.mark.parametrize("check", CHECKS, ids=[check.__name__ for check in CHECKS])
async def test_transport_keeps_the_contract(kit: TransportKit, check: Check) -> None:
    await check(kit)


class _Anonymous:
    """A broken transport: hands every message to its handler under a made-up sender."""

    def __init__(self, inner: MemoryTransport) -> None:
        self._inner = inner

    @property
    def address(self) -> str:
        return self._inner.address

    async def listen(self, handler: Handler) -> None:
        async def anonymous(sender: str, payload: bytes) -> None:
            await handler("somebody-else", payload)

        await self._inner.listen(anonymous)

    async def send(self, address: str, data: bytes) -> None:
        await self._inner.send(address, data)

    async def close(self) -> None:
        await self._inner.close()


async def test_the_whole_suite_passes_for_a_correct_transport() -> None:
    network = MemoryNetwork(seed=2)
    names = iter(range(1_000))

    await check_transport(
        lambda: network.transport(f"mem-{next(names)}"), unreachable=lambda: "nowhere:1"
    )


async def test_the_suite_fails_for_a_transport_that_loses_the_sender() -> None:
    network = MemoryNetwork(seed=3)
    names = iter(range(1_000))

    def make() -> _Anonymous:
        return _Anonymous(network.transport(f"mem-{next(names)}"))

    with pytest.raises(AssertionError):
        await check_transport(make, unreachable=lambda: "nowhere:1")

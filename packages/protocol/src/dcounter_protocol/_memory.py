"""An in-process network for tests and simulation, with reproducible fault injection.

Every :class:`MemoryTransport` made by one :class:`MemoryNetwork` can reach the others by
address. Deliveries behave like a network: :meth:`MemoryTransport.send` returns at once and
the receiver's handler runs later as its own task, after the configured delay. Faults:

* ``drop_rate``: each message is lost with this probability;
* ``delay`` (+ uniform ``jitter``): seconds between send and delivery, so messages may reorder
  when jitter is set;
* :meth:`MemoryNetwork.partition`: messages between two address sets are lost, in one or
  both directions, until :meth:`MemoryNetwork.heal`.

Randomness comes from one generator per directed link, seeded from ``(seed, sender,
receiver)``: the same seed and the same sends on a link give the same drops and delays,
whatever the traffic on other links. Lost messages vanish silently, as on a real network, and
are counted in :attr:`MemoryNetwork.dropped`. Sending to an address nobody listens on raises
:class:`~dcounter_protocol._errors.ConnectError`, like a refused TCP connection.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from typing import TYPE_CHECKING

from dcounter_protocol._errors import (
    ConnectError,
    InvalidOptionError,
    TransportClosedError,
    TransportError,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

    from dcounter_protocol._transport import Handler

__all__ = ["MemoryNetwork", "MemoryTransport"]

_log = logging.getLogger(__name__)


def _check_rate(value: object) -> float:
    if isinstance(value, bool) or not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
        raise InvalidOptionError(f"drop_rate must be a number in [0, 1], got {value!r}")
    return float(value)


def _check_seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not (
        isinstance(value, int | float) and math.isfinite(value) and value >= 0.0
    ):
        raise InvalidOptionError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


class _Delivery:
    """One message in flight; registered with both endpoints so either can cancel it."""

    __slots__ = ("data", "handle", "source", "target")

    def __init__(self, source: MemoryTransport, target: MemoryTransport, data: bytes) -> None:
        self.source = source
        self.target = target
        self.data = data
        self.handle: asyncio.Handle | None = None


class MemoryNetwork:
    """A set of in-process endpoints with seeded message loss, delay and partitions."""

    def __init__(
        self, *, seed: int = 0, drop_rate: float = 0.0, delay: float = 0.0, jitter: float = 0.0
    ) -> None:
        self._seed = seed
        self._drop_rate = _check_rate(drop_rate)
        self._delay = _check_seconds("delay", delay)
        self._jitter = _check_seconds("jitter", jitter)
        self._endpoints: dict[str, MemoryTransport] = {}
        self._listening: dict[str, MemoryTransport] = {}
        # Directed rules: a message from an address in [0] to one in [1] is lost.
        self._cuts: list[tuple[frozenset[str], frozenset[str]]] = []
        self._rngs: dict[tuple[str, str], random.Random] = {}
        self._delivered = 0
        self._dropped = 0

    # -- configuration --------------------------------------------------------------------

    @property
    def seed(self) -> int:
        """The seed every link's random generator derives from."""
        return self._seed

    @property
    def drop_rate(self) -> float:
        """Probability in [0, 1] that a message is lost."""
        return self._drop_rate

    @drop_rate.setter
    def drop_rate(self, value: float) -> None:
        self._drop_rate = _check_rate(value)

    @property
    def delay(self) -> float:
        """Fixed seconds between a send and its delivery."""
        return self._delay

    @delay.setter
    def delay(self, value: float) -> None:
        self._delay = _check_seconds("delay", value)

    @property
    def jitter(self) -> float:
        """Extra delay drawn uniformly from [0, jitter] seconds per message."""
        return self._jitter

    @jitter.setter
    def jitter(self, value: float) -> None:
        self._jitter = _check_seconds("jitter", value)

    def partition(self, a: Iterable[str], b: Iterable[str], *, one_way: bool = False) -> None:
        """Lose messages from ``a`` to ``b`` (and from ``b`` to ``a`` unless ``one_way``)."""
        side_a, side_b = frozenset(a), frozenset(b)
        self._cuts.append((side_a, side_b))
        if not one_way:
            self._cuts.append((side_b, side_a))

    def heal(self) -> None:
        """Remove every partition (messages already lost stay lost)."""
        self._cuts.clear()

    def is_partitioned(self, source: str, target: str) -> bool:
        """Whether a message from ``source`` to ``target`` would be lost to a partition."""
        return any(source in src and target in dst for src, dst in self._cuts)

    # -- counters -------------------------------------------------------------------------

    @property
    def delivered(self) -> int:
        """Messages handed to a receiver's handler so far."""
        return self._delivered

    @property
    def dropped(self) -> int:
        """Messages lost so far: random drops, partitions, and deliveries cancelled by close."""
        return self._dropped

    @property
    def in_flight(self) -> int:
        """Messages sent but not yet delivered, dropped or cancelled."""
        return sum(len(t._incoming) for t in self._listening.values())

    # -- endpoints ------------------------------------------------------------------------

    def transport(self, address: str) -> MemoryTransport:
        """A new endpoint at ``address`` (reachable once it listens)."""
        if not address:
            raise InvalidOptionError(f"address must be a non-empty str, got {address!r}")
        if address in self._endpoints:
            raise TransportError(f"address already in use: {address!r}")
        endpoint = MemoryTransport(self, address)
        self._endpoints[address] = endpoint
        return endpoint

    def _link_rng(self, source: str, target: str) -> random.Random:
        rng = self._rngs.get((source, target))
        if rng is None:
            # str seeds hash with SHA-512: stable across runs and processes.
            rng = random.Random(f"{self._seed}\x00{source}\x00{target}")
            self._rngs[(source, target)] = rng
        return rng

    def _send(self, source: MemoryTransport, address: str, data: bytes) -> None:
        target = self._listening.get(address)
        if target is None:
            raise ConnectError(f"nothing listening at {address!r}")
        if self._cuts and self.is_partitioned(source.address, address):
            self._dropped += 1
            return
        rng = self._link_rng(source.address, address)
        if self._drop_rate > 0.0 and rng.random() < self._drop_rate:
            self._dropped += 1
            return
        delay = self._delay
        if self._jitter > 0.0:
            delay += rng.uniform(0.0, self._jitter)
        delivery = _Delivery(source, target, data)
        loop = asyncio.get_running_loop()
        if delay > 0.0:
            delivery.handle = loop.call_later(delay, self._deliver, delivery)
        else:
            delivery.handle = loop.call_soon(self._deliver, delivery)
        source._outgoing.add(delivery)
        target._incoming.add(delivery)

    def _deliver(self, delivery: _Delivery) -> None:
        delivery.source._outgoing.discard(delivery)
        delivery.target._incoming.discard(delivery)
        self._delivered += 1
        delivery.target._start_handler(delivery.source.address, delivery.data)

    def _cancel(self, delivery: _Delivery) -> None:
        if delivery.handle is not None:
            delivery.handle.cancel()
        delivery.source._outgoing.discard(delivery)
        delivery.target._incoming.discard(delivery)
        self._dropped += 1

    def _unregister(self, endpoint: MemoryTransport) -> None:
        if self._endpoints.get(endpoint.address) is endpoint:
            del self._endpoints[endpoint.address]
        if self._listening.get(endpoint.address) is endpoint:
            del self._listening[endpoint.address]


class MemoryTransport:
    """One endpoint of a :class:`MemoryNetwork`; implements :class:`Transport`."""

    def __init__(self, network: MemoryNetwork, address: str) -> None:
        """Prefer :meth:`MemoryNetwork.transport`, which also registers the address."""
        self._network = network
        self._address = address
        self._handler: Handler | None = None
        self._closed = False
        self._incoming: set[_Delivery] = set()
        self._outgoing: set[_Delivery] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> str:
        """The address other endpoints send to; also the sender address they receive."""
        return self._address

    @property
    def network(self) -> MemoryNetwork:
        """The network this endpoint belongs to."""
        return self._network

    async def listen(self, handler: Handler) -> None:
        """Become reachable; each message received runs ``handler`` in its own task."""
        if self._closed:
            raise TransportClosedError(f"transport {self._address!r} is closed")
        if self._handler is not None:
            raise TransportError(f"transport {self._address!r} is already listening")
        self._handler = handler
        self._network._listening[self._address] = self

    async def send(self, address: str, data: bytes) -> None:
        """Queue one message for ``address``; ConnectError if nothing listens there."""
        if self._closed:
            raise TransportClosedError(f"transport {self._address!r} is closed")
        self._network._send(self, address, data)

    async def close(self) -> None:
        """Leave the network, cancel deliveries to and from here and running handlers."""
        if self._closed:
            return
        self._closed = True
        self._network._unregister(self)
        for delivery in list(self._incoming | self._outgoing):
            self._network._cancel(delivery)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _start_handler(self, sender: str, data: bytes) -> None:
        handler = self._handler
        if handler is None:  # pragma: no cover - deliveries exist only while listening
            return
        task = asyncio.get_running_loop().create_task(self._run_handler(handler, sender, data))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_handler(self, handler: Handler, sender: str, data: bytes) -> None:
        try:
            await handler(sender, data)
        except Exception:
            _log.exception("handler failed for a message from %s to %s", sender, self._address)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "listening" if self._handler else "idle"
        return f"<MemoryTransport {self._address!r} {state}>"

"""``--join-dns NAME:PORT``: seed addresses from a DNS name, re-resolved periodically.

A Kubernetes headless service answers with one A/AAAA record per pod, so its name finds
whichever nodes are running now. :class:`DNSSeeds` decides, without I/O, when to resolve
again and which of the addresses found to ask for the member list; :class:`DNSJoiner` runs
it with an injected resolver (:func:`resolve_seeds`, the event loop's ``getaddrinfo``, in
production; a fake in tests).

Which addresses get a ``join``: every address found while this node knows no other live
member (it is alone: at start, or cut off), else only addresses the previous answer did not
list (a new pod). Members already known alive are never asked again; this node's own address
is skipped. When to resolve again: ``interval`` after an answer while this node has live
members, ``retry`` (shorter) while it is alone or when the name did not resolve.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final, TypeAlias

from dcounter_node._errors import ConfigError, NodeError
from dcounter_protocol import MalformedAddressError, format_address, parse_address

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable

    from dcounter_node._membership_service import MembershipService

__all__ = [
    "DEFAULT_DNS_INTERVAL",
    "DNSJoiner",
    "DNSSeeds",
    "Resolver",
    "SeedResolveError",
    "resolve_seeds",
]

logger = logging.getLogger("dcounter_node.membership")

#: Seconds between resolutions while this node has live members.
DEFAULT_DNS_INTERVAL: Final = 30.0
#: Longest wait between resolutions while alone or failing.
MAX_RETRY: Final = 2.0

#: ``await resolver(host, port)``: the ``host:port`` addresses the name stands for.
Resolver: TypeAlias = Callable[[str, int], Awaitable[list[str]]]


class SeedResolveError(NodeError):
    """The seed name did not resolve (no such name, no records, DNS unreachable)."""


async def resolve_seeds(host: str, port: int) -> list[str]:
    """Every A and AAAA record of ``host`` as a ``host:port`` address, in the resolver's order.

    Raises :class:`SeedResolveError` when the name does not resolve.
    """
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:  # socket.gaierror is an OSError
        raise SeedResolveError(f"cannot resolve {host}: {exc}") from None
    found = [format_address(str(info[4][0]), port) for info in infos]
    if not found:
        raise SeedResolveError(f"{host} has no A or AAAA record")
    return list(dict.fromkeys(found))


class DNSSeeds:
    """When to resolve the seed name again and whom to ask for the member list (pure)."""

    def __init__(self, name: str, *, interval: float, retry: float, now: float) -> None:
        try:
            self.host, self.port = parse_address(name, allow_port_zero=False)
        except MalformedAddressError as exc:
            raise ConfigError(f"seed name {name!r}: {exc.reason}") from None
        if not 0 < retry <= interval:
            raise ConfigError("retry must be > 0 and at most interval")
        self.name = name
        self._interval = interval
        self._retry = retry
        #: Loop time of the next resolution.
        self.next_at = now
        self._previous: frozenset[str] = frozenset()
        #: Failed resolutions in a row.
        self.failures = 0

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def resolved(
        self, addresses: Iterable[str], *, now: float, own: str, live: Collection[str]
    ) -> list[str]:
        """An answer arrived; returns the addresses to send a ``join`` to."""
        found = list(dict.fromkeys(addresses))
        alone = not live
        seeds = [
            a for a in found if a != own and a not in live and (alone or a not in self._previous)
        ]
        self._previous = frozenset(found)
        self.failures = 0
        self.next_at = now + (self._retry if alone else self._interval)
        return seeds

    def postpone(self, now: float) -> None:
        """Nothing to resolve for now (the node is not running): ask again after ``retry``."""
        self.next_at = now + self._retry

    def failed(self, now: float) -> bool:
        """The name did not resolve; True for the first failure in a row (worth a warning)."""
        self.failures += 1
        self.next_at = now + self._retry
        return self.failures == 1


class DNSJoiner:
    """Runs :class:`DNSSeeds` for a started :class:`MembershipService`."""

    def __init__(
        self,
        service: MembershipService,
        name: str,
        *,
        interval: float = DEFAULT_DNS_INTERVAL,
        resolver: Resolver = resolve_seeds,
    ) -> None:
        self._service = service
        self._name = name
        self._interval = interval
        self._resolver = resolver
        self._seeds: DNSSeeds | None = None
        self._task: asyncio.Task[None] | None = None
        #: Resolutions that failed, and joins sent, since start.
        self.failures = 0
        self.joins = 0

    def start(self) -> None:
        """Resolve now, then as :class:`DNSSeeds` says, until :meth:`close`."""
        loop = asyncio.get_running_loop()
        self._seeds = DNSSeeds(
            self._name,
            interval=self._interval,
            retry=min(self._interval, MAX_RETRY),
            now=loop.time(),
        )
        self._task = asyncio.ensure_future(self._run(self._seeds))
        logger.info("membership: joining through the addresses of %s", self._name)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self, seeds: DNSSeeds) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(max(0.0, seeds.next_at - loop.time()))
            try:
                await self._round(seeds, loop)
            except Exception:
                logger.exception("membership: error joining through %s", self._name)
                seeds.failed(loop.time())

    async def _round(self, seeds: DNSSeeds, loop: asyncio.AbstractEventLoop) -> None:
        membership = self._service.membership
        if membership is None or membership.leaving:
            seeds.postpone(loop.time())  # not started, or leaving: nothing to join for
            return
        try:
            async with asyncio.timeout(max(self._interval, 5.0)):
                addresses = await self._resolver(seeds.host, seeds.port)
        except (SeedResolveError, TimeoutError) as exc:
            self.failures += 1
            reason = str(exc) if isinstance(exc, SeedResolveError) else "resolving timed out"
            first = seeds.failed(loop.time())
            # Once per outage: a name that stays unresolvable (pods not up yet) is no news.
            (logger.warning if first else logger.debug)(
                "membership: --join-dns %s: %s (retrying every %gs)",
                self._name,
                reason,
                min(self._interval, MAX_RETRY),
            )
            return
        recovered = seeds.failures > 0
        joins = seeds.resolved(
            addresses, now=loop.time(), own=membership.address, live=membership.alive()
        )
        if recovered:
            logger.info("membership: %s resolves again", seeds.host)
        if joins:
            logger.info("membership: joining through %s (from %s)", ", ".join(joins), seeds.host)
            self.joins += len(joins)
            self._service.join(joins)

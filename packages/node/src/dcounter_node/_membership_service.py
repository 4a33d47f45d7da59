"""Membership's asyncio edge: runs :class:`~dcounter_node._membership.Membership` for a node.

It takes the node's membership frames (``DCM``-prefixed payloads, see
:mod:`dcounter_node._membership_wire`) before the counter's gossip sees them, ticks the state
machine, sends what it returns through the node's transport (with TCP only on streams whose
listener confirmed :data:`~dcounter_protocol.CAP_MEMBERSHIP`), keeps the node's gossip peers
equal to the static ones plus the members believed alive, logs each state change once and
exposes the view (``GET /members``) and counters (``/metrics``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections import Counter
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from dcounter_node._membership import Membership, MembershipConfig, MemberState
from dcounter_node._membership_wire import (
    MembershipDecodeError,
    decode_membership,
    encode_membership,
)
from dcounter_node._ratelimit import RateLimitedLog
from dcounter_protocol import (
    CAP_MEMBERSHIP,
    TCPTransport,
    TransportError,
    received_capabilities,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Collection, Iterator, Sequence

    from prometheus_client.core import Metric

    from dcounter_node._membership import Outgoing
    from dcounter_node._node import Node

__all__ = [
    "MembershipCollector",
    "MembershipService",
    "members_route",
    "membership_config",
    "wildcard_listen",
]

logger = logging.getLogger("dcounter_node.membership")

#: Shortest wait between two wake-ups of the membership timer, in seconds.
_MIN_WAIT: Final = 0.001
#: Sends in flight at most; beyond it membership messages are dropped (SWIM tolerates loss).
_MAX_IN_FLIGHT: Final = 256
#: Seconds between joins to the seeds while alone (at least a probe interval), as
#: ``--join-dns`` retries its name.
_REJOIN_INTERVAL: Final = 2.0
#: Shortest wait for the leave announcements to go out.
_LEAVE_WAIT: Final = 0.5
_WILDCARDS: Final = frozenset({"0.0.0.0", "::", "[::]", ""})


def membership_config(
    probe_interval: float,
    suspect_timeout: float,
    *,
    max_members: int = 1024,
    forget_after: float | None = 86400.0,
) -> MembershipConfig:
    """The state machine's settings from the ones a user gives."""
    # Half the interval for the direct ack leaves the other half for indirect probes.
    return MembershipConfig(
        probe_interval=probe_interval,
        probe_timeout=probe_interval / 2,
        suspect_timeout=suspect_timeout,
        max_members=max_members,
        forget_after=forget_after,
        rejoin_interval=max(probe_interval, _REJOIN_INTERVAL),
    )


def wildcard_listen(listen: str) -> bool:
    """Whether ``listen`` binds every interface (its host names no one to dial)."""
    host = listen.rpartition(":")[0]
    return host in _WILDCARDS


class MembershipService:
    """Membership for one started-by-the-caller node; ``start`` after the node started."""

    def __init__(
        self,
        node: Node,
        *,
        seeds: Sequence[str],
        static_peers: Collection[str],
        config: MembershipConfig,
        rng: random.Random | None = None,
    ) -> None:
        self._node = node
        self._seeds = tuple(seeds)
        self._static = frozenset(static_peers)
        self._config = config
        self._rng = rng if rng is not None else random.Random()
        self._membership: Membership | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        #: The wake-up for the membership's next deadline, and when it is due.
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._stopped = False
        self._log = RateLimitedLog(logger)
        #: State changes seen, by the state entered.
        self.changes: Counter[str] = Counter()
        #: Dead or left members removed from the list after --forget-after.
        self.forgotten = 0
        self.dropped = 0
        #: Messages not sent because the member has no stream that speaks membership.
        self.not_capable = 0
        self.invalid = 0
        #: Membership messages refused: their connection did not negotiate the capability.
        self.not_negotiated = 0
        self._refused_seen = 0
        node.membership_handler = self._on_frame

    @property
    def membership(self) -> Membership | None:
        return self._membership

    def start(self) -> None:
        """Begin: ask the seeds for their member lists, then probe every interval."""
        loop = asyncio.get_running_loop()
        self._membership = Membership(
            self._node.address,
            self._node.replica_id,
            config=self._config,
            rng=self._rng,
            now=loop.time(),
        )
        self._send(self._membership.join(self._seeds, loop.time()))
        self._arm()
        logger.info("membership: joining through %s", ", ".join(self._seeds) or "no seed")

    def join(self, seeds: Sequence[str]) -> None:
        """Ask ``seeds`` for their member lists (again): seeds found later, e.g. in DNS."""
        if self._membership is not None and not self._membership.leaving:
            self._send(self._membership.join(seeds))

    async def leave(self) -> None:
        """Announce a graceful leave to every member; waits up to one probe interval."""
        membership = self._membership
        if membership is None or membership.leaving:
            return
        self._stop_ticker()
        outgoing = membership.leave(asyncio.get_running_loop().time())
        sends = [self._send_one(out) for out in outgoing]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(self._config.probe_interval, _LEAVE_WAIT)):
                await asyncio.gather(*sends)
        logger.info("membership: left (told %d members)", len(outgoing))

    async def close(self) -> None:
        """Stop probing and cancel sends in flight."""
        self._stop_ticker()
        # Members still probe a node that stopped: their messages are dropped quietly, not
        # handed to the counter's gossip (which would log each as an invalid envelope).
        self._node.membership_handler = _ignore
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def members(self) -> list[dict[str, Any]]:
        """The member list as ``GET /members`` shows it (``since`` in Unix seconds)."""
        membership = self._membership
        if membership is None:
            return []
        loop_now = asyncio.get_running_loop().time()
        wall_now = time.time()
        return [
            {
                "address": m.address,
                "replica": m.replica,
                "state": m.state.value,
                "incarnation": m.incarnation,
                "since": round(wall_now - (loop_now - m.since), 3),
            }
            for m in membership.members()
        ]

    # -- internals ------------------------------------------------------------------------

    def _stop_ticker(self) -> None:
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self, *, min_wait: float = _MIN_WAIT) -> None:
        """Wake up at the membership's next deadline (a callback on the loop's timer heap).

        Only then: an idle node's CPU is mostly its wake-ups, and between two probes an
        idle membership has nothing to do (it used to look five times per probe interval).
        """
        membership = self._membership
        if membership is None or self._stopped:
            return
        due = membership.next_due()
        if due >= self._timer_at or due == math.inf:
            return  # woken earlier anyway (that wake-up arms again), or nothing to come
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer_at = max(due, loop.time() + min_wait)
        self._timer = loop.call_at(self._timer_at, self._tick)

    def _tick(self) -> None:
        self._timer = None
        self._timer_at = math.inf
        membership = self._membership
        try:
            if membership is not None:
                self._send(membership.tick(asyncio.get_running_loop().time()))
                self._follow_changes()
        except Exception:
            logger.exception("error in membership: a probe round")
            # What failed may still be due: try again later, not at once in a loop.
            self._arm(min_wait=self._config.probe_interval / 5)
            return
        self._arm()

    async def _on_frame(self, sender: str, payload: bytes) -> None:
        membership = self._membership
        if membership is None:
            return
        capabilities = received_capabilities()  # None: an in-process network, no handshake
        if capabilities is not None and not capabilities & CAP_MEMBERSHIP:
            # A seed frame, or a stream whose ends did not both offer membership: whoever
            # sent it never learnt that we speak membership, so it is not one of us.
            self.not_negotiated += 1
            self._log.warning(
                "not-negotiated",
                "membership: dropping a message from %s on a connection that did not"
                " negotiate membership (seed framing or a version 1 stream)",
                sender,
            )
            return
        try:
            message = decode_membership(payload)
        except MembershipDecodeError as exc:
            self.invalid += 1
            self._log.warning("decode", "membership: dropping a message from %s: %s", sender, exc)
            return
        self._send(membership.receive(message, asyncio.get_running_loop().time()))
        self._follow_changes()
        self._arm()  # the message may bring a deadline forward (a suspect, a relay)

    def _follow_changes(self) -> None:
        membership = self._membership
        if membership is None:
            return
        if membership.refused > self._refused_seen:
            self._refused_seen = membership.refused
            self._log.warning(
                "refused",
                "membership: ignoring new members beyond --max-members %d (%d so far)",
                self._config.max_members,
                membership.refused,
            )
        peers = self._node.peers
        for change in membership.take_changes():
            self.changes[change.after.value] += 1
            before = "new" if change.before is None else change.before.value
            logger.info(
                "member %s is %s (was %s, incarnation %d)",
                change.address,
                change.after.value,
                before,
                change.incarnation,
            )
            if change.after in (MemberState.ALIVE, MemberState.SUSPECT):
                peers.add(change.address)
            elif change.address not in self._static:
                peers.remove(change.address)
        for address in membership.take_forgotten():
            self.forgotten += 1
            logger.info("member %s is forgotten (dead or left for --forget-after)", address)

    def _send(self, outgoing: list[Outgoing]) -> None:
        for out in outgoing:
            if len(self._tasks) >= _MAX_IN_FLIGHT:
                self.dropped += 1
                continue
            task = asyncio.ensure_future(self._send_one(out))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send_one(self, out: Outgoing) -> None:
        await self.send_payload(out.address, encode_membership(out.message))

    async def send_payload(self, address: str, payload: bytes) -> None:
        """Send a membership-level payload (membership, pruning) to a member, or drop it."""
        transport = self._node.transport
        # An unreachable member is what probes find out: nothing else to do here.
        with contextlib.suppress(TransportError, TimeoutError):
            async with asyncio.timeout(self._config.probe_interval * 2):
                if not isinstance(transport, TCPTransport):
                    await transport.send(address, payload)  # in-process networks
                    return
                # Only on a stream whose listener said it speaks membership: never the seed
                # framing, never a Go reference node or an older dcounter node.
                if transport.capabilities(address) is None:
                    await transport.open_stream(address)
                capabilities = transport.capabilities(address)
                if capabilities is None:
                    return  # no stream confirmed (yet): as lost as an unanswered datagram
                if not capabilities & CAP_MEMBERSHIP:
                    self.not_capable += 1
                    self._log.warning(
                        f"incapable:{address}",
                        "membership: %s does not speak membership (a Go or older node?)",
                        address,
                    )
                    return
                transport.send_nowait(address, payload)


async def _ignore(sender: str, payload: bytes) -> None:
    return None


def members_route(
    service: MembershipService,
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The ``GET /members`` handler."""

    async def members(request: web.Request) -> web.Response:
        return web.json_response({"members": service.members()})

    return members


class MembershipCollector(Collector):
    """``dcounter_members`` by state, ``dcounter_member_changes_total``, the health score and
    the other membership counters for /metrics."""

    def __init__(self, service: MembershipService) -> None:
        self._service = service

    def collect(self) -> Iterator[Metric]:
        membership = self._service.membership
        counts: Counter[str] = Counter()
        if membership is not None:
            counts.update(m.state.value for m in membership.members())
        members = GaugeMetricFamily(
            "dcounter_members", "Known members (this node included) by state.", labels=["state"]
        )
        changes = CounterMetricFamily(
            "dcounter_member_changes",
            "Member state changes this node saw, by the state entered.",
            labels=["state"],
        )
        for state in MemberState:
            members.add_metric([state.value], counts[state.value])
            changes.add_metric([state.value], self._service.changes[state.value])
        yield members
        yield changes
        yield GaugeMetricFamily(
            "dcounter_membership_awareness",
            "This node's health score (Lifeguard): 0 healthy; its probe interval and probe"
            " timeout are multiplied by 1 + score.",
            value=0 if membership is None else membership.awareness,
        )
        yield CounterMetricFamily(
            "dcounter_membership_suspicion_confirmations",
            "Suspicions confirmed by another member (each shortens the suspect's time to dead).",
            value=0 if membership is None else membership.confirmations,
        )
        yield CounterMetricFamily(
            "dcounter_members_forgotten",
            "Dead or left members removed from the list after --forget-after.",
            value=self._service.forgotten,
        )
        yield CounterMetricFamily(
            "dcounter_membership_invalid_messages",
            "Membership messages dropped as malformed.",
            value=self._service.invalid,
        )
        yield CounterMetricFamily(
            "dcounter_membership_refused_members",
            "Updates about new members ignored: --max-members are known already.",
            value=0 if membership is None else membership.refused,
        )
        yield CounterMetricFamily(
            "dcounter_membership_not_negotiated",
            "Membership messages dropped: their connection did not negotiate membership.",
            value=self._service.not_negotiated,
        )
        yield CounterMetricFamily(
            "dcounter_membership_not_capable",
            "Membership messages not sent: the member has no stream that speaks membership.",
            value=self._service.not_capable,
        )

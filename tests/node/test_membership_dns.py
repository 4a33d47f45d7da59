"""--join-dns: which seeds to ask and when to resolve again (pure), the real resolver, and
the joiner driving a membership service on an in-memory network with a fake resolver."""

from __future__ import annotations

import logging
import random
from typing import TYPE_CHECKING

import pytest

from dcounter_node import Node, NodeConfig
from dcounter_node._membership import MembershipConfig, MemberState
from dcounter_node._membership_dns import DNSJoiner, DNSSeeds, SeedResolveError, resolve_seeds
from dcounter_node._membership_service import MembershipService
from dcounter_node.testing import wait_until
from dcounter_protocol import MemoryNetwork

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

NAME = "dcounter.default.svc:7946"
PODS = ["10.0.0.1:7946", "10.0.0.2:7946", "10.0.0.3:7946"]
OWN = "10.0.0.1:7946"


def seeds() -> DNSSeeds:
    return DNSSeeds(NAME, interval=30.0, retry=2.0, now=0.0)


def test_the_name_is_resolved_at_once() -> None:
    policy = seeds()
    assert (policy.host, policy.port) == ("dcounter.default.svc", 7946)
    assert policy.due(0.0)


def test_alone_every_address_but_its_own_is_asked_and_resolved_again_soon() -> None:
    policy = seeds()
    assert policy.resolved(PODS, now=1.0, own=OWN, live=()) == PODS[1:]
    assert not policy.due(2.9)
    assert policy.due(3.0)
    # Still alone (the joins were lost): everyone again.
    assert policy.resolved(PODS, now=3.0, own=OWN, live=()) == PODS[1:]


def test_with_live_members_only_new_addresses_are_asked() -> None:
    policy = seeds()
    policy.resolved(PODS, now=1.0, own=OWN, live=())
    live = PODS[1:2]  # 10.0.0.3 did not answer yet: known, not live

    grown = [*PODS, "10.0.0.4:7946"]
    assert policy.resolved(grown, now=3.0, own=OWN, live=live) == ["10.0.0.4:7946"]
    assert not policy.due(32.9)
    assert policy.due(33.0)


def test_live_members_and_duplicates_are_never_asked() -> None:
    policy = seeds()
    answer = [PODS[1], PODS[1], PODS[2]]
    assert policy.resolved(answer, now=1.0, own=OWN, live=[PODS[2]]) == [PODS[1]]


def test_a_failed_resolution_is_retried_and_only_the_first_is_worth_a_warning() -> None:
    policy = seeds()
    assert policy.failed(1.0) is True
    assert policy.failed(3.0) is False
    assert policy.due(5.0)
    assert not policy.due(4.9)
    policy.resolved(PODS, now=5.0, own=OWN, live=())
    assert policy.failed(7.0) is True  # a new outage


@pytest.mark.parametrize("name", ["no-port", "host:0", ""])
def test_the_name_needs_a_dialable_port(name: str) -> None:
    with pytest.raises(ValueError, match="seed name"):
        DNSSeeds(name, interval=30.0, retry=2.0, now=0.0)


async def test_localhost_resolves_to_loopback_addresses() -> None:
    found = await resolve_seeds("localhost", 7946)
    assert "127.0.0.1:7946" in found or "[::1]:7946" in found
    assert set(found) <= {"127.0.0.1:7946", "[::1]:7946"}


async def test_a_name_that_does_not_exist_raises_a_typed_error() -> None:
    with pytest.raises(SeedResolveError, match=r"no-such-name\.invalid"):
        await resolve_seeds("no-such-name.invalid", 7946)


class FakeDNS:
    """A resolver whose answer the test sets; None: the name does not resolve."""

    def __init__(self) -> None:
        self.answer: list[str] | None = None
        self.asked = 0

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked += 1
        if self.answer is None:
            raise SeedResolveError(f"cannot resolve {host}: no such name")
        return list(self.answer)


CONFIG = MembershipConfig(probe_interval=0.1, probe_timeout=0.05, suspect_timeout=1.0)


@pytest.fixture
async def services() -> AsyncIterator[list[MembershipService]]:
    """Three nodes with membership on one in-memory network, none told about another."""
    network = MemoryNetwork(seed=3)
    made: list[MembershipService] = []
    nodes: list[Node] = []
    try:
        for address in PODS:
            node = Node(network.transport(address), NodeConfig(sync_interval=0.1))
            nodes.append(node)
            service = MembershipService(
                node, seeds=(), static_peers=(), config=CONFIG, rng=random.Random(1)
            )
            made.append(service)
            await node.start()
            service.start()
        yield made
    finally:
        for service in made:
            await service.close()
        for node in nodes:
            await node.close()


def alive_everywhere(services: list[MembershipService]) -> bool:
    for service in services:
        membership = service.membership
        assert membership is not None
        if {m.address: m.state for m in membership.members()} != dict.fromkeys(
            PODS, MemberState.ALIVE
        ):
            return False
    return True


async def test_a_node_joins_through_the_names_addresses_once_it_resolves(
    services: list[MembershipService], caplog: pytest.LogCaptureFixture
) -> None:
    dns = FakeDNS()
    joiner = DNSJoiner(services[0], NAME, interval=0.5, resolver=dns)
    caplog.set_level(logging.DEBUG, logger="dcounter_node.membership")
    joiner.start()
    try:
        # Not resolvable yet (pods still starting): retried, one warning, no crash.
        await wait_until(lambda: dns.asked >= 2, within=30.0, what="two resolutions")
        about_dns = [r for r in caplog.records if "--join-dns" in r.getMessage()]
        assert [r.levelno for r in about_dns] == [logging.WARNING] + [logging.DEBUG] * (
            len(about_dns) - 1
        )
        assert "no such name" in about_dns[0].getMessage()
        assert not alive_everywhere(services)

        dns.answer = list(PODS)
        await wait_until(
            lambda: alive_everywhere(services), within=30.0, what="3 alive members everywhere"
        )
        assert joiner.failures >= 2
        assert joiner.joins >= 2
    finally:
        await joiner.close()


def test_postponing_waits_the_retry_interval_and_is_no_failure() -> None:
    policy = seeds()
    policy.postpone(1.0)
    assert not policy.due(2.9)
    assert policy.due(3.0)
    assert policy.failures == 0

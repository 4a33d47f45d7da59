"""Named counters pruned between real nodes on the in-memory network.

Three nodes with membership, pruning and named counters; one restarts without state (a
new incarnation) and prunes its earlier one. With every node speaking named pruning, the
earlier incarnation's entries leave every named counter too; with an older node among them
(one that rejects `named records` and applies records to the default counter only), the
record is made without a named part and every named counter keeps its entries. Either way
every node ends with the exact value of every counter, and the same named digests.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import TYPE_CHECKING

from dcounter_node._pruning_wire import PruningKind, decode_pruning
from dcounter_protocol._memory import MemoryNetwork

from .conftest import address, wait_until
from .test_pruning_network import Cluster, Member

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from dcounter_crdt import CounterMapState

NAMES = ("hits", "stock")


def make_older(member: Member) -> list[bytes]:
    """Make ``member`` behave as a node without named pruning; returns the payloads it
    rejected (as an older decoder does: `named records` is an unknown kind there)."""
    node, pruning = member.node, member.pruning
    rejected: list[bytes] = []
    send = pruning.send

    def send_no_named(address: str, *payloads: bytes) -> None:
        send(address, *(p for p in payloads if not is_named_records(p)))

    pruning.send = send_no_named  # type: ignore[method-assign]
    handler = node.pruning_handler
    assert handler is not None

    async def older(sender: str, payload: bytes) -> None:
        if is_named_records(payload):
            rejected.append(payload)
            return
        await handler(sender, payload)

    node.pruning_handler = older
    gossip = node._named.gossip
    assert gossip is not None
    gossip._tombstones = None  # it merges named entries as they come
    tombstones = node._tombstones
    assert tombstones is not None

    def default_counter_only() -> int:  # what Node.apply_tombstones did before named parts
        gossip = node._gossip
        assert gossip is not None
        before, value = gossip.state(), gossip.counter.value
        replica_id, state = tombstones.adopt(gossip.counter.replica_id, before)
        if replica_id == gossip.counter.replica_id and state == before:
            return 0
        node._changed(gossip.rebase(replica_id, state), value)
        return len(before.replicas() - state.replicas())

    node.apply_tombstones = default_counter_only  # type: ignore[method-assign]
    return rejected


def is_named_records(payload: bytes) -> bool:
    return decode_pruning(payload).kind is PruningKind.NAMED_RECORDS


class NamedCluster(Cluster):
    expected_named: dict[str, int]
    #: Per name, every increment and decrement ever made.
    named_totals: dict[str, list[int]]

    def write_named(self, index: int, name: str, amount: int) -> None:
        counters = self.members[index].node.counters
        if amount > 0:
            counters.increment(name, amount)
        else:
            counters.decrement(name, -amount)
        self.expected_named[name] = self.expected_named.get(name, 0) + amount
        self.named_totals.setdefault(name, [0, 0])[0 if amount > 0 else 1] += abs(amount)

    def counted_twice(self) -> list[str]:
        """Nodes holding more increments or decrements, in any counter, than ever made."""
        twice = super().counted_twice()
        for node in self.nodes:
            if not node.running:
                continue
            for name, counter in node.counters.snapshot().counters.items():
                inc, dec = self.named_totals.get(name, [0, 0])
                if sum(counter.increments.values()) > inc or sum(counter.decrements.values()) > dec:
                    twice.append(f"{node.address} in {name}")
        return twice

    def named_agree(self) -> bool:
        nodes = self.nodes
        first = nodes[0].counters.snapshot()
        roots = {n._named.gossip.digests.root for n in nodes if n._named.gossip is not None}
        return len(roots) == 1 and all(
            n.counters.snapshot() == first
            and {name: n.counters.value(name) for name in NAMES} == self.expected_named
            for n in nodes
        )

    async def named_converged(self) -> CounterMapState:
        await wait_until(
            self.named_agree,
            within=30.0,
            what=lambda: (
                f"{self.expected_named} everywhere: {[n.counters.snapshot() for n in self.nodes]}"
            ),
        )
        return self.nodes[0].counters.snapshot()


async def restart_and_prune(cluster: NamedCluster, *, older: int | None) -> list[bytes]:
    """Node 0 restarts as a new incarnation and prunes its earlier one; the named counters
    hold entries of every node's ids, written before and after."""
    cluster.expected_named, cluster.named_totals = {}, {}
    everyone = {address(i) for i in range(3)}
    for index in range(3):
        cluster.members.append(await cluster.start_member(index))
    rejected = [] if older is None else make_older(cluster.members[older])
    await wait_until(lambda: all(cluster.alive_seen_by(i) == everyone for i in range(3)))
    for index, name, by in ((0, "hits", 5), (1, "stock", 3), (2, "hits", -2), (0, "stock", -1)):
        cluster.write_named(index, name, by)
        cluster.write(index, by)
    await cluster.converged()
    await cluster.named_converged()
    earlier = cluster.nodes[0].replica_id
    await cluster.members[0].close()
    cluster.members[0] = await cluster.start_member(0)
    await wait_until(lambda: all(cluster.alive_seen_by(i) == everyone for i in range(3)))
    cluster.write_named(0, "hits", 4)  # under the new incarnation, before the prune
    pruner = cluster.members[0].pruning
    await wait_until(lambda: pruner.records_made == 1, within=30.0, what="a prune")
    assert pruner.tombstones.is_victim(earlier)
    cluster.write_named(0, "hits", 2)  # under its successor
    cluster.write_named(1, "stock", 7)
    return rejected


@contextlib.asynccontextmanager
async def watched(seed: int) -> AsyncIterator[tuple[NamedCluster, list[str]]]:
    """A cluster, and the nodes caught counting twice while it runs (to stay empty)."""
    cluster = NamedCluster(MemoryNetwork(seed=seed), random.Random(seed))
    double: list[str] = []
    watcher = asyncio.ensure_future(cluster.watch(double))
    try:
        yield cluster, double
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await cluster.close()


async def test_a_prune_drops_the_earlier_incarnation_from_every_named_counter() -> None:
    async with watched(3) as (cluster, double):
        await restart_and_prune(cluster, older=None)
        [record] = cluster.members[0].pruning.tombstones.records()
        assert record.named is not None
        named = await cluster.named_converged()
        assert cluster.expected_named == {"hits": 5 - 2 + 4 + 2, "stock": 3 - 1 + 7}
        survivor = cluster.nodes[0].replica_id
        assert survivor == record.survivor
        for counter in named.counters.values():
            assert len(counter.replicas()) <= 3  # one entry per address at most
            assert not counter.replicas() & record.victims.keys()
        assert named.get("hits").increments[survivor] == 5 + 4 + 2
        assert named.get("stock").decrements[survivor] == 1
        for member in cluster.members:
            assert member.pruning.named_capable == {address(i) for i in range(3)} - {
                member.node.address
            }
        assert double == []


async def test_with_an_older_node_the_named_counters_keep_their_entries_exactly() -> None:
    async with watched(5) as (cluster, double):
        rejected = await restart_and_prune(cluster, older=1)
        [record] = cluster.members[0].pruning.tombstones.records()
        assert record.named is None  # the older member could not have applied one
        assert rejected  # it was asked whether it speaks named pruning, and did not answer
        named = await cluster.named_converged()
        assert cluster.expected_named == {"hits": 9, "stock": 9}
        # The earlier incarnation's named entries stay, counted once everywhere.
        earlier = next(iter(record.victims.keys() - {cluster.nodes[0].replica_id[:-1]}))
        assert named.get("hits").increments[earlier] == 5
        await cluster.converged()  # the default counter is pruned as before
        assert earlier not in cluster.nodes[1].state().replicas()
        assert double == []

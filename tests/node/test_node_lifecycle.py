"""Node lifecycle and local API: start/close, replica ids, counting, watching, the store seam."""

from __future__ import annotations

import asyncio
import re

import pytest

from dcounter_crdt import CounterMapState, CounterState, InvalidAmountError
from dcounter_node import (
    ConfigError,
    ForeignStorageError,
    Node,
    NodeClosedError,
    NodeConfig,
    NodeNotStartedError,
    PeerManager,
    StoredState,
)
from dcounter_protocol import ConnectError, DigestPull, TransportClosedError, decode_message
from dcounter_protocol._memory import MemoryNetwork

from .conftest import Probe, address, fast_config, wait_until

HERE = address(0)


class FakeStore:
    """A StateStore that remembers what the node asked of it."""

    def __init__(self, stored: StoredState | None = None) -> None:
        self.stored = stored
        self.calls: list[str] = []
        self.bound: str | None = None
        self.staged: list[CounterState] = []
        self.staged_named: list[CounterMapState] = []
        self.commits = 0

    async def open(self) -> StoredState | None:
        self.calls.append("open")
        return self.stored

    async def bind(self, replica_id: str) -> None:
        self.calls.append("bind")
        self.bound = replica_id

    def stage(self, changes: CounterState) -> None:
        self.staged.append(changes)

    def stage_named(self, changes: CounterMapState) -> None:
        self.staged_named.append(changes)

    async def commit(self) -> None:
        self.commits += 1

    async def close(self) -> None:
        self.calls.append("close")


def make_node(
    network: MemoryNetwork | None = None,
    config: NodeConfig | None = None,
    *,
    peers: PeerManager | None = None,
    state: CounterState | None = None,
    store: FakeStore | None = None,
) -> Node:
    net = network if network is not None else MemoryNetwork()
    return Node(net.transport(HERE), config or fast_config(), peers=peers, state=state, store=store)


def other_tasks() -> set[asyncio.Task[object]]:
    return asyncio.all_tasks() - {asyncio.current_task()}


async def test_close_leaves_no_task_behind() -> None:
    before = other_tasks()
    network = MemoryNetwork()
    node = make_node(network, peers=PeerManager(HERE, [address(1)]))
    await node.start()
    node.increment(3)
    await wait_until(lambda: node.stats.snapshot().send_failures > 0)
    await node.close()
    assert other_tasks() == before


async def test_close_is_idempotent_and_concurrent_calls_all_return() -> None:
    node = make_node()
    await node.start()
    await asyncio.gather(node.close(), node.close())
    await node.close()
    assert node.closed
    assert not node.running


async def test_async_context_manager_starts_and_closes() -> None:
    async with make_node() as node:
        assert node.running
    assert node.closed


async def test_closed_node_cannot_start_again() -> None:
    node = make_node()
    await node.start()
    await node.close()
    with pytest.raises(NodeClosedError):
        await node.start()


async def test_close_closes_the_transport() -> None:
    network = MemoryNetwork()
    probe = network.transport(address(9))
    async with make_node(network):
        await probe.send(HERE, b"\x00")
    with pytest.raises(ConnectError):
        await probe.send(HERE, b"\x00")
    await probe.close()


async def test_counting_before_start_raises_not_started() -> None:
    node = make_node()
    with pytest.raises(NodeNotStartedError):
        node.increment()
    await node.close()


async def test_counting_after_close_raises_closed() -> None:
    node = make_node()
    await node.start()
    await node.close()
    with pytest.raises(NodeClosedError):
        node.decrement()


async def test_replica_id_is_the_address_plus_an_incarnation_token() -> None:
    async with make_node() as node:
        assert re.fullmatch(re.escape(HERE) + r"#[0-9a-f]{8}", node.replica_id)


async def test_each_incarnation_without_state_gets_a_new_replica_id() -> None:
    network = MemoryNetwork()
    async with make_node(network) as first:
        first_id = first.replica_id
    async with make_node(network) as second:
        assert second.replica_id != first_id
        assert second.replica_id.startswith(HERE + "#")


async def test_configured_replica_id_is_used() -> None:
    async with make_node(config=fast_config(replica_id="fixed")) as node:
        node.increment()
        assert node.state() == CounterState.from_maps({"fixed": 1})


async def test_increment_and_decrement_return_the_new_value() -> None:
    async with make_node() as node:
        assert node.increment() == 1
        assert node.increment(5) == 6
        assert node.decrement(2) == 4
        assert node.value == 4
        assert node.contribution == 4


async def test_state_holds_this_replicas_totals() -> None:
    async with make_node() as node:
        node.increment(7)
        node.decrement(3)
        assert node.state() == CounterState.from_maps({node.replica_id: 7}, {node.replica_id: 3})


@pytest.mark.parametrize("bad", [0, -1, True, 1.5])
async def test_invalid_amount_is_rejected_and_changes_nothing(bad: object) -> None:
    async with make_node() as node:
        with pytest.raises(InvalidAmountError):
            node.increment(bad)  # type: ignore[arg-type]
        assert node.value == 0


async def test_initial_state_is_merged_and_counted_in_the_value() -> None:
    initial = CounterState.from_maps({"old#1": 10}, {"old#1": 4})
    async with make_node(state=initial) as node:
        assert node.value == 6
        assert node.contribution == 0
        assert node.increment() == 7


async def test_watch_yields_the_current_value_then_each_change() -> None:
    async with make_node() as node:
        watch = node.watch()
        node.increment(2)
        node.decrement()
        assert [await anext(watch), await anext(watch), await anext(watch)] == [0, 2, 1]


async def test_watch_without_initial_yields_only_changes() -> None:
    async with make_node() as node:
        watch = node.watch(initial=False)
        node.increment(4)
        assert await anext(watch) == 4


async def test_watch_ends_when_the_node_closes() -> None:
    node = make_node()
    await node.start()
    watch = node.watch(initial=False)
    node.increment()
    await node.close()
    assert [value async for value in watch] == [1]


async def test_lagging_watcher_keeps_the_latest_value() -> None:
    async with make_node() as node:
        watch = node.watch(initial=False)
        for _ in range(1000):
            node.increment()
        await node.close()
        values = [value async for value in watch]
    assert values[-1] == 1000
    assert len(values) < 1000
    assert values == sorted(values)


async def test_each_watcher_gets_every_value_independently() -> None:
    async with make_node() as node:
        first, second = node.watch(initial=False), node.watch(initial=False)
        node.increment()
        node.increment()
        assert [await anext(first), await anext(first)] == [1, 2]
        assert [await anext(second), await anext(second)] == [1, 2]


async def test_closed_watch_stops_receiving() -> None:
    async with make_node() as node:
        watch = node.watch(initial=False)
        await watch.aclose()
        node.increment()
        assert [value async for value in watch] == []


async def test_new_store_is_bound_to_a_new_replica_id_and_sees_every_change() -> None:
    store = FakeStore()
    node = make_node(store=store)
    await node.start()
    node.increment(2)
    node.decrement(1)
    await node.commit()
    assert store.bound == node.replica_id
    replica = node.replica_id
    # Local updates are staged together, once per commit (not once per update).
    assert store.staged == [CounterState.from_maps({replica: 2}, {replica: 1})]
    assert store.commits == 1
    await node.close()
    assert store.calls == ["open", "bind", "close"]


class CommitRecordingStore(FakeStore):
    """A store that records, as each commit begins, everything staged so far (joined)."""

    def __init__(self) -> None:
        super().__init__()
        self.covered: list[CounterState] = []

    async def commit(self) -> None:
        joined = CounterState.empty()
        for changes in self.staged:
            joined = joined.merged(changes)
        self.covered.append(joined)
        await super().commit()


@pytest.mark.parametrize("delta_gossip", [True, False], ids=["delta-push", "full-push"])
async def test_a_pushed_count_was_staged_before_the_commit_that_let_it_leave(
    delta_gossip: bool,
) -> None:
    network = MemoryNetwork()
    probe = Probe(network, address(1))
    await probe.start()
    store = CommitRecordingStore()
    node = make_node(
        network,
        fast_config(sync_interval=60.0, delta_gossip=delta_gossip),
        peers=PeerManager(HERE, [address(1)]),
        store=store,
    )
    await node.start()
    try:
        node.increment(4)
        node.decrement(1)
        if not delta_gossip:  # a differing pull gets our full state
            await probe.send(HERE, DigestPull(address(1), 12345))
        _, message = await probe.receive()
        pushed = message.state()
        assert pushed.contribution(node.replica_id) == 3
        # Outbound commits before each push; the first commit already covered the counts.
        assert store.covered[0].dominates(pushed)
    finally:
        await node.close()
        await probe.close()


async def test_close_stages_local_updates_before_closing_the_store() -> None:
    store = FakeStore()
    node = make_node(config=fast_config(delta_gossip=False, sync_interval=60.0), store=store)
    await node.start()
    node.increment(7)
    await node.close()
    assert store.staged == [CounterState.from_maps({node.replica_id: 7})]
    assert store.calls[-1] == "close"


async def test_stored_state_is_resumed_with_its_replica_id() -> None:
    replica = "10.0.0.1:7946#cafef00d"
    stored = StoredState(replica, CounterState.from_maps({replica: 5}))
    store = FakeStore(stored)
    async with make_node(store=store) as node:
        assert node.replica_id == replica
        assert node.increment() == 6
        assert node.contribution == 6
    assert store.calls == ["open", "close"]


async def test_stored_replica_id_that_contradicts_the_config_is_refused() -> None:
    store = FakeStore(StoredState("a#1", CounterState.empty()))
    node = make_node(config=fast_config(replica_id="b#2"), store=store)
    with pytest.raises(ForeignStorageError):
        await node.start()
    assert node.closed
    assert store.calls == ["open", "close"]


@pytest.mark.parametrize(("previous", "after"), [("fixed", "fixed#2"), ("fixed#2", "fixed#3")])
async def test_a_fixed_id_takes_its_next_incarnation_after_an_unclean_shutdown(
    previous: str, after: str
) -> None:
    # Peers may hold more for `previous` than the store kept: its next writes must count
    # under an id no one has counted under yet.
    stored = StoredState(previous, CounterState.from_maps({previous: 5}), clean_shutdown=False)
    store = FakeStore(stored)
    async with make_node(config=fast_config(replica_id="fixed"), store=store) as node:
        assert (node.replica_id, store.bound) == (after, after)
        assert node.increment() == 6
        assert node.state() == CounterState.from_maps({previous: 5, after: 1})


async def test_a_fixed_id_resumes_its_latest_incarnation_after_a_clean_shutdown() -> None:
    stored = StoredState("fixed#3", CounterState.from_maps({"fixed": 2, "fixed#3": 1}))
    store = FakeStore(stored)
    async with make_node(config=fast_config(replica_id="fixed"), store=store) as node:
        assert node.replica_id == "fixed#3"
    assert store.calls == ["open", "close"]


@pytest.mark.parametrize("stored_id", ["fixed#1", "fixed#02", "fixed#x", "fixed2", "fixed#2#3"])
async def test_a_stored_id_outside_the_fixed_ids_series_is_refused(stored_id: str) -> None:
    store = FakeStore(StoredState(stored_id, CounterState.empty(), clean_shutdown=False))
    node = make_node(config=fast_config(replica_id="fixed"), store=store)
    with pytest.raises(ForeignStorageError):
        await node.start()
    assert node.closed


async def test_a_fixed_id_without_room_for_an_incarnation_number_is_refused() -> None:
    longest = "r" * 255
    store = FakeStore(StoredState(longest, CounterState.empty(), clean_shutdown=False))
    node = make_node(config=fast_config(replica_id=longest), store=store)
    with pytest.raises(ConfigError, match="no room for the incarnation number"):
        await node.start()
    assert node.closed
    assert store.bound is None


async def test_commit_without_a_store_returns_at_once() -> None:
    async with make_node() as node:
        node.increment()
        await node.commit()


async def test_failed_start_leaves_the_node_closed_and_the_store_released() -> None:
    network = MemoryNetwork()
    transport = network.transport(HERE)
    await transport.close()
    store = FakeStore()
    node = Node(transport, fast_config(), store=store)
    with pytest.raises(TransportClosedError):
        await node.start()
    assert node.closed
    # The transport listens before the store opens (see Node.before_open): never opened.
    assert "open" not in store.calls


class GatedStore(FakeStore):
    """A store whose open() waits until the test lets it finish."""

    def __init__(self) -> None:
        super().__init__()
        self.opening = asyncio.Event()
        self.gate = asyncio.Event()

    async def open(self) -> StoredState | None:
        self.opening.set()
        await self.gate.wait()
        return await super().open()


async def test_close_during_start_leaves_the_node_closed() -> None:
    network = MemoryNetwork()
    store = GatedStore()
    node = make_node(network, store=store)
    starting = asyncio.ensure_future(node.start())
    await store.opening.wait()
    await node.close()
    store.gate.set()
    with pytest.raises(NodeClosedError):
        await starting
    assert node.closed
    probe = network.transport(address(9))
    with pytest.raises(ConnectError):
        await probe.send(HERE, b"\x00")
    await probe.close()


class HeldCommitStore(FakeStore):
    """A store whose commit() waits until the test lets it finish."""

    def __init__(self) -> None:
        super().__init__()
        self.committing = asyncio.Event()
        self.release = asyncio.Event()

    async def commit(self) -> None:
        self.committing.set()
        await self.release.wait()
        await super().commit()


async def test_pushes_wait_until_their_counts_are_durable() -> None:
    network = MemoryNetwork()
    received: asyncio.Queue[bytes] = asyncio.Queue()

    async def on_message(sender: str, payload: bytes) -> None:
        received.put_nowait(payload)

    peer = network.transport(address(1))
    await peer.listen(on_message)
    store = HeldCommitStore()
    node = make_node(
        network, fast_config(sync_interval=60.0), peers=PeerManager(HERE, [address(1)]), store=store
    )
    await node.start()
    try:
        node.increment(4)
        await asyncio.wait_for(store.committing.wait(), timeout=5)
        assert received.empty()
        assert store.commits == 0
        store.release.set()
        payload = await asyncio.wait_for(received.get(), timeout=5)
        assert decode_message(payload).state() == CounterState.from_maps({node.replica_id: 4})
        assert store.commits >= 1
    finally:
        store.release.set()
        await node.close()
        await peer.close()

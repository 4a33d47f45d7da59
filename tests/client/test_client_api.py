"""The client API against a real node (and a scripted fake one for what a node never does).

Each test runs with the async client and with the sync one (see conftest.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import pytest

from dcounter_client import (
    CounterSnapshot,
    IndeterminateError,
    InvalidArgumentError,
    NodeHealth,
    RejectedError,
    ResponseError,
    UnavailableError,
)

if TYPE_CHECKING:
    from tests.client.conftest import FakeNode, MakeClient, StartNode

pytestmark = pytest.mark.slow

#: Bound for one test step that normally takes a fraction of a second.
STEP = 30.0


async def test_writes_return_the_new_value_and_reads_agree(
    start_node: StartNode, make_client: MakeClient
) -> None:
    node = await start_node()
    client = make_client(node.url)
    assert await client.increment() == 1
    assert await client.increment(5) == 6
    assert await client.decrement(2) == 4
    assert await client.decrement() == 3
    assert await client.value() == 3
    snapshot = await client.counter()
    replica = node.replica
    assert snapshot == CounterSnapshot(3, replica, {replica: 6}, {replica: 3}, node.url)


async def test_the_same_key_five_times_counts_once(
    start_node: StartNode, make_client: MakeClient
) -> None:
    node = await start_node()
    client = make_client(node.url)
    answers = [await client.increment(7, key="order-42") for _ in range(5)]
    assert answers == [7] * 5
    assert await client.decrement(2) == 5  # a new key: counted
    assert (await client.counter()).increments == {node.replica: 7}


async def test_a_key_reused_for_another_amount_is_rejected(
    start_node: StartNode, make_client: MakeClient
) -> None:
    node = await start_node()
    client = make_client(node.url)
    await client.increment(1, key="k")
    with pytest.raises(RejectedError) as caught:
        await client.increment(2, key="k")
    assert caught.value.status == 422
    assert "Idempotency-Key" in caught.value.message
    assert await client.value() == 1


async def test_an_overflowing_write_is_rejected_with_the_nodes_message(
    start_node: StartNode, make_client: MakeClient
) -> None:
    node = await start_node()
    client = make_client(node.url)
    await client.increment()
    with pytest.raises(RejectedError) as caught:
        await client.increment(2**64 - 1)
    assert (caught.value.status, caught.value.node) == (409, node.url)
    assert "exceed the maximum count" in caught.value.message
    assert await client.value() == 1


@pytest.mark.parametrize("by", [0, -1, 2**64, True, 1.0, "1"])
async def test_a_bad_amount_is_refused_before_anything_is_sent(
    fake_node: FakeNode, make_client: MakeClient, by: object
) -> None:
    client = make_client(fake_node.url)
    with pytest.raises(InvalidArgumentError):
        await client.increment(by)  # type: ignore[arg-type]
    assert fake_node.requests == []


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9", "a\nb"])
async def test_a_bad_key_is_refused_before_anything_is_sent(
    fake_node: FakeNode, make_client: MakeClient, key: str
) -> None:
    client = make_client(fake_node.url)
    with pytest.raises(InvalidArgumentError):
        await client.decrement(key=key)
    assert fake_node.requests == []


@pytest.mark.parametrize("urls", [[], ["ftp://host:1"], ["http://"], ["a:1", "http://a:1"]])
def test_bad_urls_are_refused(make_client: MakeClient, urls: list[str]) -> None:
    with pytest.raises(InvalidArgumentError):
        make_client(urls)


async def test_every_request_carries_the_token(
    fake_node: FakeNode, make_client: MakeClient
) -> None:
    client = make_client(fake_node.url, token="s3cret")
    await client.increment()
    await client.value()
    await client.health()
    assert [r.headers.get("Authorization") for r in fake_node.requests] == ["Bearer s3cret"] * 3


async def test_without_a_token_no_authorization_is_sent(
    fake_node: FakeNode, make_client: MakeClient
) -> None:
    client = make_client(fake_node.url)
    await client.increment()
    assert "Authorization" not in fake_node.requests[0].headers


async def test_a_write_answered_5xx_is_retried_on_the_same_node_with_the_same_key(
    fake_node: FakeNode, make_client: MakeClient, refused_url: str
) -> None:
    fake_node.answers = [(503, {"error": "change not persisted"})] * 2 + [(200, {"value": 9})]
    client = make_client([fake_node.url, refused_url], backoff=0.01)
    assert await client.increment(3) == 9
    keys = {r.headers["Idempotency-Key"] for r in fake_node.requests}
    assert len(fake_node.requests) == 3
    assert len(keys) == 1
    assert all(r.path == "/increment" for r in fake_node.requests)


async def test_each_logical_write_gets_its_own_key(
    fake_node: FakeNode, make_client: MakeClient
) -> None:
    client = make_client(fake_node.url)
    await client.increment()
    await client.increment()
    await client.decrement()
    keys = {r.headers["Idempotency-Key"] for r in fake_node.requests}
    assert len(keys) == 3


async def test_a_write_still_failing_5xx_at_the_end_is_indeterminate(
    fake_node: FakeNode, make_client: MakeClient
) -> None:
    fake_node.answers = [(503, {"error": "node is shutting down"})] * 10
    client = make_client(fake_node.url, retries=3, backoff=0.01)
    with pytest.raises(IndeterminateError) as caught:
        await client.decrement(4)
    error = caught.value
    assert (error.node, error.operation, error.by) == (fake_node.url, "decrement", 4)
    assert error.key == fake_node.requests[0].headers["Idempotency-Key"]
    assert "node is shutting down" in error.reason
    assert len(fake_node.requests) == 4  # the first attempt and 3 retries


async def test_a_malformed_success_is_a_response_error(
    fake_node: FakeNode, make_client: MakeClient
) -> None:
    fake_node.answers = [(200, {"valeur": 1})]
    client = make_client(fake_node.url)
    with pytest.raises(ResponseError):
        await client.increment()


async def test_an_undecodable_answer_is_a_response_error(
    fake_node: FakeNode, make_client: MakeClient
) -> None:
    fake_node.garble = True
    client = make_client(fake_node.url)
    with pytest.raises(ResponseError):
        await client.value()


async def test_no_node_answering_is_unavailable(make_client: MakeClient, refused_url: str) -> None:
    client = make_client(refused_url, retries=2, backoff=0.01)
    with pytest.raises(UnavailableError) as caught:
        await client.increment()
    assert list(caught.value.errors) == [refused_url]
    assert "ConnectError" in caught.value.errors[refused_url]


async def test_health_reports_every_node(
    start_node: StartNode, make_client: MakeClient, refused_url: str
) -> None:
    node = await start_node()
    client = make_client([refused_url, node.url])
    down, up = await client.health()
    assert up == NodeHealth(node.url, True, "ok")
    assert (down.node, down.ok) == (refused_url, False)
    assert "ConnectError" in down.status


async def test_watch_yields_the_value_then_each_change(
    start_node: StartNode, make_client: MakeClient
) -> None:
    node = await start_node()
    client = make_client(node.url)
    await client.increment(2)
    seen: list[int] = []
    async with asyncio.timeout(STEP), contextlib.aclosing(client.watch()) as values:
        async for value in values:
            seen.append(value)
            if value == 2:
                await client.increment()
            elif value == 3:
                await client.decrement(3)
            else:
                break
    assert seen == [2, 3, 0]


async def test_peers_are_managed_on_the_first_node_only(
    start_node: StartNode, make_client: MakeClient
) -> None:
    first, second = await start_node(), await start_node()
    client = make_client([first.url, second.url])
    assert await client.peers() == []
    assert await client.add_peer(second.gossip) is True
    assert await client.add_peer(second.gossip) is False
    assert await client.peers() == [second.gossip]
    assert await make_client(second.url).peers() == []
    assert await client.remove_peer(second.gossip) is True
    assert await client.remove_peer(second.gossip) is False
    assert await client.peers() == []


async def test_a_bad_peer_address_is_rejected_by_the_node(
    start_node: StartNode, make_client: MakeClient
) -> None:
    node = await start_node()
    client = make_client(node.url)
    with pytest.raises(RejectedError) as caught:
        await client.add_peer("not an address")
    assert caught.value.status == 400

"""Named counters through the client (issue 20), against a real node and a scripted fake.

Each test runs with the async client and with the sync one (see conftest.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import pytest

from dcounter_client import CounterPage, CounterSnapshot, InvalidArgumentError, RejectedError

if TYPE_CHECKING:
    from tests.client.conftest import FakeNode, MakeClient, StartNode

#: Bound for one test step that normally takes a fraction of a second.
STEP = 30.0


@pytest.mark.slow
async def test_named_counters_count_apart_from_the_default(
    start_node: StartNode, make_client: MakeClient
) -> None:
    node = await start_node()
    client = make_client(node.url)
    assert await client.increment(5, name="pages/home") == 5
    assert await client.decrement(2, name="pages/home") == 3
    assert await client.increment(name="stock 42") == 1
    assert await client.increment() == 1  # the default counter

    assert await client.value("pages/home") == 3
    assert await client.value("never counted") == 0
    assert await client.value() == 1
    replica = node.replica
    assert await client.counter("pages/home") == CounterSnapshot(
        3, replica, {replica: 5}, {replica: 2}, node.url
    )


@pytest.mark.slow
async def test_counters_pages_through_names(start_node: StartNode, make_client: MakeClient) -> None:
    node = await start_node()
    client = make_client(node.url)
    for name in ("b/2", "a", "b/1", "b/3"):
        await client.increment(name=name)

    first = await client.counters("b/", limit=2)
    assert first == CounterPage({"b/1": 1, "b/2": 1}, "b/2", node.url)
    rest = await client.counters("b/", after=first.next, limit=2)
    assert rest == CounterPage({"b/3": 1}, None, node.url)
    assert list((await client.counters()).counters) == ["a", "b/1", "b/2", "b/3"]


@pytest.mark.slow
async def test_a_key_counts_a_named_write_once(
    start_node: StartNode, make_client: MakeClient
) -> None:
    node = await start_node()
    client = make_client(node.url)
    answers = [await client.increment(7, key="order-1", name="x") for _ in range(3)]
    assert answers == [7, 7, 7]
    with pytest.raises(RejectedError) as caught:
        await client.increment(7, key="order-1", name="y")
    assert caught.value.status == 422


@pytest.mark.slow
async def test_watch_follows_one_named_counter(
    start_node: StartNode, make_client: MakeClient
) -> None:
    node = await start_node()
    client = make_client(node.url)
    await client.increment(2, name="a/b")
    async with asyncio.timeout(STEP), contextlib.aclosing(client.watch("a/b")) as values:
        assert await anext(values) == 2
        await client.increment(name="other")
        await client.decrement(5, name="a/b")
        assert await anext(values) == -3


async def test_names_are_sent_as_one_percent_encoded_segment(
    fake_node: FakeNode, make_client: MakeClient
) -> None:
    client = make_client(fake_node.url)
    await client.increment(name="a/b c%")
    await client.value("ü?#")
    await client.increment()
    await client.value()
    paths = [request.raw_path for request in fake_node.requests]
    assert paths == [
        "/counters/a%2Fb%20c%25/increment",
        "/counters/%C3%BC%3F%23",
        "/increment",  # the default counter keeps the routes every node serves
        "/counter",
    ]


async def test_the_list_query_is_encoded(fake_node: FakeNode, make_client: MakeClient) -> None:
    fake_node.answers = [(200, {"counters": [{"name": "a&b", "value": -1}], "next": "a&b"})]
    client = make_client(fake_node.url)
    page = await client.counters("a&", after="a", limit=1)
    assert page == CounterPage({"a&b": -1}, "a&b", fake_node.url)
    assert fake_node.requests[0].raw_path == "/counters?prefix=a%26&limit=1&after=a"


@pytest.mark.parametrize("name", ["", "\ud800", 7])
async def test_a_bad_name_is_refused_before_anything_is_sent(
    fake_node: FakeNode, make_client: MakeClient, name: object
) -> None:
    client = make_client(fake_node.url)
    with pytest.raises(InvalidArgumentError, match="counter name"):
        await client.increment(name=name)  # type: ignore[arg-type]
    assert fake_node.requests == []


@pytest.mark.parametrize("limit", [0, 1001, True])
async def test_a_bad_limit_is_refused_before_anything_is_sent(
    fake_node: FakeNode, make_client: MakeClient, limit: int
) -> None:
    client = make_client(fake_node.url)
    with pytest.raises(InvalidArgumentError, match="limit"):
        await client.counters(limit=limit)
    assert fake_node.requests == []

"""``members()``: the first node's member list, as ``GET /members`` gives it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from dcounter_client import Member, ResponseError
from dcounter_client._answers import parse_members
from dcounter_node.testing import wait_until

if TYPE_CHECKING:
    from tests.client.conftest import MakeClient, StartNode

FREE = ("--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--in-memory")


@pytest.mark.slow
async def test_members_lists_the_first_nodes_view(
    start_node: StartNode, make_client: MakeClient
) -> None:
    seed = await start_node(*FREE, "--probe-interval", "0.2")
    joiner = await start_node(*FREE, "--probe-interval", "0.2", "--join", seed.gossip)
    client = make_client([joiner.url, seed.url])
    members: list[Member] = []

    async def both_alive() -> bool:
        members[:] = await client.members()
        return [(m.address, m.state) for m in members] == sorted(
            [(seed.gossip, "alive"), (joiner.gossip, "alive")]
        )

    await wait_until(both_alive, within=60.0, what=lambda: f"both alive; listed {members}")
    mine = next(m for m in members if m.address == joiner.gossip)
    assert mine.replica == joiner.replica
    assert mine.incarnation == 0
    assert mine.since > 0


def test_a_member_list_is_parsed_into_members() -> None:
    body = (
        b'{"members": [{"address": "a:1", "replica": "a:1#r", "state": "suspect",'
        b' "incarnation": 2, "since": 17}]}'
    )
    assert parse_members("http://n", 200, body) == [Member("a:1", "a:1#r", "suspect", 2, 17.0)]


@pytest.mark.parametrize(
    "body",
    [
        b'{"peers": []}',
        b'{"members": {}}',
        b'{"members": [{"address": "a:1"}]}',
        b'{"members": [{"address": "a:1", "replica": "r", "state": "gone", "incarnation": 0,'
        b' "since": 1}]}',
        b'{"members": [{"address": "a:1", "replica": "r", "state": "alive", "incarnation": -1,'
        b' "since": 1}]}',
        b'{"members": [{"address": "a:1", "replica": "r", "state": "alive", "incarnation": 0,'
        b' "since": "now"}]}',
    ],
)
def test_an_unexpected_member_list_is_a_response_error(body: bytes) -> None:
    with pytest.raises(ResponseError, match="unexpected member list"):
        parse_members("http://n", 200, body)

"""The client's ``token`` against a node that checks API tokens (issue 13).

Each test runs with the async client and with the sync one (see conftest.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from dcounter_client import RejectedError

if TYPE_CHECKING:
    from pathlib import Path

    from tests.client.conftest import MakeClient, StartNode

    from dcounter_node.testing import NodeProcess

pytestmark = pytest.mark.slow

READ = "client-read-4b8e1f0c6d2a"
WRITE = "client-write-7c3a9e5d1f0b"
ADMIN = "client-admin-2e6c0a4f8d1b"


@pytest.fixture
async def node(start_node: StartNode, tmp_path: Path) -> NodeProcess:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"read {READ}\nwrite {WRITE}\nadmin {ADMIN}\n")
    return await start_node(
        "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--in-memory",
        "--api-tokens", str(tokens),
    )  # fmt: skip


async def test_a_write_token_writes_and_reads(node: NodeProcess, make_client: MakeClient) -> None:
    client = make_client(node.url, token=WRITE)
    assert await client.increment(4) == 4
    assert await client.decrement() == 3
    assert await client.value() == 3


async def test_no_token_is_rejected_with_401(node: NodeProcess, make_client: MakeClient) -> None:
    client = make_client(node.url)
    with pytest.raises(RejectedError) as caught:
        await client.value()
    assert caught.value.status == 401
    assert "API token" in caught.value.message


async def test_an_unknown_token_is_rejected_with_401(
    node: NodeProcess, make_client: MakeClient
) -> None:
    client = make_client(node.url, token="guessed-token")
    with pytest.raises(RejectedError) as caught:
        await client.increment()
    assert caught.value.status == 401


async def test_a_read_token_reads_and_its_writes_are_rejected_with_403(
    node: NodeProcess, make_client: MakeClient
) -> None:
    client = make_client(node.url, token=READ)
    assert await client.value() == 0
    with pytest.raises(RejectedError) as caught:
        await client.increment()
    assert caught.value.status == 403
    assert "write scope" in caught.value.message
    assert await client.value() == 0


async def test_peers_need_an_admin_token(node: NodeProcess, make_client: MakeClient) -> None:
    writer = make_client(node.url, token=WRITE)
    with pytest.raises(RejectedError) as caught:
        await writer.add_peer("127.0.0.1:9")
    assert caught.value.status == 403
    admin = make_client(node.url, token=ADMIN)
    assert await admin.add_peer("127.0.0.1:9")
    assert await writer.peers() == ["127.0.0.1:9"]
    assert await admin.remove_peer("127.0.0.1:9")


async def test_watch_carries_the_token(node: NodeProcess, make_client: MakeClient) -> None:
    client = make_client(node.url, token=READ)
    values = client.watch()
    assert await anext(values) == 0
    await values.aclose()

"""The HTTP API of named counters (issue 20): /counters, /counters/{name}[/...]."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pytest
from yarl import URL

from dcounter_node import NodeConfig, _storage_database
from dcounter_node._auth import ROUTE_SCOPES, ApiTokens, Scope
from dcounter_node._storage_named import upsert_named
from dcounter_node._storage_sqlite import SQLiteStore
from dcounter_node.testing import wait_until

if TYPE_CHECKING:
    from pathlib import Path

    import aiohttp
    from tests.service.conftest import Api, ApiFactory

DEADLINE = 10.0
WRITER = "writer-token-0123456789"


async def count(api: Api, name: str, op: str = "increment", by: int = 1, **kw: Any) -> Any:
    """One write to counter ``name`` (percent-encoded here), which must succeed."""
    url = URL(f"{api.url}/counters/{quote(name, safe='')}/{op}", encoded=True)
    async with api.session.post(url, json={"by": by}, **kw) as response:
        status, body = response.status, await response.json()
    assert status == 200, body
    return body


async def get(api: Api, path: str) -> Any:
    status, body, _ = await api.request("GET", path)
    assert status == 200, body
    return body


# -- one counter ------------------------------------------------------------------------------


async def test_a_named_counter_counts_apart_from_the_default(api: Api) -> None:
    assert await count(api, "pages", by=5) == {"value": 5}
    assert await count(api, "pages", "decrement", by=2) == {"value": 3}
    assert await count(api, "stock") == {"value": 1}

    body = await get(api, "/counters/pages")
    replica = api.node.replica_id
    assert body == {
        "name": "pages",
        "value": 3,
        "replica": replica,
        "increments": {replica: 5},
        "decrements": {replica: 2},
    }
    assert await api.value() == 0  # /counter is still the default counter


async def test_a_name_never_counted_reads_zero(api: Api) -> None:
    body = await get(api, "/counters/nothing-here")
    assert (body["value"], body["increments"], body["decrements"]) == (0, {}, {})


async def test_default_is_the_counter_of_the_old_routes(api: Api) -> None:
    await api.request("POST", "/increment", json={"by": 4})
    assert (await get(api, "/counters/default"))["value"] == 4
    assert await count(api, "default", by=1) == {"value": 5}
    assert await api.value() == 5


async def test_a_body_is_optional_and_checked_as_for_increment(api: Api) -> None:
    status, body, _ = await api.request("POST", "/counters/a/increment")
    assert (status, body) == (200, {"value": 1})
    status, body, _ = await api.request("POST", "/counters/a/increment", json={"by": 0})
    assert status == 400
    assert '"by" must be an integer' in body["error"]
    status, body, _ = await api.request("POST", "/counters/a/increment", json={"bye": 1})
    assert (status, body["error"]) == (400, "unknown field(s) in body: bye")


# -- names in paths ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "encoded"),
    [
        ("a/b", "a%2Fb"),
        ("with space", "with%20space"),
        ("ünï", "%C3%BC%6E%C3%AF"),
        ("100%", "100%25"),
        ("q?x#y", "q%3Fx%23y"),
        ("a+b", "a+b"),
        ("..", "%2E%2E"),
    ],
)
async def test_names_are_percent_encoded_path_segments(api: Api, name: str, encoded: str) -> None:
    url = URL(f"{api.url}/counters/{encoded}/increment", encoded=True)
    async with api.session.post(url, json={"by": 3}) as response:
        assert response.status == 200, await response.text()
    assert api.node.counters.value(name) == 3
    async with api.session.get(URL(f"{api.url}/counters/{encoded}", encoded=True)) as response:
        assert (await response.json())["name"] == name


async def test_an_escape_that_is_not_utf8_is_refused(api: Api) -> None:
    url = URL(f"{api.url}/counters/%FF/increment", encoded=True)
    async with api.session.post(url) as response:
        assert response.status == 400
        assert "percent-encoded UTF-8" in (await response.json())["error"]
    assert len(api.node.counters) == 0


async def test_an_unencoded_slash_is_another_path(api: Api) -> None:
    status, body, _ = await api.request("POST", "/counters/a/b/increment")
    assert status == 404
    assert "not found" in body["error"]


async def test_a_name_over_the_length_limit_is_a_400(make_api: ApiFactory) -> None:
    api = await make_api(config=NodeConfig(max_key_length=8))
    assert await count(api, "12345678") == {"value": 1}
    for method, path in (("POST", "/counters/123456789/increment"), ("GET", "/counters/ééééé")):
        status, body, _ = await api.request(method, path)
        assert status == 400
        assert "at most 8" in body["error"]


async def test_a_new_name_past_the_key_limit_is_a_409_and_counts_nothing(
    make_api: ApiFactory,
) -> None:
    api = await make_api(config=NodeConfig(max_keys=2))
    await count(api, "a")
    await count(api, "b")
    status, body, _ = await api.request("POST", "/counters/c/increment")
    assert status == 409
    assert "new name 'c'" in body["error"]
    assert await count(api, "a") == {"value": 2}  # known names still count
    assert api.node.counters.names() == ["a", "b"]


# -- idempotency ------------------------------------------------------------------------------


async def test_an_idempotency_key_counts_a_named_write_once(api: Api) -> None:
    headers = {"Idempotency-Key": "order-7"}
    assert await count(api, "stock", "decrement", 3, headers=headers) == {"value": -3}
    status, body, response = await api.request(
        "POST", "/counters/stock/decrement", json={"by": 3}, headers=headers
    )
    assert (status, body) == (200, {"value": -3})
    assert response.headers["Idempotent-Replayed"] == "true"
    assert api.node.counters.value("stock") == -3


async def test_an_idempotency_key_reused_on_another_counter_is_a_422(api: Api) -> None:
    headers = {"Idempotency-Key": "k"}
    await count(api, "a", headers=headers)
    for path in ("/counters/b/increment", "/increment"):
        status, body, _ = await api.request("POST", path, json={"by": 1}, headers=headers)
        assert status == 422
        assert "different request" in body["error"]
    assert (api.node.counters.value("b"), await api.value()) == (0, 0)


# -- listing ----------------------------------------------------------------------------------


async def test_list_pages_through_names_with_values(api: Api) -> None:
    for i, name in enumerate(["b/2", "a", "b/1", "b/3", "c"]):
        await count(api, name, by=i + 1)

    first = await get(api, "/counters?prefix=b/&limit=2")
    assert first == {
        "counters": [{"name": "b/1", "value": 3}, {"name": "b/2", "value": 1}],
        "next": "b/2",
    }
    rest = await get(api, f"/counters?prefix=b/&limit=2&after={first['next']}")
    assert rest == {"counters": [{"name": "b/3", "value": 4}], "next": None}
    everything = await get(api, "/counters")
    assert [c["name"] for c in everything["counters"]] == ["a", "b/1", "b/2", "b/3", "c"]
    assert everything["next"] is None


async def test_list_includes_the_default_counter_once_it_counted(api: Api) -> None:
    await count(api, "x")
    assert [c["name"] for c in (await get(api, "/counters"))["counters"]] == ["x"]
    await api.request("POST", "/increment")
    assert (await get(api, "/counters"))["counters"] == [
        {"name": "default", "value": 1},
        {"name": "x", "value": 1},
    ]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("limit=0", "limit must be an integer from 1 to 1000"),
        ("limit=1001", "limit must be an integer from 1 to 1000"),
        ("limit=ten", "limit must be an integer from 1 to 1000"),
        ("cursor=a", "unknown query parameter(s): cursor"),
    ],
)
async def test_list_refuses_bad_parameters(api: Api, query: str, message: str) -> None:
    status, body, _ = await api.request("GET", f"/counters?{query}")
    assert (status, body["error"].startswith(message)) == (400, True), body


# -- watch ------------------------------------------------------------------------------------


async def next_value(response: aiohttp.ClientResponse) -> int:
    """The value of the stream's next data event (keepalive comments skipped)."""
    while True:
        line = await asyncio.wait_for(response.content.readline(), DEADLINE)
        assert line, "the stream ended"
        if line.startswith(b"data: "):
            value = json.loads(line[len(b"data: ") :])["value"]
            assert isinstance(value, int)
            return value


async def test_watch_streams_one_counter(api: Api) -> None:
    await count(api, "a/b", by=2)
    url = URL(f"{api.url}/counters/a%2Fb/watch", encoded=True)
    async with api.session.get(url) as response:
        assert response.content_type == "text/event-stream"
        assert await next_value(response) == 2
        await count(api, "other")  # another counter: no event
        await api.request("POST", "/increment")
        await count(api, "a/b", "decrement", by=5)
        assert await next_value(response) == -3


# -- auth, HEAD, storage ----------------------------------------------------------------------


def test_reads_need_the_read_scope_and_writes_the_write_scope() -> None:
    assert ROUTE_SCOPES["/counters"] == {"GET": Scope.READ}
    assert ROUTE_SCOPES["/counters/{name}"] == {"GET": Scope.READ}
    assert ROUTE_SCOPES["/counters/{name}/watch"] == {"GET": Scope.READ}
    assert ROUTE_SCOPES["/counters/{name}/increment"] == {"POST": Scope.WRITE}
    assert ROUTE_SCOPES["/counters/{name}/decrement"] == {"POST": Scope.WRITE}


async def test_tokens_guard_the_named_routes(make_api: ApiFactory) -> None:
    tokens = ApiTokens([(Scope.READ, "reader-token-0123456789"), (Scope.WRITE, WRITER)])
    api = await make_api(tokens=tokens)
    reader = {"Authorization": "Bearer reader-token-0123456789"}
    writer = {"Authorization": f"Bearer {WRITER}"}
    assert (await api.request("GET", "/counters/a"))[0] == 401
    assert (await api.request("GET", "/counters/a", headers=reader))[0] == 200
    assert (await api.request("POST", "/counters/a/increment", headers=reader))[0] == 403
    assert (await api.request("POST", "/counters/a/increment", headers=writer))[0] == 200


async def test_wrong_methods_are_a_405(api: Api) -> None:
    status, _, response = await api.request("DELETE", "/counters/a")
    assert (status, response.headers["Allow"]) == (405, "GET, HEAD")
    status, _, response = await api.request("GET", "/counters/a/increment")
    assert (status, response.headers["Allow"]) == (405, "POST")


async def test_while_storage_fails_reads_show_committed_counts_only(
    make_api: ApiFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deny = threading.Event()

    def failing(conn: sqlite3.Connection, counts: Any) -> None:
        if deny.is_set():
            raise sqlite3.OperationalError("database or disk is full")
        upsert_named(conn, counts)

    monkeypatch.setattr(_storage_database, "upsert_named", failing)
    store = SQLiteStore(tmp_path / "state.sqlite3")
    api = await make_api(store=store, storage=store, key_journal=store)
    await count(api, "a", by=2)
    deny.set()
    # The node counts it, but the commit fails: the client is told, and reads hide it.
    status, body, _ = await api.request("POST", "/counters/a/increment", json={"by": 5})
    assert (status, "not persisted" in body["error"]) == (503, True)
    assert api.node.counters.value("a") == 7
    assert (await get(api, "/counters/a"))["value"] == 2
    assert (await get(api, "/counters"))["counters"] == [{"name": "a", "value": 2}]
    status, body, _ = await api.request("POST", "/counters/a/increment")
    assert (status, "storage is failing" in body["error"]) == (503, True)

    deny.clear()

    await wait_until(lambda: store.problem is None, what="storage to recover")
    assert (await get(api, "/counters/a"))["value"] == 7

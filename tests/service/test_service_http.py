"""The node's HTTP API against a real server on a free loopback port."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dcounter_node._http import DEFAULT_MAX_BODY
from dcounter_protocol import Push, encode_frame, encode_message

if TYPE_CHECKING:
    import aiohttp
    from tests.conftest import WaitUntil
    from tests.service.conftest import Api, ApiFactory

    from dcounter_crdt import CounterMapState, CounterState
    from dcounter_node._storage import StoredState

MAX = 2**64 - 1


class GatedStore:
    """A StateStore whose commit() waits until the test opens the gate."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.waiting = 0

    async def open(self) -> StoredState | None:
        return None

    async def bind(self, replica_id: str) -> None:
        return None

    def stage(self, changes: CounterState) -> None:
        return None

    def stage_named(self, changes: CounterMapState) -> None:
        return None

    async def commit(self) -> None:
        self.waiting += 1
        try:
            await self.gate.wait()
        finally:
            self.waiting -= 1

    async def close(self) -> None:
        self.gate.set()


# -- GET /counter ------------------------------------------------------------------------------


async def test_counter_of_a_new_node_is_zero_with_its_replica_id(api: Api) -> None:
    status, body, _ = await api.request("GET", "/counter")
    assert status == 200
    assert body == {"value": 0, "replica": api.node.replica_id, "increments": {}, "decrements": {}}


async def test_counter_lists_per_replica_counts(api: Api) -> None:
    await api.request("POST", "/increment", json={"by": 7})
    await api.request("POST", "/decrement", json={"by": 2})
    _, body, _ = await api.request("GET", "/counter")
    replica = api.node.replica_id
    assert body == {
        "value": 5,
        "replica": replica,
        "increments": {replica: 7},
        "decrements": {replica: 2},
    }


# -- POST /increment, /decrement ---------------------------------------------------------------


async def test_increment_with_empty_body_adds_one(api: Api) -> None:
    status, body, response = await api.request("POST", "/increment")
    assert (status, body) == (200, {"value": 1})
    assert response.content_type == "application/json"


async def test_empty_json_object_counts_one(api: Api) -> None:
    assert (await api.request("POST", "/decrement", json={}))[:2] == (200, {"value": -1})


async def test_increment_and_decrement_by_amounts_return_new_value(api: Api) -> None:
    assert (await api.request("POST", "/increment", json={"by": 10}))[:2] == (200, {"value": 10})
    assert (await api.request("POST", "/decrement", json={"by": 4}))[:2] == (200, {"value": 6})
    assert api.node.value == 6


async def test_largest_amount_is_accepted(api: Api) -> None:
    status, body, _ = await api.request("POST", "/increment", json={"by": MAX})
    assert (status, body) == (200, {"value": MAX})


async def test_overflowing_the_replica_count_is_409_and_counts_nothing(api: Api) -> None:
    await api.request("POST", "/increment", json={"by": MAX})
    status, body, _ = await api.request("POST", "/increment")
    assert status == 409
    assert body["error"].startswith("cannot increment by 1")
    assert await api.value() == MAX


@pytest.mark.parametrize(
    ("by", "shown"),
    [
        (0, "0"),
        (-1, "-1"),
        (2**64, str(2**64)),
        (1.0, "1.0"),
        ("3", '"3"'),
        (True, "true"),
        (None, "null"),
        ([1], "[1]"),
    ],
)
async def test_bad_amount_is_400_naming_it(api: Api, by: object, shown: str) -> None:
    status, body, _ = await api.request("POST", "/increment", json={"by": by})
    assert status == 400
    assert body == {"error": f'"by" must be an integer from 1 to 2**64-1, got {shown}'}
    assert api.node.value == 0


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"{", "body is not valid JSON"),
        (b"\xff\xfe\x00", "body is not valid JSON"),
        (b"[" * 50_000, "body is not valid JSON"),
        (b"[1]", "body must be a JSON object"),
        (b"5", "body must be a JSON object"),
        (b'{"by": 2, "extra": 1}', "unknown field(s) in body: extra"),
        (b'{"by": 1e999}', '"by" must be an integer from 1 to 2**64-1, got Infinity'),
    ],
)
async def test_malformed_body_is_400(api: Api, raw: bytes, error: str) -> None:
    status, body, _ = await api.request("POST", "/increment", data=raw)
    assert (status, body) == (400, {"error": error})
    assert api.node.value == 0


async def test_body_over_the_limit_is_413(api: Api) -> None:
    raw = b'{"by": 1' + b" " * DEFAULT_MAX_BODY + b"}"
    status, body, _ = await api.request("POST", "/increment", data=raw)
    assert status == 413
    assert body["error"].startswith(f"Maximum request body size {DEFAULT_MAX_BODY} exceeded")
    assert api.node.value == 0


async def test_increment_on_a_closed_node_is_503(api: Api) -> None:
    await api.node.close()
    status, body, _ = await api.request("POST", "/increment")
    assert status == 503
    assert body["error"].startswith("node is not running")


async def test_answer_waits_until_the_change_is_committed(
    make_api: ApiFactory, wait_until: WaitUntil
) -> None:
    store = GatedStore()
    api = await make_api(store=store)
    request = asyncio.ensure_future(api.request("POST", "/increment", json={"by": 2}))

    async def committing() -> bool:
        return store.waiting == 1

    await wait_until(committing, what="the commit to start")
    assert not request.done()
    store.gate.set()
    status, body, _ = await request
    assert (status, body) == (200, {"value": 2})


# -- Idempotency-Key ---------------------------------------------------------------------------


async def test_retry_with_same_idempotency_key_counts_once(api: Api) -> None:
    headers = {"Idempotency-Key": "order-1"}
    first = await api.request("POST", "/increment", json={"by": 3}, headers=headers)
    retry = await api.request("POST", "/increment", json={"by": 3}, headers=headers)
    assert first[:2] == retry[:2] == (200, {"value": 3})
    assert "Idempotent-Replayed" not in first[2].headers
    assert retry[2].headers["Idempotent-Replayed"] == "true"
    assert await api.value() == 3


async def test_retry_answers_the_first_value_even_after_other_changes(api: Api) -> None:
    headers = {"Idempotency-Key": "k"}
    await api.request("POST", "/increment", json={"by": 3}, headers=headers)
    await api.request("POST", "/increment", json={"by": 10})
    _, body, _ = await api.request("POST", "/increment", json={"by": 3}, headers=headers)
    assert body == {"value": 3}
    assert await api.value() == 13


async def test_different_keys_count_separately(api: Api) -> None:
    for key in ("a", "b"):
        await api.request("POST", "/increment", headers={"Idempotency-Key": key})
    assert await api.value() == 2


async def test_concurrent_duplicates_count_once(api: Api) -> None:
    headers = {"Idempotency-Key": "burst"}
    results = await asyncio.gather(
        *(api.request("POST", "/increment", json={"by": 5}, headers=headers) for _ in range(20))
    )
    assert {(status, json.dumps(body)) for status, body, _ in results} == {(200, '{"value": 5}')}
    assert await api.value() == 5


async def test_duplicate_of_a_request_in_flight_waits_and_counts_once(
    make_api: ApiFactory, wait_until: WaitUntil
) -> None:
    store = GatedStore()
    api = await make_api(store=store)
    headers = {"Idempotency-Key": "slow"}
    first = asyncio.ensure_future(
        api.request("POST", "/increment", json={"by": 4}, headers=headers)
    )
    second = asyncio.ensure_future(
        api.request("POST", "/increment", json={"by": 4}, headers=headers)
    )

    async def both_committing() -> bool:
        return store.waiting == 2

    await wait_until(both_committing, what="both requests to wait on the commit")
    assert api.node.value == 4
    store.gate.set()
    assert (await first)[:2] == (await second)[:2] == (200, {"value": 4})
    assert api.node.value == 4


async def test_same_key_with_another_amount_is_422(api: Api) -> None:
    headers = {"Idempotency-Key": "k"}
    await api.request("POST", "/increment", json={"by": 1}, headers=headers)
    status, body, _ = await api.request("POST", "/increment", json={"by": 2}, headers=headers)
    assert (status, body) == (
        422,
        {"error": "Idempotency-Key was already used for a different request"},
    )
    assert await api.value() == 1


async def test_same_key_on_the_other_operation_is_422(api: Api) -> None:
    headers = {"Idempotency-Key": "k"}
    await api.request("POST", "/increment", headers=headers)
    status, _, _ = await api.request("POST", "/decrement", headers=headers)
    assert status == 422
    assert await api.value() == 1


async def test_key_of_a_request_that_counted_nothing_is_forgotten(api: Api) -> None:
    await api.request("POST", "/increment", json={"by": MAX})
    headers = {"Idempotency-Key": "k"}
    assert (await api.request("POST", "/increment", headers=headers))[0] == 409
    # Remembered, the key would make this a 422; forgotten, it is a fresh request.
    assert (await api.request("POST", "/decrement", headers=headers))[:2] == (
        200,
        {"value": MAX - 1},
    )


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9"])
async def test_invalid_idempotency_key_is_400(api: Api, key: str) -> None:
    raw_headers = {"Idempotency-Key": key}
    status, body, _ = await api.request("POST", "/increment", headers=raw_headers)
    assert status == 400
    assert body == {"error": "Idempotency-Key must be 1 to 255 printable ASCII characters"}
    assert api.node.value == 0


async def test_keys_beyond_the_window_are_forgotten(make_api: ApiFactory) -> None:
    api = await make_api(idempotency_keys=2)
    for key in ("a", "b", "c", "a"):
        await api.request("POST", "/increment", headers={"Idempotency-Key": key})
    assert await api.value() == 4


# -- /peers ------------------------------------------------------------------------------------


async def test_peers_start_empty(api: Api) -> None:
    assert (await api.request("GET", "/peers"))[:2] == (200, {"peers": []})


async def test_adding_a_peer_is_201_then_200(api: Api) -> None:
    first = await api.request("POST", "/peers", json={"addr": "127.0.0.1:7001"})
    again = await api.request("POST", "/peers", json={"addr": "127.0.0.1:7001"})
    assert first[:2] == (201, {"peers": ["127.0.0.1:7001"]})
    assert again[:2] == (200, {"peers": ["127.0.0.1:7001"]})
    assert api.node.peers.peers() == ["127.0.0.1:7001"]


async def test_adding_the_node_itself_is_a_no_op(api: Api) -> None:
    status, body, _ = await api.request("POST", "/peers", json={"addr": api.node.address})
    assert (status, body) == (200, {"peers": []})


@pytest.mark.parametrize(
    "document",
    [
        {"addr": "nohost"},
        {"addr": "127.0.0.1:0"},
        {"addr": "::1:7000"},
        {"addr": 7000},
        {},
        {"addr": "127.0.0.1:7000", "port": 1},
    ],
)
async def test_adding_a_bad_peer_address_is_400(api: Api, document: dict[str, Any]) -> None:
    status, body, _ = await api.request("POST", "/peers", json=document)
    assert status == 400
    assert isinstance(body["error"], str)
    assert api.node.peers.peers() == []


async def test_removing_a_peer_lists_the_rest(api: Api) -> None:
    for addr in ("127.0.0.1:7001", "[::1]:7002"):
        await api.request("POST", "/peers", json={"addr": addr})
    status, body, _ = await api.request("DELETE", "/peers/%5B::1%5D:7002")
    assert (status, body) == (200, {"peers": ["127.0.0.1:7001"]})


async def test_removing_an_unknown_peer_is_404(api: Api) -> None:
    status, body, _ = await api.request("DELETE", "/peers/127.0.0.1:7009")
    assert (status, body) == (404, {"error": "unknown peer 127.0.0.1:7009"})


async def test_removing_a_malformed_peer_address_is_400(api: Api) -> None:
    status, _, _ = await api.request("DELETE", "/peers/not-an-address")
    assert status == 400


# -- routing and robustness --------------------------------------------------------------------


async def test_health_is_ok(api: Api) -> None:
    assert (await api.request("GET", "/health"))[:2] == (200, {"status": "ok"})


async def test_unknown_route_is_404_json(api: Api) -> None:
    status, body, _ = await api.request("GET", "/nope")
    assert (status, body) == (404, {"error": "not found: GET /nope"})


async def test_wrong_method_is_405_json_with_allow(api: Api) -> None:
    status, body, response = await api.request("GET", "/increment")
    assert status == 405
    assert body == {"error": "method GET not allowed on /increment (allowed: POST)"}
    assert response.headers["Allow"] == "POST"


async def test_get_routes_answer_head_too(api: Api) -> None:
    status, body, response = await api.request("HEAD", "/counter")
    assert (status, body) == (200, None)
    assert response.content_type == "application/json"


async def test_405_lists_every_allowed_method(api: Api) -> None:
    status, body, response = await api.request("PUT", "/peers")
    assert status == 405
    assert body == {"error": "method PUT not allowed on /peers (allowed: GET, HEAD, POST)"}
    assert response.headers["Allow"] == "GET, HEAD, POST"


async def test_nested_unknown_path_is_404_json(api: Api) -> None:
    status, body, _ = await api.request("POST", "/peers/127.0.0.1:1/extra")
    assert (status, body) == (404, {"error": "not found: POST /peers/127.0.0.1:1/extra"})


async def test_garbage_on_the_socket_does_not_hurt_the_server(api: Api) -> None:
    host, port = api.server.address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"\x00\x01GARBAGE \xff\r\n\r\n")
    await writer.drain()
    reply = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    await writer.wait_closed()
    assert reply.split(b"\r\n", 1)[0].endswith(b" 400 Bad Request")
    assert (await api.request("GET", "/health"))[0] == 200


# -- /metrics ----------------------------------------------------------------------------------


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_report_value_operations_and_peers(api: Api) -> None:
    await api.request("POST", "/increment", json={"by": 5})
    await api.request("POST", "/increment", headers={"Idempotency-Key": "k"})
    await api.request("POST", "/increment", headers={"Idempotency-Key": "k"})
    await api.request("POST", "/decrement", json={"by": 2})
    await api.request("POST", "/peers", json={"addr": "127.0.0.1:7001"})
    async with api.session.get(api.url + "/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        samples = _samples(await response.text())
    assert samples[("dcounter_value", ())] == 4
    assert samples[("dcounter_operations_total", (("op", "increment"),))] == 2
    assert samples[("dcounter_operations_total", (("op", "decrement"),))] == 1
    assert samples[("dcounter_operation_amount_total", (("op", "increment"),))] == 6
    assert samples[("dcounter_idempotent_replays_total", ())] == 1
    assert samples[("dcounter_peers", ())] == 1
    assert samples[("dcounter_replicas", ())] == 1
    responses = (("method", "POST"), ("route", "/increment"), ("status", "200"))
    assert samples[("dcounter_http_responses_total", responses)] == 3


async def test_metrics_speak_openmetrics_when_asked(api: Api) -> None:
    headers = {"Accept": "application/openmetrics-text; version=1.0.0"}
    async with api.session.get(api.url + "/metrics", headers=headers) as response:
        assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        text = await response.text()
    assert "dcounter_value 0.0\n" in text
    assert text.endswith("# EOF\n")


async def test_metrics_have_every_gossip_series(api: Api) -> None:
    async with api.session.get(api.url + "/metrics") as response:
        samples = _samples(await response.text())
    for name in ("dcounter_gossip_messages_total", "dcounter_gossip_bytes_total"):
        named = ("named_push", "named_pull", "named_buckets", "named_keys", "named_want")
        for kind in ("push", "digest_pull", "digest_ack", *named):
            for direction in ("sent", "received"):
                key = (name, (("direction", direction), ("type", kind)))
                assert samples[key] == 0
    for name in (
        "dcounter_merges_total",
        "dcounter_send_failures_total",
        "dcounter_pushes_rejected_total",
        "dcounter_forged_pushes_total",
        "dcounter_unknown_senders_total",
    ):
        assert samples[(name, ())] == 0
    for direction in ("inbound", "outbound"):
        assert samples[("dcounter_drops_total", (("direction", direction),))] == 0


async def test_metrics_count_gossip_between_two_nodes(
    make_api: ApiFactory, wait_until: WaitUntil
) -> None:
    a = await make_api()
    b = await make_api()
    a.node.peers.add(b.node.address)
    b.node.peers.add(a.node.address)
    await a.request("POST", "/increment", json={"by": 3})

    async def b_has_it() -> bool:
        return await b.value() == 3

    await wait_until(b_has_it, what="the increment to reach node b")
    async with a.session.get(a.url + "/metrics") as response:
        sent = _samples(await response.text())
    async with b.session.get(b.url + "/metrics") as response:
        received = _samples(await response.text())
    push = (("direction", "sent"), ("type", "push"))
    assert sent[("dcounter_gossip_messages_total", push)] >= 1
    assert sent[("dcounter_gossip_bytes_total", push)] > 0
    assert received[("dcounter_merges_changed_total", ())] >= 1


# -- /counter/watch ----------------------------------------------------------------------------


async def _next_event(response: aiohttp.ClientResponse) -> str:
    """The next SSE block (lines up to a blank line), without the trailing blank line."""
    lines: list[str] = []
    while True:
        line = await asyncio.wait_for(response.content.readline(), 10)
        if not line:
            return "\n".join(lines)  # end of stream
        if line == b"\n":
            return "\n".join(lines)
        lines.append(line.decode().rstrip("\n"))


async def test_watch_streams_current_value_then_changes(api: Api) -> None:
    await api.request("POST", "/increment", json={"by": 2})
    async with api.session.get(api.url + "/counter/watch") as response:
        assert response.status == 200
        assert response.content_type == "text/event-stream"
        assert await _next_event(response) == 'data: {"value": 2}'
        await api.request("POST", "/increment")
        assert await _next_event(response) == 'data: {"value": 3}'
        await api.request("POST", "/decrement", json={"by": 5})
        assert await _next_event(response) == 'data: {"value": -2}'


async def test_watch_sends_keepalive_comments_when_idle(make_api: ApiFactory) -> None:
    api = await make_api(keepalive=0.05)
    async with api.session.get(api.url + "/counter/watch") as response:
        assert await _next_event(response) == 'data: {"value": 0}'
        assert await _next_event(response) == ": keepalive"


async def test_server_shutdown_ends_open_watch_streams_promptly(api: Api) -> None:
    async with api.session.get(api.url + "/counter/watch") as response:
        assert await _next_event(response) == 'data: {"value": 0}'
        loop = asyncio.get_running_loop()
        started = loop.time()
        await api.server.close()
        assert loop.time() - started < 2.0
        assert await asyncio.wait_for(response.content.read(), 10) == b""


async def test_a_forged_push_for_the_nodes_own_replica_does_not_block_increments(
    api: Api, wait_until: WaitUntil
) -> None:
    # The attack: one small seed frame claiming inc[<the node's own replica>] = 2**64-1 made
    # every later increment fail with 409, for good (the count was stored).
    sender = "127.0.0.1:9"
    forged = Push(sender, {api.node.replica_id: MAX, "10.3.3.3:7946#1": 5}, None)
    host, port = api.node.address.rsplit(":", 1)
    _, writer = await asyncio.open_connection(host, int(port))
    writer.write(encode_frame(sender, encode_message(forged)))
    await writer.drain()
    writer.close()
    await writer.wait_closed()

    async def merged() -> bool:
        return api.node.stats.snapshot().merges == 1

    await wait_until(merged, what="the push to be handled")
    status, body, _ = await api.request("POST", "/increment")
    assert (status, body) == (200, {"value": 1 + 5})
    async with api.session.get(api.url + "/metrics") as response:
        samples = _samples(await response.text())
    assert samples[("dcounter_forged_pushes_total", ())] == 1


# -- exact values beyond 2**53 (issue 12.8) ----------------------------------------------------


async def test_metrics_value_is_a_float_and_counter_value_is_exact(api: Api) -> None:
    exact = 2**53 + 1  # the first integer a float cannot hold
    status, _, _ = await api.request("POST", "/increment", json={"by": exact})
    assert status == 200
    async with api.session.get(api.url + "/metrics") as response:
        families = {f.name: f for f in text_string_to_metric_families(await response.text())}
    value = families["dcounter_value"]
    assert "2**53" in value.documentation
    assert "GET /counter/value" in value.documentation
    assert value.samples[0].value == float(exact) != exact
    async with api.session.get(api.url + "/counter/value") as response:
        assert response.status == 200
        assert response.content_type == "text/plain"
        assert await response.text() == f"{exact}\n"

"""Browsers (issue 12.7): pages of other sites cannot use the API; curl and the node's own can."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from dcounter_node import ConfigError
from dcounter_node._origin_policy import OriginPolicy, normalize_origin

if TYPE_CHECKING:
    from tests.service.conftest import Api, ApiFactory

EVIL = "https://evil.example"
#: What a cross-site <form enctype="text/plain"> or fetch(no-cors) sends: no preflight.
SIMPLE = {"Content-Type": "text/plain"}


async def test_a_cross_site_text_plain_post_cannot_increment(api: Api) -> None:
    status, body, _ = await api.request(
        "POST", "/increment", data="{}", headers={**SIMPLE, "Origin": EVIL}
    )
    assert status == 403
    assert EVIL in body["error"]
    assert await api.value() == 0


async def test_a_cross_site_post_cannot_add_a_peer(api: Api) -> None:
    status, _, _ = await api.request(
        "POST", "/peers", data='{"addr": "10.0.0.9:7946"}', headers={**SIMPLE, "Origin": EVIL}
    )
    assert status == 403
    assert api.node.peers.peers() == []


async def test_a_sandboxed_page_with_origin_null_is_refused(api: Api) -> None:
    status, _, _ = await api.request("POST", "/decrement", headers={"Origin": "null"})
    assert status == 403


async def test_requests_without_origin_are_served_as_before(api: Api) -> None:
    status, body, _ = await api.request("POST", "/increment", data="", headers=SIMPLE)
    assert (status, body) == (200, {"value": 1})


async def test_the_nodes_own_origin_is_served(api: Api) -> None:
    own = f"http://{api.server.address}"
    status, body, response = await api.request("POST", "/increment", headers={"Origin": own})
    assert (status, body) == (200, {"value": 1})
    assert "Access-Control-Allow-Origin" not in response.headers  # same origin needs none


async def test_an_allowed_origin_is_served_with_cors_headers(make_api: ApiFactory) -> None:
    api = await make_api(allowed_origins=["https://dash.example:8443"])
    origin = "https://DASH.example:8443"
    status, body, response = await api.request("POST", "/increment", headers={"Origin": origin})
    assert (status, body) == (200, {"value": 1})
    assert response.headers["Access-Control-Allow-Origin"] == origin
    assert "Origin" in response.headers.getall("Vary")
    status, _, _ = await api.request("POST", "/increment", headers={"Origin": EVIL})
    assert status == 403


async def test_an_allowed_origin_gets_its_preflight_answered(make_api: ApiFactory) -> None:
    api = await make_api(allowed_origins=["https://dash.example"])
    headers = {
        "Origin": "https://dash.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, idempotency-key",
    }
    status, _, response = await api.request("OPTIONS", "/increment", headers=headers)
    assert status == 204
    assert response.headers["Access-Control-Allow-Origin"] == "https://dash.example"
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert "Idempotency-Key" in response.headers["Access-Control-Allow-Headers"]
    status, _, _ = await api.request("OPTIONS", "/increment", headers={**headers, "Origin": EVIL})
    assert status == 403


async def test_an_allowed_origin_can_watch_the_stream(make_api: ApiFactory) -> None:
    api = await make_api(allowed_origins=["https://dash.example"])
    async with api.session.get(
        api.url + "/counter/watch", headers={"Origin": "https://dash.example"}
    ) as response:
        assert response.status == 200
        assert response.headers["Access-Control-Allow-Origin"] == "https://dash.example"
        assert await response.content.readline() == b'data: {"value": 0}\n'


# -- the policy -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("origin", "host", "decision"),
    [
        (None, "127.0.0.1:8080", "absent"),
        ("http://127.0.0.1:8080", "127.0.0.1:8080", "same"),
        ("http://LocalHost", "localhost:80", "same"),
        ("https://node.example", "node.example", "same"),  # behind a TLS proxy
        ("http://[::1]:8080", "[::1]:8080", "same"),
        ("http://127.0.0.1:8081", "127.0.0.1:8080", "refused"),
        ("https://evil.example", "127.0.0.1:8080", "refused"),
        ("https://ok.example:443", "127.0.0.1:8080", "allowed"),
        ("null", "127.0.0.1:8080", "refused"),
        ("ftp://127.0.0.1:8080", "127.0.0.1:8080", "refused"),
        ("http://127.0.0.1:8080/path", "127.0.0.1:8080", "refused"),
    ],
)
def test_origin_policy(origin: str | None, host: str, decision: str) -> None:
    assert OriginPolicy(["https://ok.example"]).decide(origin, host) == decision


def test_a_star_allows_every_origin() -> None:
    policy = OriginPolicy(["*"])
    assert policy.decide("https://anything.example", "127.0.0.1:8080") == "allowed"
    assert policy.decide("null", "127.0.0.1:8080") == "allowed"


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("https://Dash.Example:443", "https://dash.example"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://[::1]:80", "http://[::1]"),
        ("*", "*"),
    ],
)
def test_configured_origins_are_normalized(text: str, normalized: str) -> None:
    assert normalize_origin(text) == normalized


@pytest.mark.parametrize(
    "text", ["dash.example", "https://dash.example/", "ws://x", "https://", "https://u@x"]
)
def test_a_configured_origin_must_be_scheme_and_host(text: str) -> None:
    with pytest.raises(ConfigError, match="expected an origin"):
        normalize_origin(text)

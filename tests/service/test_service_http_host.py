"""DNS rebinding: the API answers only the host names it is known by (``--allowed-hosts``).

A page on evil.example that points its name at 127.0.0.1 makes the visitor's browser send
same-origin requests to the node, with ``Host: evil.example:PORT`` and no ``Origin`` on
GETs; only the Host header tells them apart.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from dcounter_node import ConfigError
from dcounter_node._cli import settings_from_args
from dcounter_node._host_policy import HostPolicy, host_name, normalize_host
from dcounter_node._settings import NodeSettings, parse_config

if TYPE_CHECKING:
    from tests.conftest import SpawnNode
    from tests.service.conftest import Api, ApiFactory

REBOUND = {"Host": "evil.example:8001"}


# -- the policy -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    ["localhost:8001", "127.0.0.1:8001", "[::1]:8001", "LOCALHOST.", "127.0.0.1", "[::1]"],
)
def test_on_loopback_the_loopback_names_are_served_whatever_the_port(host: str) -> None:
    assert HostPolicy(listen_host="127.0.0.1").allows(host)


@pytest.mark.parametrize(
    "host",
    [
        "evil.example:8001",
        "evil.example",
        "127.0.0.1.evil.example",
        "localhost.evil.example:8001",
        "10.0.0.5:8001",
        "",
        "127.0.0.1:http",
        "[::1",
        "[::1]x",
        "user@127.0.0.1",
    ],
)
def test_on_loopback_other_or_malformed_hosts_are_refused(host: str) -> None:
    assert not HostPolicy(listen_host="127.0.0.1").allows(host)


def test_the_literal_loopback_listen_host_is_served() -> None:
    policy = HostPolicy(listen_host="127.0.0.2")
    assert policy.allows("127.0.0.2:8001")
    assert policy.allows("localhost:8001")
    assert not policy.allows("evil.example:8001")


@pytest.mark.parametrize("listen", ["0.0.0.0", "::", "10.0.0.5", "node1.example", None])
def test_on_a_wildcard_or_other_address_every_host_is_served_by_default(
    listen: str | None,
) -> None:
    policy = HostPolicy(listen_host=listen)
    assert policy.allowed is None
    assert policy.allows("evil.example:8001")


def test_a_configured_list_replaces_the_default() -> None:
    policy = HostPolicy(["node1.example", "[::1]"], listen_host="0.0.0.0")
    assert policy.allows("NODE1.example:443")
    assert policy.allows("[::1]:8001")
    assert not policy.allows("127.0.0.1:8001")
    assert not policy.allows("evil.example")
    loopback = HostPolicy(["node1.example"], listen_host="127.0.0.1")
    assert not loopback.allows("localhost:8001")


def test_a_star_serves_every_host() -> None:
    assert HostPolicy(["*"], listen_host="127.0.0.1").allows("evil.example")


def test_a_request_without_a_host_header_is_served() -> None:
    # HTTP/1.0 clients; browsers always send Host.
    assert HostPolicy(listen_host="127.0.0.1").allows(None)


@pytest.mark.parametrize(
    ("header", "name"),
    [("Node.Example:80", "node.example"), ("[::1]:1", "::1"), ("a.example.", "a.example")],
)
def test_host_name_drops_port_brackets_case_and_final_dot(header: str, name: str) -> None:
    assert host_name(header) == name


@pytest.mark.parametrize(
    ("text", "name"),
    [("[::1]", "::1"), ("Node1.Example.", "node1.example"), ("0:0::1", "::1"), ("*", "*")],
)
def test_allowed_hosts_are_normalized(text: str, name: str) -> None:
    assert normalize_host(text) == name


@pytest.mark.parametrize(
    "text", ["node1.example:8001", "http://node1.example", "a b", "", "bad/name", "-x.example"]
)
def test_an_allowed_host_with_a_port_scheme_or_bad_characters_is_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="no scheme or port"):
        normalize_host(text)


# -- settings -------------------------------------------------------------------------------


def test_the_flag_and_the_config_key_set_the_list() -> None:
    settings = settings_from_args(["--allowed-hosts", "Node1.example, [::1]"])
    assert settings.allowed_hosts == ("node1.example", "::1")
    assert settings_from_args(settings.to_argv()).allowed_hosts == settings.allowed_hosts
    config = parse_config({"allowed_hosts": ["node1.example", "10.0.0.5"]})
    assert config.settings().allowed_hosts == ("node1.example", "10.0.0.5")
    assert NodeSettings().allowed_hosts == ()


def test_a_bad_config_value_names_the_key() -> None:
    with pytest.raises(ConfigError, match="allowed_hosts"):
        parse_config({"allowed_hosts": "node1.example"})
    with pytest.raises(ConfigError, match="allowed_hosts"):
        parse_config({"allowed_hosts": ["node1.example:8001"]})


def test_help_explains_the_flag_and_its_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        settings_from_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--allowed-hosts HOST[,HOST...]" in text
    assert "DNS rebinding" in text
    assert "with --http on a loopback address: localhost, 127.0.0.1, [::1]" in text


# -- the API ----------------------------------------------------------------------------------


@pytest.fixture
async def loopback_api(make_api: ApiFactory) -> Api:
    return await make_api(listen_host="127.0.0.1")


async def test_a_rebound_page_cannot_read_the_counter(loopback_api: Api) -> None:
    status, body, _ = await loopback_api.request("GET", "/counter", headers=REBOUND)
    assert status == 421
    assert "'evil.example:8001' is not served here" in body["error"]


async def test_a_rebound_page_cannot_write(loopback_api: Api) -> None:
    status, _, _ = await loopback_api.request(
        "POST", "/increment", data="{}", headers={**REBOUND, "Content-Type": "text/plain"}
    )
    assert status == 421
    assert await loopback_api.value() == 0


@pytest.mark.parametrize("path", ["/", "/cluster", "/metrics", "/no-such-route"])
async def test_the_dashboard_and_every_route_are_screened(loopback_api: Api, path: str) -> None:
    status, _, _ = await loopback_api.request("GET", path, headers=REBOUND)
    assert status == 421


async def test_the_nodes_own_address_is_served(loopback_api: Api) -> None:
    status, body, _ = await loopback_api.request("POST", "/increment")
    assert (status, body) == (200, {"value": 1})
    port = loopback_api.server.address.rpartition(":")[2]
    status, _, _ = await loopback_api.request(
        "GET", "/counter", headers={"Host": f"localhost:{port}"}
    )
    assert status == 200


async def test_refusals_log_one_line_and_are_counted(
    loopback_api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="dcounter_node._http_host"):
        for _ in range(5):
            status, _, _ = await loopback_api.request("GET", "/counter", headers=REBOUND)
            assert status == 421
    lines = [r.getMessage() for r in caplog.records if r.name == "dcounter_node._http_host"]
    assert len(lines) == 1
    assert "refused GET /counter for host 'evil.example:8001'" in lines[0]
    _, _, response = await loopback_api.request("GET", "/metrics")
    metrics = await response.text()
    assert 'dcounter_http_responses_total{method="GET",route="/counter",status="421"} 5.0' in (
        metrics
    )


async def test_create_app_without_a_listen_host_serves_any_host(api: Api) -> None:
    status, _, _ = await api.request("GET", "/counter", headers=REBOUND)
    assert status == 200


# -- a node process -------------------------------------------------------------------------


async def _get(url: str, headers: dict[str, str]) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.get(url, headers=headers) as response,
    ):
        return response.status, await response.json(content_type=None)


@pytest.mark.slow
async def test_a_node_on_loopback_refuses_a_rebound_host_and_serves_its_own(
    spawn_node: SpawnNode,
) -> None:
    node = await spawn_node("--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--in-memory")
    await node.wait_ready()
    status, body = await _get(node.url + "/counter", REBOUND)
    assert status == 421, body
    assert (await _get(node.url + "/counter", {}))[0] == 200


@pytest.mark.slow
async def test_allowed_hosts_names_the_only_hosts_a_node_serves(spawn_node: SpawnNode) -> None:
    node = await spawn_node(
        "--listen",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--in-memory",
        "--allowed-hosts",
        "counter.internal",
    )
    await node.wait_ready()
    assert (await _get(node.url + "/counter", {"Host": "counter.internal:80"}))[0] == 200
    assert (await _get(node.url + "/counter", {}))[0] == 421  # 127.0.0.1 is not listed

"""Hostile HTTP clients (issue 12.5): slow heads and bodies, idle floods, garbage requests.

Every attack is small (a few connections against a cap of a few) and every deadline short,
so each test ends in about a second; waits are conditions with a generous deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
from typing import TYPE_CHECKING

import aiohttp
import pytest

from dcounter_node import ConfigError, NodeSettings
from dcounter_node._cli import settings_from_args
from dcounter_node._http import GUARD_STATS_KEY
from dcounter_node._http_guard import LogLimiter
from dcounter_node._http_limits import HTTPLimits

if TYPE_CHECKING:
    from pathlib import Path

    from tests.conftest import SpawnNode
    from tests.service.conftest import Api, ApiFactory

DEADLINE = 10.0
EVIL = "https://evil.example"

#: Short deadlines: a test connection past them is closed within a fraction of a second.
#: Each test shortens only the deadline it is about, so that one is what closes.
SLOW_HEADS = HTTPLimits(header_timeout=0.3, idle_timeout=30.0)
IDLERS = HTTPLimits(header_timeout=30.0, idle_timeout=0.3)

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def connect(api: Api) -> Connection:
    host, port = api.server.address.rsplit(":", 1)
    return await asyncio.open_connection(host, int(port))


async def closed_by_server(connection: Connection) -> bool:
    """Read until the server closes the connection; True if it did within DEADLINE."""
    reader, _ = connection
    try:
        async with asyncio.timeout(DEADLINE):
            while await reader.read(4096):
                pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


async def drip(connection: Connection, pieces: list[bytes], every: float) -> None:
    """Send ``pieces`` one at a time, ``every`` seconds apart, until the server hangs up."""
    _, writer = connection
    with contextlib.suppress(ConnectionError):
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(every)


def close_all(*connections: Connection) -> None:
    for _, writer in connections:
        writer.close()


def guard_stats(api: Api) -> tuple[int, int, dict[str, int], int]:
    stats = api.server._guard.stats
    return stats.rejected, stats.evicted, dict(stats.timed_out), stats.bad_requests


# -- deadlines --------------------------------------------------------------------------------


async def test_a_slowly_dripped_request_head_is_closed_at_the_header_timeout(
    make_api: ApiFactory,
) -> None:
    api = await make_api(limits=SLOW_HEADS)
    connection = await connect(api)
    head = [b"GET /counter HTTP/1.1\r\nHost: x\r\n"] + [b"X-Slow: 1\r\n"] * 200
    dripping = asyncio.ensure_future(drip(connection, head, every=0.05))
    try:
        assert await closed_by_server(connection)
    finally:
        dripping.cancel()
        close_all(connection)
    assert guard_stats(api)[2]["header"] == 1


async def test_a_slowly_sent_body_is_closed_at_the_header_timeout(
    make_api: ApiFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    api = await make_api(limits=SLOW_HEADS)
    connection = await connect(api)
    head = b"POST /increment HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"
    dripping = asyncio.ensure_future(drip(connection, [head] + [b" "] * 200, every=0.05))
    try:
        assert await closed_by_server(connection)
    finally:
        dripping.cancel()
        close_all(connection)
    assert guard_stats(api)[2]["body"] == 1
    assert await api.value() == 0
    # One line for the slow client, and none from the handler it was cut off from.
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(messages) == 1
    assert messages[0].startswith("closed HTTP connection from 127.0.0.1:")
    assert "request body incomplete after" in messages[0]
    assert all(r.exc_info is None for r in caplog.records)


async def test_a_connection_that_sends_nothing_is_closed_at_the_idle_timeout(
    make_api: ApiFactory,
) -> None:
    api = await make_api(limits=IDLERS)
    connection = await connect(api)
    try:
        assert await closed_by_server(connection)
    finally:
        close_all(connection)
    assert guard_stats(api)[2]["idle"] == 1


async def test_an_idle_keep_alive_connection_is_closed_at_the_idle_timeout(
    make_api: ApiFactory,
) -> None:
    api = await make_api(limits=IDLERS)
    connection = await connect(api)
    reader, writer = connection
    writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        assert (await reader.readline()).startswith(b"HTTP/1.1 200")
        assert await closed_by_server(connection)
    finally:
        close_all(connection)


async def test_a_keep_alive_client_pausing_between_requests_is_not_cut_off(
    make_api: ApiFactory,
) -> None:
    api = await make_api(limits=HTTPLimits(header_timeout=0.2, idle_timeout=5.0))
    for _ in range(3):
        status, body, _ = await api.request("POST", "/increment")
        assert (status, body["value"] > 0) == (200, True)
        await asyncio.sleep(0.4)  # the pause under test: longer than the header timeout
    assert await api.value() == 3
    assert guard_stats(api)[2] == {"idle": 0, "header": 0, "body": 0}


async def test_a_watch_stream_outlives_the_deadlines(make_api: ApiFactory) -> None:
    api = await make_api(limits=HTTPLimits(header_timeout=0.3, idle_timeout=0.3), keepalive=0.1)
    async with api.session.get(api.url + "/counter/watch") as response:
        assert await response.content.readline() == b'data: {"value": 0}\n'
        comments = 0
        while comments < 8:  # about 0.8 s of keepalive comments, past both deadlines
            line = await response.content.readline()
            comments += line == b": keepalive\n"
    assert guard_stats(api)[2] == {"idle": 0, "header": 0, "body": 0}


# -- connection cap ---------------------------------------------------------------------------


async def test_over_the_cap_a_new_connection_gets_503_and_is_closed(
    make_api: ApiFactory,
) -> None:
    api = await make_api(limits=HTTPLimits(max_connections=3, header_timeout=30))
    busy = [await connect(api) for _ in range(3)]
    try:
        for _, writer in busy:  # started requests: not evictable
            writer.write(b"GET /counter HTTP/1.1\r\n")
            await writer.drain()
        extra = await connect(api)
        reader, _ = extra
        answer = await asyncio.wait_for(reader.read(), DEADLINE)
        close_all(extra)
        assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        assert answer.endswith(b'{"error": "too many connections; retry shortly"}')
        assert guard_stats(api)[0] == 1
    finally:
        close_all(*busy)


async def test_never_used_connections_are_evicted_to_serve_a_real_client(
    make_api: ApiFactory,
) -> None:
    api = await make_api(limits=HTTPLimits(max_connections=4, idle_timeout=30))
    idle = [await connect(api) for _ in range(6)]
    try:
        status, _, _ = await api.request("GET", "/counter")
        assert status == 200
        rejected, evicted, _, _ = guard_stats(api)
        assert rejected == 0
        assert evicted >= 3  # 2 for the flood beyond 4, at least 1 for the client
        assert api.server._guard.stats.open <= 4
        assert await closed_by_server(idle[0])
    finally:
        close_all(*idle)


async def test_the_cap_and_deadlines_are_in_metrics(make_api: ApiFactory) -> None:
    api = await make_api(limits=SLOW_HEADS)
    connection = await connect(api)
    connection[1].write(b"GET /counter HTTP/1.1\r\n")
    try:
        assert await closed_by_server(connection)
    finally:
        close_all(connection)
    status, _, response = await api.request("GET", "/metrics")
    text = await response.text()
    assert status == 200
    assert 'dcounter_http_connections_timed_out_total{reason="header"} 1.0' in text
    assert "dcounter_http_connections_open 1.0" in text  # this scrape's own
    assert "dcounter_http_connections_rejected_total 0.0" in text


# -- bad requests -----------------------------------------------------------------------------


async def test_a_malformed_request_is_answered_400_and_logged_once_without_traceback(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    connection = await connect(api)
    reader, writer = connection
    writer.write(b"GET / HTTP/1.1\r\nNo colon in this header\r\n\r\n")
    try:
        answer = await asyncio.wait_for(reader.read(), DEADLINE)
    finally:
        close_all(connection)
    assert answer.startswith((b"HTTP/1.0 400 ", b"HTTP/1.1 400 "))
    records = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(records) == 1
    assert records[0].exc_info is None
    assert records[0].getMessage().startswith("bad HTTP request from 127.0.0.1: 400 ")
    assert guard_stats(api)[3] == 1


async def test_repeated_bad_requests_are_rate_limited_in_the_log(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for _ in range(20):
        connection = await connect(api)
        reader, writer = connection
        writer.write(b"GET / HTTP/1.1\r\nNo colon in this header\r\n\r\n")
        try:
            answer = await asyncio.wait_for(reader.read(), DEADLINE)
            assert answer.startswith((b"HTTP/1.0 400 ", b"HTTP/1.1 400 "))
        finally:
            close_all(connection)
    records = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert 1 <= len(records) <= 5
    assert all(r.exc_info is None for r in records)
    assert guard_stats(api)[3] == 20
    assert await api.value() == 0  # and the API still answers


# -- policy units -----------------------------------------------------------------------------


def test_log_limiter_allows_a_burst_then_counts_what_it_suppressed() -> None:
    now = [0.0]
    limiter = LogLimiter(burst=2, interval=10.0, clock=lambda: now[0])
    assert [limiter.allow("x") for _ in range(5)] == [0, 0, None, None, None]
    assert limiter.allow("other kind") == 0
    now[0] = 10.0
    assert limiter.allow("x") == 3
    assert limiter.allow("x") == 0
    assert limiter.allow("x") is None


@pytest.mark.parametrize(
    "options",
    [
        {"max_connections": 0},
        {"max_connections": True},
        {"header_timeout": 0},
        {"idle_timeout": float("inf")},
        {"idle_timeout": "5"},
    ],
)
def test_http_limits_refuse_nonsense(options: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        HTTPLimits(**options)  # type: ignore[arg-type]


async def test_guard_stats_are_shared_with_the_app(api: Api) -> None:
    app = api.server._runner.app
    assert app[GUARD_STATS_KEY] is api.server._guard.stats


# -- settings ---------------------------------------------------------------------------------


def test_limits_come_from_flags_and_config_keys(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text(
        "http_max_connections = 7\nhttp_idle_timeout = 12.5\n"
        'allowed_origins = ["https://Dash.example:443"]\n'
    )
    settings = settings_from_args(["--config", str(config), "--http-header-timeout", "2"])
    assert settings.http_limits() == HTTPLimits(
        max_connections=7, header_timeout=2.0, idle_timeout=12.5
    )
    assert settings.allowed_origins == ("https://dash.example",)
    assert settings_from_args(settings.to_argv()) == settings


def test_defaults_are_sane() -> None:
    limits = NodeSettings().http_limits()
    assert limits == HTTPLimits()
    assert (limits.max_connections, limits.header_timeout, limits.idle_timeout) == (512, 10, 30)
    assert NodeSettings().allowed_origins == ()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--http-max-connections", "0"], "expected an integer >= 1"),
        (["--http-header-timeout", "-1"], "expected a number of seconds > 0"),
        (["--allowed-origins", "evil.example"], "expected an origin"),
    ],
)
def test_bad_limits_are_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        settings_from_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


async def test_a_node_process_applies_its_http_flags(spawn_node: SpawnNode) -> None:
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    node = await spawn_node(
        *("--listen=127.0.0.1:0", "--http=127.0.0.1:0", "--in-memory", f"--loop={loop}"),
        *("--http-header-timeout=0.3", "--allowed-origins=https://dash.example"),
    )
    await node.wait_ready()
    url = node.url
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=DEADLINE)) as session:
        async with session.post(
            url + "/increment", headers={"Origin": "https://dash.example"}
        ) as response:
            assert response.status == 200
            assert response.headers["Access-Control-Allow-Origin"] == "https://dash.example"
        async with session.post(url + "/increment", headers={"Origin": EVIL}) as response:
            assert response.status == 403
    host, port = node.http.rsplit(":", 1)
    connection = await asyncio.open_connection(host, int(port))
    connection[1].write(b"GET /counter HTTP/1.1\r\n")
    try:
        assert await closed_by_server(connection)
    finally:
        close_all(connection)

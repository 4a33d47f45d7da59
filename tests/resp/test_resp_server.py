"""The Redis front end served from a real node, driven by redis-py (sync and asyncio)."""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import TYPE_CHECKING, Any

import pytest
import redis
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from dcounter_node import StorageError
from dcounter_node._auth import ApiTokens, Scope
from dcounter_node._resp_limits import RespLimits
from dcounter_node._security import HTTPSFiles, server_ssl_context

from .conftest import DEADLINE, pack

if TYPE_CHECKING:
    from tests.conftest import IssueTLS, WaitUntil

    from .conftest import Resp, RespFactory


def _client(resp: Resp, **options: Any) -> redis.asyncio.Redis:
    # No retries: a refused connection (AUTH, TLS) should fail the test's call at once.
    return redis.asyncio.Redis(
        host=resp.host,
        port=resp.port,
        socket_timeout=DEADLINE,
        retry=Retry(NoBackoff(), 0),
        **options,
    )


async def test_redis_py_asyncio_counts_and_reads(make_resp: RespFactory) -> None:
    resp = await make_resp()
    client = _client(resp, decode_responses=True)
    try:
        assert await client.ping() is True
        assert await client.incr("page:home") == 1
        assert await client.incrby("page:home", 41) == 42
        assert await client.decr("page:about") == -1
        assert await client.decrby("page:about", 4) == -5
        assert await client.get("page:home") == "42"
        assert await client.get("never") is None
        assert await client.mget("page:home", "never", "page:about") == ["42", None, "-5"]
        assert await client.exists("page:home", "never", "page:about") == 2
        assert await client.type("page:home") == "string"
        assert await client.dbsize() == 2
        assert (await client.info("keyspace"))["db0"]["keys"] == 2
    finally:
        await client.aclose()
    assert resp.node.counters.value("page:home") == 42
    assert resp.node.counters.value("page:about") == -5


async def test_redis_py_scan_iter_with_a_prefix_pattern(make_resp: RespFactory) -> None:
    resp = await make_resp()
    for i in range(25):
        resp.node.counters.increment(f"page:{i}")
    resp.node.counters.increment("user:1")
    client = _client(resp, decode_responses=True)
    try:
        pages = [name async for name in client.scan_iter(match="page:*", count=4)]
        everything = [name async for name in client.scan_iter(count=1000)]
    finally:
        await client.aclose()
    assert sorted(pages) == sorted(f"page:{i}" for i in range(25))
    assert len(pages) == 25
    assert sorted(everything) == sorted([*pages, "user:1"])


async def test_redis_py_resp3(make_resp: RespFactory) -> None:
    resp = await make_resp()
    client = _client(resp, protocol=3, decode_responses=True)
    try:
        assert await client.incrby("a", 7) == 7
        assert await client.get("a") == "7"
        assert await client.get("b") is None
        assert await client.client_getname() is None
    finally:
        await client.aclose()


async def test_redis_py_sees_redis_errors(make_resp: RespFactory) -> None:
    resp = await make_resp()
    client = _client(resp)
    try:
        await client.incrby("big", 2**63 - 1)
        with pytest.raises(redis.ResponseError, match="increment or decrement would overflow"):
            await client.incr("big")
        with pytest.raises(redis.ResponseError, match="cannot be overwritten or deleted"):
            await client.set("big", 1)
        with pytest.raises(redis.ResponseError, match="cannot be overwritten or deleted"):
            await client.delete("big")
        with pytest.raises(redis.ResponseError, match="not an integer or out of range"):
            await client.incrby("big", "x")  # type: ignore[arg-type]
        with pytest.raises(redis.ResponseError, match="unknown command 'LPUSH'"):
            await client.lpush("list", 1)
        assert await client.get("big") == b"9223372036854775807"
    finally:
        await client.aclose()


def _sync_pipeline(host: str, port: int, commands: int) -> tuple[list[object], object]:
    client = redis.Redis(host=host, port=port, socket_timeout=DEADLINE)
    try:
        pipe = client.pipeline(transaction=False)
        for _ in range(commands):
            pipe.incr("hits")
        results = pipe.execute()
        return results, client.get("hits")
    finally:
        client.close()


async def test_redis_py_sync_pipelines_a_thousand_commands(make_resp: RespFactory) -> None:
    resp = await make_resp()
    results, value = await asyncio.to_thread(_sync_pipeline, resp.host, resp.port, 1000)
    assert results == list(range(1, 1001))
    assert value == b"1000"
    assert resp.node.counters.value("hits") == 1000


# -- durability: replies wait for the commit, one per batch -------------------------------------


class GatedCommit:
    """A commit that waits until :attr:`gate` is set, counting calls."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.calls = 0
        self.failure: Exception | None = None

    async def __call__(self) -> None:
        self.calls += 1
        await self.gate.wait()
        if self.failure is not None:
            raise self.failure


async def test_pipelined_writes_are_answered_after_one_commit(
    make_resp: RespFactory, wait_until: WaitUntil
) -> None:
    commit = GatedCommit()
    resp = await make_resp(commit=commit)
    reader, writer = await resp.connect()
    try:
        writer.write(pack(b"INCR", b"hits") * 1000 + pack(b"GET", b"hits"))
        await wait_until(lambda: resp.node.counters.value("hits") == 1000, what="1000 counts")
        # Counted, but not acknowledged while the commit has not returned.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.read(1), 0.2)
        commit.gate.set()
        expected = b"".join(b":%d\r\n" % n for n in range(1, 1001)) + b"$4\r\n1000\r\n"
        assert await asyncio.wait_for(reader.readexactly(len(expected)), DEADLINE) == expected
    finally:
        writer.close()
    # One commit per read batch, not per command.
    assert 1 <= commit.calls <= 10


async def test_a_failed_commit_turns_acknowledgements_into_errors(make_resp: RespFactory) -> None:
    commit = GatedCommit()
    commit.failure = StorageError("disk full")
    commit.gate.set()
    resp = await make_resp(commit=commit)
    reader, writer = await resp.connect()
    try:
        writer.write(pack(b"GET", b"a") + pack(b"INCR", b"a") + pack(b"PING"))
        expected = b"$-1\r\n-ERR change not persisted: disk full\r\n+PONG\r\n"
        assert await asyncio.wait_for(reader.readexactly(len(expected)), DEADLINE) == expected
    finally:
        writer.close()


# -- bad input and limits ---------------------------------------------------------------------


async def test_a_protocol_error_closes_that_connection_only(
    make_resp: RespFactory, caplog: pytest.LogCaptureFixture
) -> None:
    resp = await make_resp()
    good_reader, good_writer = await resp.connect()
    caplog.set_level(logging.WARNING, logger="dcounter_node._resp_server")
    try:
        for _ in range(3):
            reader, writer = await resp.connect()
            writer.write(b"*2147483647\r\n")
            reply = await asyncio.wait_for(reader.read(), DEADLINE)  # to EOF: closed
            assert reply == b"-ERR Protocol error: invalid multibulk length\r\n"
            writer.close()
        good_writer.write(pack(b"INCR", b"a"))
        assert await asyncio.wait_for(good_reader.readexactly(4), DEADLINE) == b":1\r\n"
    finally:
        good_writer.close()
    refused = [r for r in caplog.records if "closed: a malformed request" in r.getMessage()]
    assert len(refused) == 1  # rate limited: one line for the three


async def test_connections_over_the_limit_are_refused_as_redis_does(
    make_resp: RespFactory,
) -> None:
    resp = await make_resp(limits=RespLimits(max_connections=2))
    opened = [await resp.connect() for _ in range(2)]
    try:
        for reader, writer in opened:  # both served
            writer.write(pack(b"PING"))
            assert await asyncio.wait_for(reader.readexactly(7), DEADLINE) == b"+PONG\r\n"
        reader, writer = await resp.connect()
        assert await asyncio.wait_for(reader.read(), DEADLINE) == (
            b"-ERR max number of clients reached\r\n"
        )
        writer.close()
        assert resp.server.shared.rejected_connections == 1
    finally:
        for _, writer in opened:
            writer.close()


async def test_idle_connections_are_closed(make_resp: RespFactory) -> None:
    resp = await make_resp(limits=RespLimits(idle_timeout=0.2))
    reader, writer = await resp.connect()
    try:
        writer.write(pack(b"PING"))
        assert await asyncio.wait_for(reader.readexactly(7), DEADLINE) == b"+PONG\r\n"
        assert await asyncio.wait_for(reader.read(), DEADLINE) == b""
    finally:
        writer.close()


async def test_a_request_that_stops_arriving_is_closed(make_resp: RespFactory) -> None:
    resp = await make_resp(limits=RespLimits(request_timeout=0.2))
    reader, writer = await resp.connect()
    try:
        writer.write(b"*2\r\n$4\r\nINCR\r\n$3\r\nab")
        reply = await asyncio.wait_for(reader.read(), DEADLINE)
        assert reply == b"-ERR request incomplete for too long\r\n"
    finally:
        writer.close()
    assert "ab" not in resp.node.counters


async def test_shutdown_sends_the_replies_waiting_for_a_commit(
    make_resp: RespFactory, wait_until: WaitUntil
) -> None:
    commit = GatedCommit()
    resp = await make_resp(commit=commit)
    reader, writer = await resp.connect()
    try:
        writer.write(pack(b"INCR", b"a"))
        await wait_until(lambda: commit.calls == 1, what="the commit to begin")
        closing = asyncio.ensure_future(resp.server.close())
        commit.gate.set()
        await asyncio.wait_for(closing, DEADLINE)
        assert await asyncio.wait_for(reader.read(), DEADLINE) == b":1\r\n"
    finally:
        writer.close()


# -- API tokens and TLS -----------------------------------------------------------------------


async def test_redis_py_authenticates_with_an_api_token(make_resp: RespFactory) -> None:
    tokens = ApiTokens([(Scope.READ, "read-secret"), (Scope.WRITE, "write-secret")])
    resp = await make_resp(tokens=tokens)
    writer = _client(resp, password="write-secret")
    reader = _client(resp, username="default", password="read-secret", protocol=3)
    anonymous = _client(resp)
    try:
        assert await writer.incr("a") == 1
        assert await reader.get("a") == b"1"
        with pytest.raises(redis.exceptions.NoPermissionError, match="needs the write scope"):
            await reader.incr("a")
        with pytest.raises(redis.AuthenticationError):
            await anonymous.get("a")
    finally:
        for client in (writer, reader, anonymous):
            await client.aclose()
    wrong = _client(resp, password="guess")
    try:
        with pytest.raises(redis.AuthenticationError):
            await wrong.ping()
    finally:
        await wrong.aclose()


async def test_redis_py_over_tls(make_resp: RespFactory, issue_tls: IssueTLS) -> None:
    files = issue_tls("resp")
    context = server_ssl_context(HTTPSFiles(str(files.cert), str(files.key)))
    resp = await make_resp(ssl_context=context)
    client = _client(resp, ssl=True, ssl_ca_certs=str(files.ca))
    try:
        assert await client.incrby("secure", 3) == 3
    finally:
        await client.aclose()
    plain = _client(resp)
    try:
        with pytest.raises(redis.ConnectionError):
            await plain.ping()
    finally:
        await plain.aclose()
    assert isinstance(context, ssl.SSLContext)

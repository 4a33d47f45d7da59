"""Three ``dcounter-node --resp`` processes driven by clients nobody here wrote.

redis-py and Debian's ``redis-cli`` and ``redis-benchmark`` (package ``redis-tools``; these
tests skip, saying so, without it). The nodes gossip over stream mode, so named counters
travel between them as the ``default`` counter does.
"""

from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
import redis
import redis.asyncio

from .conftest import DEADLINE, pack, redis_tool

if TYPE_CHECKING:
    from pathlib import Path

    from tests.conftest import NodeProcesses, SpawnNode, WaitUntil

    from dcounter_node.testing import NodeProcess

pytestmark = pytest.mark.slow

FREE = ("--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--in-memory")


async def _cluster(spawn_node: SpawnNode, count: int = 3) -> list[NodeProcess]:
    nodes = [
        await spawn_node(*FREE, "--resp", "127.0.0.1:0", "--sync-interval", "0.2")
        for _ in range(count)
    ]
    await asyncio.gather(*(node.wait_ready() for node in nodes))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=DEADLINE)) as session:
        for node in nodes:
            for other in nodes:
                if other is not node:
                    body = {"addr": other.gossip}
                    async with session.post(node.url + "/peers", json=body) as response:
                        assert response.status in (200, 201), await response.text()
    return nodes


def _host_port(node: NodeProcess) -> tuple[str, str]:
    host, port = node.resp.rsplit(":", 1)
    return host, port


async def _tool(name: str, node: NodeProcess, *args: str, stdin: bytes = b"") -> str:
    """Run a redis tool against ``node``; its stdout (it must exit 0, without errors)."""
    host, port = _host_port(node)
    process = await asyncio.create_subprocess_exec(
        redis_tool(name),
        "-h",
        host,
        "-p",
        port,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(stdin), 60)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode == 0, (out, err)
    return out.decode()


async def _cli(node: NodeProcess, *args: str) -> str:
    return (await _tool("redis-cli", node, *args)).rstrip("\n")


def _client(node: NodeProcess, **options: Any) -> redis.asyncio.Redis:
    host, port = _host_port(node)
    return redis.asyncio.Redis(host=host, port=int(port), socket_timeout=DEADLINE, **options)


async def test_incrby_on_one_node_is_read_on_the_others(
    spawn_node: SpawnNode, wait_until: WaitUntil
) -> None:
    redis_tool("redis-cli")
    nodes = await _cluster(spawn_node)
    client = _client(nodes[0], decode_responses=True)
    try:
        assert await client.incrby("default", 5) == 5
        # Each answers the value its node sees, which may include gossip already.
        assert await _cli(nodes[1], "INCRBY", "default", "7") in ("7", "12")
        assert await _cli(nodes[2], "DECR", "default") in ("-1", "4", "6", "11")

        async def every_node_reads_11() -> bool:
            values = [await _cli(node, "GET", "default") for node in nodes]
            return values == ["11", "11", "11"]

        await wait_until(every_node_reads_11, what="GET default = 11 on every node")
        assert await client.get("default") == "11"
    finally:
        await client.aclose()


async def test_named_counters_are_read_on_the_other_nodes(
    spawn_node: SpawnNode, wait_until: WaitUntil
) -> None:
    redis_tool("redis-cli")
    nodes = await _cluster(spawn_node)
    first = _client(nodes[0], decode_responses=True)
    other = _client(nodes[2], decode_responses=True)
    try:
        assert await first.incrby("page:home", 5) == 5
        assert await _cli(nodes[0], "INCRBY", "page:home", "7") == "12"
        assert await _cli(nodes[0], "INCRBY", "page:about", "-3") == "-3"
        # Counted on a second node too; its answer may already include node 0's counts.
        assert await _cli(nodes[1], "DECRBY", "page:home", "2") in ("-2", "3", "10")

        async def every_node_reads_them() -> bool:
            homes = [await _cli(node, "GET", "page:home") for node in nodes]
            abouts = [await _cli(node, "GET", "page:about") for node in nodes]
            return homes == ["10"] * 3 and abouts == ["-3"] * 3

        await wait_until(every_node_reads_them, what="page:home = 10, page:about = -3 everywhere")
        assert await other.mget("page:home", "page:about", "page:none") == ["10", "-3", None]
        assert await other.get("page:home") == "10"
        scanned = await _cli(nodes[1], "--scan", "--pattern", "page:*")
        assert sorted(scanned.splitlines()) == ["page:about", "page:home"]
        assert await _cli(nodes[2], "EXISTS", "page:home", "page:about", "nope") == "2"
    finally:
        await first.aclose()
        await other.aclose()


async def test_a_thousand_pipelined_commands(spawn_node: SpawnNode, wait_until: WaitUntil) -> None:
    redis_tool("redis-cli")
    nodes = await _cluster(spawn_node)
    # redis-cli --pipe: the raw protocol from stdin, replies counted.
    out = await _tool("redis-cli", nodes[0], "--pipe", stdin=pack(b"INCR", b"hits") * 1000)
    assert "errors: 0, replies: 1000" in out
    assert await _cli(nodes[0], "GET", "hits") == "1000"
    # redis-py's pipeline, on the default counter, read back on another node.
    client = _client(nodes[1])
    try:
        pipe = client.pipeline(transaction=False)
        for _ in range(1000):
            pipe.incrby("default", 2)
        assert await pipe.execute() == list(range(2, 2001, 2))
    finally:
        await client.aclose()

    async def read_2000() -> bool:
        return [await _cli(node, "GET", "default") for node in nodes] == ["2000"] * 3

    await wait_until(read_2000, what="GET default = 2000 on every node")


async def test_scan_with_redis_cli(spawn_node: SpawnNode) -> None:
    redis_tool("redis-cli")
    nodes = await _cluster(spawn_node, count=1)
    client = _client(nodes[0])
    try:
        pipe = client.pipeline(transaction=False)
        for i in range(40):
            pipe.incr(f"page:{i}")
        for name in ("user:1", "user:2", "pages"):
            pipe.incr(name)
        await pipe.execute()
    finally:
        await client.aclose()
    pages = await _cli(nodes[0], "--scan", "--pattern", "page:*")
    assert sorted(pages.splitlines()) == sorted(f"page:{i}" for i in range(40))
    # SCAN itself, page by page, following the cursor.
    cursor, seen = "0", []
    for _ in range(100):
        cursor, *names = (
            await _cli(nodes[0], "SCAN", cursor, "MATCH", "page:*", "COUNT", "7")
        ).split("\n")
        seen += names
        if cursor == "0":
            break
    assert sorted(seen) == sorted(f"page:{i}" for i in range(40))
    everything = await _cli(nodes[0], "--scan")
    assert len(everything.splitlines()) == 43
    assert await _cli(nodes[0], "DBSIZE") == "43"


async def test_redis_benchmark_incr_completes_without_errors(spawn_node: SpawnNode) -> None:
    redis_tool("redis-benchmark")
    nodes = await _cluster(spawn_node, count=1)
    for pipeline in ("1", "16"):
        out = await _tool(
            "redis-benchmark",
            nodes[0],
            "-t",
            "incr",
            "-n",
            "2000",
            "-c",
            "8",
            "-P",
            pipeline,
            "-q",
        )
        assert "INCR:" in out
        assert "rror" not in out
    # redis-benchmark counts on one key: every INCR counted exactly once.
    assert await _cli(nodes[0], "GET", "counter:__rand_int__") == "4000"


async def test_redis_cli_interactive_startup_commands(spawn_node: SpawnNode) -> None:
    redis_tool("redis-cli")
    nodes = await _cluster(spawn_node, count=1)
    # What redis-cli asks a server for help and completion, and INFO.
    assert int(await _cli(nodes[0], "COMMAND", "COUNT")) > 10
    assert await _cli(nodes[0], "COMMAND", "DOCS") == ""
    assert "redis_version:" in await _cli(nodes[0], "INFO", "server")
    assert await _cli(nodes[0], "PING") == "PONG"
    assert await _cli(nodes[0], "-3", "GET", "missing") == ""
    out = await _cli(nodes[0], "SET", "a", "1")
    assert "cannot be overwritten" in out


async def test_acknowledged_counts_survive_a_crash(
    node_processes: NodeProcesses, tmp_path: Path
) -> None:
    data = ["--data-dir", str(tmp_path / "data"), "--durability", "always"]
    flags = ("--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--resp", "127.0.0.1:0")
    node = await node_processes.start("before", *flags, *data)
    client = _client(node)
    try:
        pipe = client.pipeline(transaction=False)
        for _ in range(100):
            pipe.incrby("default", 3)
        assert (await pipe.execute())[-1] == 300
    finally:
        await client.aclose()
    await node.kill()  # SIGKILL: no shutdown code runs
    again = await node_processes.start("after", *flags, *data)
    client = _client(again)
    try:
        assert await client.get("default") == b"300"
    finally:
        await client.aclose()


async def test_a_resp_address_in_use_is_exit_status_1(spawn_node: SpawnNode) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        node = await spawn_node(*FREE, "--resp", f"127.0.0.1:{port}")
        assert await node.wait_exit() == 1
    assert f"cannot listen for the Redis protocol on 127.0.0.1:{port}" in node.log_text()


async def test_an_open_resp_address_is_warned_about_or_refused(spawn_node: SpawnNode) -> None:
    node = await spawn_node(*FREE, "--resp", "0.0.0.0:0")
    await node.wait_ready()
    assert "the Redis protocol listens on 0.0.0.0:0 without TLS and API tokens" in (node.log_text())
    refused = await spawn_node(*FREE, "--resp", "0.0.0.0:0", "--require-auth")
    assert await refused.wait_exit() == 2
    assert "refusing to start" in refused.log_text()


async def test_metrics_count_the_redis_protocol_clients_and_commands(
    spawn_node: SpawnNode, wait_until: WaitUntil
) -> None:
    node = await spawn_node(*FREE, "--resp", "127.0.0.1:0")
    await node.wait_ready()
    host, port = _host_port(node)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(pack(b"INCR", b"hits") * 10)
    replies = b"".join([await reader.readline() for _ in range(10)])
    assert replies == b"".join(b":%d\r\n" % i for i in range(1, 11))

    async def metrics() -> dict[str, float]:
        async with aiohttp.ClientSession() as session, session.get(node.url + "/metrics") as got:
            text = await got.text()
        return {
            name: float(value)
            for name, value in (
                line.split(" ") for line in text.splitlines() if line.startswith("dcounter_resp_")
            )
        }

    assert await metrics() == {
        "dcounter_resp_clients": 1.0,
        "dcounter_resp_connections_total": 1.0,
        "dcounter_resp_rejected_connections_total": 0.0,
        "dcounter_resp_commands_total": 10.0,
    }
    writer.close()
    await writer.wait_closed()

    async def disconnected() -> bool:
        return (await metrics())["dcounter_resp_clients"] == 0.0

    await wait_until(disconnected, what="no Redis-protocol client connected on /metrics")

"""dcounter-node as real processes: a 3-node cluster over loopback, signals, exit codes."""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

if TYPE_CHECKING:
    from tests.conftest import SpawnNode, WaitUntil

pytestmark = pytest.mark.slow

#: Every node here binds free ports and keeps no durable state.
FREE = ("--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--in-memory")


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def _post(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> Any:
    async with session.post(url, json=body) as response:
        assert response.status in (200, 201), await response.text()
        return await response.json()


async def test_three_processes_converge_to_the_exact_total(
    spawn_node: SpawnNode, wait_until: WaitUntil
) -> None:
    nodes = [await spawn_node(*FREE, "--sync-interval", "0.2") for _ in range(3)]
    await asyncio.gather(*(node.wait_ready() for node in nodes))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        for node in nodes:
            for other in nodes:
                if other is not node:
                    await _post(session, node.url + "/peers", {"addr": other.gossip})
        await _post(session, nodes[0].url + "/increment", {"by": 5})
        await _post(session, nodes[1].url + "/increment", {"by": 7})
        await _post(session, nodes[1].url + "/increment", {})
        await _post(session, nodes[2].url + "/decrement", {"by": 3})

        async def counters() -> list[Any]:
            bodies = []
            for node in nodes:
                async with session.get(node.url + "/counter") as response:
                    bodies.append(await response.json())
            return bodies

        async def converged() -> bool:
            return [body["value"] for body in await counters()] == [10, 10, 10]

        await wait_until(converged, what="every node to read 10")
        bodies = await counters()
    replicas = [node.replica for node in nodes]
    assert [body["replica"] for body in bodies] == replicas
    expected_increments = {replicas[0]: 5, replicas[1]: 8}
    for body in bodies:
        assert body["increments"] == expected_increments
        assert body["decrements"] == {replicas[2]: 3}

    for node in nodes:
        node.signal(signal.SIGTERM)
    assert [await node.wait_exit() for node in nodes] == [0, 0, 0]
    assert all(_gone(node.pid) for node in nodes)
    assert all("shutting down" in node.log_text() for node in nodes)


async def test_ready_line_has_the_bound_addresses_replica_and_pid(spawn_node: SpawnNode) -> None:
    node = await spawn_node(*FREE)
    ready = await node.wait_ready()
    words = node.ready_text.split()
    assert words[:2] == ["dcounter-node", "ready"]
    assert [word.split("=")[0] for word in words[2:]] == ["gossip", "http", "replica", "pid"]
    assert ready.pid == node.pid
    assert ready.replica.startswith(ready.gossip + "#")
    for address in (ready.gossip, ready.http):
        host, port = address.rsplit(":", 1)
        assert (host, port != "0") == ("127.0.0.1", True)
    async with (
        aiohttp.ClientSession() as session,
        session.get(node.url + "/health") as response,
    ):
        assert await response.json() == {"status": "ok"}
    node.signal(signal.SIGINT)
    assert await node.wait_exit() == 0


async def test_sigterm_ends_open_watch_streams_and_exits_0(spawn_node: SpawnNode) -> None:
    node = await spawn_node(*FREE)
    await node.wait_ready()
    async with aiohttp.ClientSession() as session, session.get(node.url + "/counter/watch") as r:
        assert await asyncio.wait_for(r.content.readline(), 10) == b'data: {"value": 0}\n'
        node.signal(signal.SIGTERM)
        assert await node.wait_exit() == 0
        assert await asyncio.wait_for(r.content.read(), 10) == b"\n"
    assert _gone(node.pid)


@pytest.mark.parametrize("flag", ["--listen", "--http"])
async def test_address_in_use_exits_1_with_a_clear_message(
    spawn_node: SpawnNode, flag: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        other = "--http" if flag == "--listen" else "--listen"
        node = await spawn_node(flag, address, other, "127.0.0.1:0", "--in-memory")
        assert await node.wait_exit() == 1
    what = "gossip" if flag == "--listen" else "HTTP"
    (line,) = [line for line in node.log_text().splitlines() if "error" in line]
    assert line == f"dcounter-node: error: cannot listen for {what} on {address}: " + os.strerror(
        errno.EADDRINUSE
    )


def test_console_script_rejects_bad_flags_with_exit_2(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("dcounter-node")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "dcounter_node"]
    result = subprocess.run(
        [*command, "--sync-interval", "0"], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines()[-1] == (
        "dcounter-node: error: argument --sync-interval: expected a number of seconds > 0, "
        "e.g. 0.5; got '0'"
    )

"""dcounter-node processes with API tokens and HTTPS: flags, SIGHUP, exposure at start."""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

import aiohttp
import httpx
import pytest

if TYPE_CHECKING:
    from pathlib import Path

    from tests.conftest import SpawnNode, WaitUntil
    from tests.service.conftest import ServerCert

    from dcounter_node.testing import NodeProcess

pytestmark = pytest.mark.slow

FREE = ("--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--in-memory")
OLD = "old-token-9d2c4e6a8b0f"
NEW = "new-token-1a3c5e7b9d2f"


async def _status(node: NodeProcess, path: str, token: str | None, method: str = "POST") -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.request(method, f"http://{node.http}{path}", headers=headers) as response,
    ):
        return response.status


async def test_sighup_rereads_the_token_file(
    spawn_node: SpawnNode, wait_until: WaitUntil, tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"write {OLD}\n")
    node = await spawn_node(*FREE, "--api-tokens", str(tokens))
    await node.wait_ready()
    assert await _status(node, "/increment", OLD) == 200
    assert await _status(node, "/increment", NEW) == 401

    tokens.write_text(f"# rotated\nwrite {NEW}\n")
    node.signal(signal.SIGHUP)

    async def rotated() -> bool:
        return await _status(node, "/counter", NEW, "GET") == 200

    await wait_until(rotated, what="the new token to be accepted")
    assert await _status(node, "/increment", NEW) == 200
    assert await _status(node, "/increment", OLD) == 401
    assert "API tokens reloaded" in node.log_text()

    # A broken file keeps the tokens in use, and says so in one line.
    tokens.write_text(f"write {NEW}\nwrite\n")
    node.signal(signal.SIGHUP)

    async def refused() -> bool:
        return "API tokens not reloaded" in node.log_text()

    await wait_until(refused, what="the reload failure to be logged")
    assert await _status(node, "/increment", NEW) == 200
    stderr = node.log_text()
    failures = [line for line in stderr.splitlines() if "not reloaded" in line]
    assert len(failures) == 1
    assert failures[0].endswith(
        "line 2: expected SCOPE TOKEN (two words: read, write or admin, then the token),"
        " got 1 word(s)"
    )
    assert OLD not in stderr
    assert NEW not in stderr
    node.signal(signal.SIGTERM)
    assert await node.wait_exit() == 0


async def test_tokens_never_reach_the_log_even_at_debug_level(
    spawn_node: SpawnNode, tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"read {OLD}\n")
    node = await spawn_node(*FREE, "--api-tokens", str(tokens), "--log-level", "debug")
    await node.wait_ready()
    assert await _status(node, "/counter", OLD, "GET") == 200
    assert await _status(node, "/increment", OLD) == 403
    assert await _status(node, "/increment", NEW) == 401
    node.signal(signal.SIGTERM)
    assert await node.wait_exit() == 0
    log = node.log_text()
    assert '"GET /counter HTTP/1.1" 200' in log  # the access log is on at debug level
    assert "refused POST /increment from 127.0.0.1 (403, token scope)" in log
    assert OLD not in log
    assert NEW not in log


async def test_a_bad_token_file_stops_the_start_with_exit_2(
    spawn_node: SpawnNode, tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"read {OLD}\nroot {NEW}\n")
    tokens.chmod(0o600)
    node = await spawn_node(*FREE, "--api-tokens", str(tokens))
    assert await node.wait_exit() == 2
    assert node.log_text().splitlines() == [
        f"dcounter-node: error: token file {str(tokens)!r}, line 2: unknown scope 'root'"
        " (expected read, write or admin)"
    ]


async def test_https_from_the_flags_with_tokens(
    spawn_node: SpawnNode, server_cert: ServerCert, tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"read {OLD}\nwrite {NEW}\n")
    node = await spawn_node(
        *FREE,
        "--api-tokens",
        str(tokens),
        "--http-tls-cert",
        str(server_cert.cert),
        "--http-tls-key",
        str(server_cert.key),
    )
    await node.wait_ready()
    url = f"https://{node.http}"
    async with httpx.AsyncClient(verify=server_cert.client_context(), timeout=10) as client:
        response = await client.post(url + "/increment", headers={"Authorization": f"Bearer {NEW}"})
        assert (response.status_code, response.json()) == (200, {"value": 1})
        response = await client.post(url + "/increment", headers={"Authorization": f"Bearer {OLD}"})
        assert response.status_code == 403
        assert (await client.get(url + "/health")).status_code == 200
    assert f"HTTP API on https://{node.http}" in node.log_text()
    assert "API tokens: 1 read, 1 write, 0 admin" in node.log_text()


async def test_a_node_open_to_its_network_warns_once_at_start(
    spawn_node: SpawnNode, tmp_path: Path
) -> None:
    # Tokens on, so the moment this API listens beyond loopback it still refuses strangers.
    tokens = tmp_path / "tokens"
    tokens.write_text(f"write {OLD}\n")
    node = await spawn_node(
        "--listen", "127.0.0.1:0", "--http", "0.0.0.0:0", "--in-memory", "--api-tokens", str(tokens)
    )
    await node.wait_ready()
    warnings = [line for line in node.log_text().splitlines() if "open to its network" in line]
    assert len(warnings) == 1
    assert "the HTTP API listens on 0.0.0.0:0 without HTTPS" in warnings[0]
    assert "--require-auth" in warnings[0]
    assert "gossip" not in warnings[0]


async def test_loopback_only_nodes_do_not_warn_and_sighup_does_not_stop_them(
    spawn_node: SpawnNode, wait_until: WaitUntil
) -> None:
    node = await spawn_node(*FREE)
    await node.wait_ready()
    assert "open to its network" not in node.log_text()
    node.signal(signal.SIGHUP)

    async def handled() -> bool:
        return "SIGHUP received" in node.log_text()

    await wait_until(handled, what="the SIGHUP to be logged")
    assert await _status(node, "/increment", None) == 200


async def test_require_auth_refuses_to_start_a_node_open_to_its_network(
    spawn_node: SpawnNode, tmp_path: Path
) -> None:
    node = await spawn_node(
        *("--listen", "0.0.0.0:0", "--advertise", "127.0.0.1:7001", "--http", "127.0.0.1:0"),
        *("--in-memory", "--require-auth"),
    )
    assert await node.wait_exit() == 2
    assert node.log_text().splitlines() == [
        "dcounter-node: error: refusing to start (--require-auth): gossip listens on"
        " 0.0.0.0:0 without TLS: anyone who can reach it can rewrite the counter"
    ]


async def test_require_auth_lets_a_loopback_node_start(spawn_node: SpawnNode) -> None:
    node = await spawn_node(*FREE, "--require-auth")
    await node.wait_ready()
    assert await _status(node, "/increment", None) == 200

"""dcounter-node processes gossiping over mutual TLS (issue 13): an exact cluster, refused
intruders, certificate rotation by SIGHUP.

A node with ``--tls-cert/--tls-key`` (and no ``--http-tls-*``) serves its API over HTTPS
with the gossip certificate, so the tests talk HTTPS to it, trusting the cluster CA."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import signal
import ssl
from functools import partial
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
import trustme

from dcounter_protocol import (
    ConnectError,
    Push,
    TCPOptions,
    TCPTransport,
    encode_frame,
    encode_message,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from tests.conftest import IssueTLS, SpawnNode, TLSFiles, WaitUntil

    from dcounter_node.testing import NodeProcess

pytestmark = pytest.mark.slow

FREE = ("--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--in-memory")
FAST = ("--sync-interval", "0.2")


@pytest.fixture
def trust(cluster_ca: trustme.CA) -> ssl.SSLContext:
    """What the test's HTTPS requests verify nodes with: the cluster CA (a test may add)."""
    context = ssl.create_default_context()
    cluster_ca.configure_trust(context)
    return context


@pytest.fixture
async def session(trust: ssl.SSLContext) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=10), connector=aiohttp.TCPConnector(ssl=trust)
    ) as client:
        yield client


def api(node: NodeProcess) -> str:
    """The node's API base URL, in the scheme it says it serves (its start-up log line)."""
    scheme = "https" if f"HTTP API on https://{node.http}" in node.log_text() else "http"
    return f"{scheme}://{node.http}"


async def start(spawn_node: SpawnNode, files: TLSFiles, *extra: str) -> NodeProcess:
    node = await spawn_node(*FREE, *FAST, *files.flags(), *extra)
    await node.wait_ready()
    assert api(node).startswith("https://"), "a TLS node serves its API over HTTPS"
    return node


async def post(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> None:
    async with session.post(url, json=body) as response:
        assert response.status in (200, 201), await response.text()


async def mesh(session: aiohttp.ClientSession, nodes: list[NodeProcess]) -> None:
    for node in nodes:
        for other in nodes:
            if other is not node:
                await post(session, api(node) + "/peers", {"addr": other.gossip})


async def value(session: aiohttp.ClientSession, node: NodeProcess) -> int:
    async with session.get(api(node) + "/counter") as response:
        body = await response.json()
    result: int = body["value"]
    return result


async def metric(session: aiohttp.ClientSession, node: NodeProcess, name: str) -> float:
    async with session.get(api(node) + "/metrics") as response:
        text = await response.text()
    match = re.search(rf"^{name}(?:_total)? (\S+)$", text, re.MULTILINE)
    assert match is not None, f"{name} not in /metrics"
    return float(match.group(1))


async def converged(
    session: aiohttp.ClientSession, nodes: list[NodeProcess], expected: int
) -> bool:
    return [await value(session, node) for node in nodes] == [expected] * len(nodes)


def forged_payload() -> bytes:
    """A well-formed push claiming 1000 increments for a made-up replica."""
    return encode_message(Push("intruder", {"intruder#1": 1000}, None))


async def test_a_tls_cluster_of_three_processes_converges_exactly(
    spawn_node: SpawnNode,
    issue_tls: IssueTLS,
    wait_until: WaitUntil,
    session: aiohttp.ClientSession,
) -> None:
    nodes = [await start(spawn_node, issue_tls(name)) for name in "abc"]
    await mesh(session, nodes)

    await post(session, api(nodes[0]) + "/increment", {"by": 5})
    await post(session, api(nodes[1]) + "/increment", {"by": 7})
    await post(session, api(nodes[2]) + "/decrement", {"by": 3})

    await wait_until(lambda: converged(session, nodes, 9), what="every node to read 9")
    for node in nodes:
        assert await metric(session, node, "dcounter_transport_tls_refused") == 0
        assert await metric(session, node, "dcounter_transport_streams_opened") >= 1
        assert "(mutual TLS)" in node.log_text()


async def test_forged_pushes_without_a_cluster_certificate_change_nothing(
    spawn_node: SpawnNode,
    issue_tls: IssueTLS,
    wait_until: WaitUntil,
    session: aiohttp.ClientSession,
) -> None:
    node = await start(spawn_node, issue_tls("a"))
    await post(session, api(node) + "/increment", {"by": 2})
    host, _, port = node.gossip.rpartition(":")

    # As plaintext, the seed's framing:
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(encode_frame("127.0.0.1:1", forged_payload()))
    writer.write_eof()
    with contextlib.suppress(ConnectionError):
        await asyncio.wait_for(reader.read(), 10)
    writer.close()
    # With a certificate from another CA:
    stranger = issue_tls("stranger", ca=trustme.CA()).options()
    async with TCPTransport(options=TCPOptions(tls=stranger, wire="seed")) as intruder:
        with contextlib.suppress(ConnectError):
            await intruder.send(node.gossip, forged_payload())

    async def refused_twice() -> bool:
        return await metric(session, node, "dcounter_transport_tls_refused") == 2

    await wait_until(refused_twice, what="both forged connections to be refused")
    assert await value(session, node) == 2
    # The same push with a cluster certificate is taken: the refusals above were the TLS.
    member = issue_tls("member").options()
    async with TCPTransport(options=TCPOptions(tls=member, wire="seed")) as insider:
        await insider.send(node.gossip, forged_payload())

    async def merged() -> bool:
        return await value(session, node) == 1002

    await wait_until(merged, what="the member's push to be merged")


async def test_a_peer_with_an_expired_certificate_cannot_join(
    spawn_node: SpawnNode,
    issue_tls: IssueTLS,
    wait_until: WaitUntil,
    session: aiohttp.ClientSession,
) -> None:
    good = [await start(spawn_node, issue_tls(name)) for name in "ab"]
    # Its API gets a valid certificate of its own, so the test can reach it over HTTPS.
    api_files = issue_tls("old-api")
    api_certificate = ("--http-tls-cert", str(api_files.cert), "--http-tls-key", str(api_files.key))
    expired = await start(spawn_node, issue_tls("old", expired=True), *api_certificate)
    await mesh(session, [*good, expired])
    await post(session, api(good[0]) + "/increment", {"by": 5})
    await post(session, api(good[1]) + "/increment", {"by": 7})
    await post(session, api(expired) + "/increment", {"by": 100})

    async def both_ways_refused() -> bool:
        # It dialled a member and was refused; a member dialled it and refused its certificate.
        refused = [await metric(session, n, "dcounter_transport_tls_refused") for n in good]
        failed = [await metric(session, n, "dcounter_transport_tls_dial_failures") for n in good]
        return sum(refused) >= 2 and sum(failed) >= 2

    await wait_until(lambda: converged(session, good, 12), what="the members to read 12")
    await wait_until(both_ways_refused, what="the expired peer to be refused both ways")
    assert await converged(session, good, 12)
    assert await value(session, expired) == 100


async def reloaded(nodes: list[NodeProcess], times: int) -> bool:
    return all(node.log_text().count("TLS certificates reloaded") == times for node in nodes)


async def test_rotation_by_sighup_keeps_the_cluster_converging(
    spawn_node: SpawnNode,
    issue_tls: IssueTLS,
    wait_until: WaitUntil,
    trust: ssl.SSLContext,
    session: aiohttp.ClientSession,
) -> None:
    """A CA rotation in three SIGHUPs: trust both CAs, move to new certificates, drop the
    old CA. A node started afterwards with only the new CA joins; the old CA is refused."""
    files = [issue_tls(name) for name in "abc"]
    nodes = [await start(spawn_node, f) for f in files]
    await mesh(session, nodes)
    await post(session, api(nodes[0]) + "/increment", {"by": 1})
    await wait_until(lambda: converged(session, nodes, 1), what="every node to read 1")

    new_ca = trustme.CA()
    new_ca.configure_trust(trust)  # the API's HTTPS certificates rotate with the gossip ones
    renewed = [issue_tls(f"{name}-new", ca=new_ca) for name in "abc"]
    both = files[0].ca.read_bytes() + new_ca.cert_pem.bytes()
    for total, step in enumerate(("trust both", "new certificates", "drop old CA"), start=2):
        for node, old, new in zip(nodes, files, renewed, strict=True):
            if step == "trust both":
                old.ca.write_bytes(both)
            elif step == "new certificates":
                shutil.copy(new.cert, old.cert)
                shutil.copy(new.key, old.key)
            else:
                old.ca.write_bytes(new_ca.cert_pem.bytes())
            node.signal(signal.SIGHUP)
        await wait_until(partial(reloaded, nodes, total - 1), what=f"reload {total - 1}")
        await post(session, api(nodes[total % 3]) + "/increment", {"by": 1})
        await wait_until(partial(converged, session, nodes, total), what=f"all at {total}")

    newcomer_files = issue_tls("d-new", ca=new_ca)
    newcomer_files.ca.write_bytes(new_ca.cert_pem.bytes())
    newcomer = await start(spawn_node, newcomer_files, "--peers", nodes[0].gossip)
    await post(session, api(nodes[0]) + "/peers", {"addr": newcomer.gossip})
    await wait_until(lambda: converged(session, [*nodes, newcomer], 4), what="the newcomer")
    old_ca_member = issue_tls("old-member").options()  # signed by the retired CA
    async with TCPTransport(options=TCPOptions(tls=old_ca_member, wire="seed")) as retired:
        with pytest.raises(ConnectError, match="certificate verify failed"):
            await retired.send(nodes[1].gossip, forged_payload())


async def test_a_failed_reload_keeps_the_old_certificates(
    spawn_node: SpawnNode,
    issue_tls: IssueTLS,
    wait_until: WaitUntil,
    session: aiohttp.ClientSession,
) -> None:
    files = [issue_tls(name) for name in "ab"]
    nodes = [await start(spawn_node, f) for f in files]
    await mesh(session, nodes)
    files[0].cert.write_text("not a certificate\n")

    nodes[0].signal(signal.SIGHUP)

    async def logged() -> bool:
        return "keeping the current TLS certificates" in nodes[0].log_text()

    await wait_until(logged, what="the reload failure to be logged")
    assert nodes[0].log_text().count("keeping the current TLS certificates") == 1
    await post(session, api(nodes[1]) + "/increment", {"by": 4})
    await wait_until(lambda: converged(session, nodes, 4), what="both nodes to read 4")
    # A new connection still gets the old (valid) certificate.
    member = issue_tls("member").options()
    async with TCPTransport(options=TCPOptions(tls=member, wire="seed")) as insider:
        await insider.send(nodes[0].gossip, forged_payload())
    await wait_until(lambda: converged(session, nodes, 1004), what="the member's push")


async def test_a_plain_node_listed_as_plaintext_peer_converges_with_tls_nodes(
    spawn_node: SpawnNode,
    issue_tls: IssueTLS,
    wait_until: WaitUntil,
    session: aiohttp.ClientSession,
) -> None:
    """The Go reference's place: a node without TLS, speaking the seed's framing."""
    plain = await spawn_node(*FREE, *FAST, "--wire", "seed")
    await plain.wait_ready()
    exception = ("--plaintext-peers", plain.gossip)
    members = [await start(spawn_node, issue_tls(name), *exception) for name in "ab"]
    nodes = [plain, *members]
    await mesh(session, nodes)

    for by, node in zip((2, 3, 4), nodes, strict=True):
        await post(session, api(node) + "/increment", {"by": by})

    await wait_until(lambda: converged(session, nodes, 9), what="every node to read 9")
    for member in members:
        assert await metric(session, member, "dcounter_transport_tls_refused") == 0

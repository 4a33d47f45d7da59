"""TCPTransport over mutual TLS: who gets in, what is counted, plaintext peers, rotation.

The transport contract itself runs over TLS in ``test_conformance.py`` (``tls-*`` kits).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from typing import TYPE_CHECKING

import pytest
import trustme

from dcounter_protocol._errors import ConnectError, InvalidOptionError
from dcounter_protocol._framing import encode_frame
from dcounter_protocol._tcp import TCPOptions, TCPTransport, TLSOptions
from dcounter_protocol.testing import check_transport

if TYPE_CHECKING:
    from pathlib import Path

    from tests.conftest import IssueTLS
    from tests.protocol.transport.conftest import Inbox, MakeTCP, RawClients, WaitUntil

    from dcounter_protocol._tcp import WireMode

LOGGER = "dcounter_protocol._tcp"
FORGED = encode_frame("127.0.0.1:1", b"forged push")


@pytest.fixture(params=["seed", "auto"])
def wire(request: pytest.FixtureRequest) -> WireMode:
    mode: WireMode = request.param
    return mode


async def tls_listener(make_tcp: MakeTCP, tls: TLSOptions, inbox: Inbox) -> TCPTransport:
    listener = make_tcp(tls=tls, first_byte_timeout=5.0)
    await listener.listen(inbox)
    return listener


async def test_peers_with_cluster_certificates_exchange_messages(
    make_tcp: MakeTCP, issue_tls: IssueTLS, inbox: Inbox, wire: WireMode
) -> None:
    listener = await tls_listener(make_tcp, issue_tls("a").options(), inbox)
    sender = make_tcp(tls=issue_tls("b").options(), wire=wire)
    await sender.listen(inbox)

    for index in range(3):
        await sender.send(listener.address, b"message %d" % index)

    assert await inbox.get_many(3) == [(sender.address, b"message %d" % i) for i in range(3)]
    assert listener.stats().tls_refused == 0


async def test_a_plaintext_frame_is_refused_in_the_handshake_and_counted(
    make_tcp: MakeTCP,
    issue_tls: IssueTLS,
    inbox: Inbox,
    raw: RawClients,
    wait_until: WaitUntil,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    listener = await tls_listener(make_tcp, issue_tls("a").options(), inbox)

    await raw.send_raw(listener.address, FORGED)

    await wait_until(lambda: listener.stats().tls_refused == 1)
    assert inbox.queue.empty()
    assert listener.stats().seed_received == 0
    [line] = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    # The decoder never saw a byte: the refusal happened before anything was read from it.
    assert "(0 bytes received)" in line


@pytest.mark.parametrize("who", ["other CA", "expired"])
async def test_a_sender_without_a_valid_cluster_certificate_is_refused(
    make_tcp: MakeTCP,
    issue_tls: IssueTLS,
    inbox: Inbox,
    wait_until: WaitUntil,
    wire: WireMode,
    who: str,
) -> None:
    listener = await tls_listener(make_tcp, issue_tls("a").options(), inbox)
    if who == "expired":
        bad = issue_tls("intruder", expired=True)
    else:
        bad = issue_tls("intruder", ca=trustme.CA())
    intruder = make_tcp(tls=bad.options(), wire=wire, handshake_timeout=0.5)

    # TLS 1.3 finishes the client's side before the server checked its certificate: the
    # send may look fine to the intruder; what matters is that nothing gets in.
    with contextlib.suppress(ConnectError):
        await intruder.send(listener.address, b"forged push")

    await wait_until(lambda: listener.stats().tls_refused >= 1)
    assert inbox.queue.empty()
    stats = listener.stats()
    assert (stats.seed_received, stats.stream_received) == (0, 0)


async def test_a_client_without_a_certificate_is_refused(
    make_tcp: MakeTCP,
    issue_tls: IssueTLS,
    cluster_ca: trustme.CA,
    inbox: Inbox,
    wait_until: WaitUntil,
) -> None:
    listener = await tls_listener(make_tcp, issue_tls("a").options(), inbox)
    context = ssl.create_default_context()
    context.check_hostname = False
    cluster_ca.configure_trust(context)
    host, _, port = listener.address.rpartition(":")

    reader, writer = await asyncio.open_connection(host, int(port), ssl=context)
    try:
        writer.write(FORGED)
        with contextlib.suppress(ssl.SSLError, ConnectionResetError):
            await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            await writer.wait_closed()

    await wait_until(lambda: listener.stats().tls_refused == 1)
    assert inbox.queue.empty()


async def test_dialling_a_server_from_another_ca_fails_and_is_counted(
    make_tcp: MakeTCP, issue_tls: IssueTLS, inbox: Inbox
) -> None:
    stranger = await tls_listener(make_tcp, issue_tls("x", ca=trustme.CA()).options(), inbox)
    sender = make_tcp(tls=issue_tls("a").options(), wire="seed")

    with pytest.raises(ConnectError, match="certificate verify failed"):
        await sender.send(stranger.address, b"secret counts")

    assert sender.stats().tls_dial_failures == 1
    assert inbox.queue.empty()


async def test_a_plaintext_peer_is_dialled_without_tls(
    make_tcp: MakeTCP, issue_tls: IssueTLS, inbox: Inbox, wire: WireMode
) -> None:
    go_node = make_tcp()  # a plain listener, as the Go reference is
    await go_node.listen(inbox)
    sender = make_tcp(tls=issue_tls("a").options(plaintext_peers=(go_node.address,)), wire=wire)
    await sender.listen(inbox)

    await sender.send(go_node.address, b"hello go")

    assert await inbox.get() == (sender.address, b"hello go")


async def test_plaintext_is_accepted_only_from_a_plaintext_peer_ip(
    make_tcp: MakeTCP,
    issue_tls: IssueTLS,
    inbox: Inbox,
    raw: RawClients,
    wait_until: WaitUntil,
) -> None:
    files = issue_tls("a")
    trusting = await tls_listener(
        make_tcp, files.options(plaintext_peers=("127.0.0.1:7946",)), inbox
    )
    peer = make_tcp(tls=issue_tls("b").options(), wire="seed")

    await raw.send_raw(trusting.address, FORGED)
    assert await inbox.get() == ("127.0.0.1:1", b"forged push")
    # A 22-byte sender address starts the frame with 0x16, as a TLS record does.
    await raw.send_raw(trusting.address, encode_frame("go-node.example.o:7946", b"go"))
    assert await inbox.get() == ("go-node.example.o:7946", b"go")
    # The same source IP may still speak TLS: the first bytes tell which.
    await peer.send(trusting.address, b"over tls")
    assert await inbox.get() == (peer.address, b"over tls")

    strict = await tls_listener(make_tcp, files.options(plaintext_peers=("10.9.9.9:1",)), inbox)
    await raw.send_raw(strict.address, FORGED)
    await wait_until(lambda: strict.stats().tls_refused == 1)
    assert inbox.queue.empty()


async def test_set_tls_applies_to_new_connections(
    make_tcp: MakeTCP, issue_tls: IssueTLS, inbox: Inbox, wait_until: WaitUntil
) -> None:
    new_ca = trustme.CA()
    listener = await tls_listener(make_tcp, issue_tls("a").options(), inbox)
    sender = make_tcp(tls=issue_tls("b").options(), wire="seed")
    await sender.send(listener.address, b"before")
    assert await inbox.get() == (sender.address, b"before")

    # The sender moves to a certificate the listener does not trust: refused from now on.
    sender.set_tls(issue_tls("b2", ca=new_ca).options())
    with contextlib.suppress(ConnectError):
        await sender.send(listener.address, b"after")
    await wait_until(lambda: listener.stats().tls_refused == 1)
    assert inbox.queue.empty()


async def test_set_tls_needs_a_tls_transport(make_tcp: MakeTCP, issue_tls: IssueTLS) -> None:
    plain = make_tcp()

    with pytest.raises(InvalidOptionError, match="without TLS"):
        plain.set_tls(issue_tls("a").options())
    assert plain.tls is None


def test_options_name_the_file_that_cannot_be_loaded(issue_tls: IssueTLS, tmp_path: Path) -> None:
    files = issue_tls("a")
    missing = tmp_path / "missing.pem"

    with pytest.raises(InvalidOptionError, match=r"missing\.pem"):
        TLSOptions.from_files(files.cert, files.key, missing)
    with pytest.raises(InvalidOptionError, match=r"missing\.pem"):
        TLSOptions.from_files(missing, files.key, files.ca)


def test_contexts_require_tls_1_3_and_a_certificate_both_ways(issue_tls: IssueTLS) -> None:
    tls = issue_tls("a").options()

    for context in (tls.server_context, tls.client_context):
        assert context.minimum_version is ssl.TLSVersion.TLSv1_3
        assert context.verify_mode is ssl.CERT_REQUIRED
        assert not context.check_hostname


@pytest.mark.parametrize("peer", ["node.example:7946", "127.0.0.1", "127.0.0.1:0"])
def test_plaintext_peers_must_be_ip_and_port(issue_tls: IssueTLS, peer: str) -> None:
    with pytest.raises(InvalidOptionError, match="plaintext peer"):
        issue_tls("a").options(plaintext_peers=(peer,))


def test_tcp_options_reject_a_tls_that_is_not_tls_options() -> None:
    with pytest.raises(InvalidOptionError, match="TLSOptions"):
        TCPOptions(tls="yes")  # type: ignore[arg-type]


def test_repr_says_tls(issue_tls: IssueTLS) -> None:
    transport = TCPTransport(options=TCPOptions(tls=issue_tls("a").options()))

    assert repr(transport).endswith(" tls>")


def test_the_transport_contract_holds_over_tls_on_uvloop(
    issue_tls: IssueTLS, make_inbox: type[Inbox], free_address: str
) -> None:
    """uvloop has its own TLS transport: the whole suite, and a refusal, on it."""
    uvloop = pytest.importorskip("uvloop")
    tls = issue_tls("a").options()
    intruder = issue_tls("intruder", ca=trustme.CA()).options()
    options = TCPOptions(dial_timeout=5.0, read_timeout=5.0, write_timeout=5.0, tls=tls)

    async def scenario() -> int:
        await check_transport(
            lambda: TCPTransport(options=options), unreachable=lambda: free_address
        )
        inbox = make_inbox()
        async with TCPTransport(options=options) as listener:
            await listener.listen(inbox)
            async with TCPTransport(options=TCPOptions(tls=intruder, wire="seed")) as sender:
                with contextlib.suppress(ConnectError):
                    await sender.send(listener.address, b"forged push")
            async with asyncio.timeout(5):
                while listener.stats().tls_refused == 0:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            return inbox.queue.qsize()

    assert uvloop.run(scenario()) == 0

"""One ``dcounter-node`` process, running: its parts, their start order and their stop order.

:func:`serve` is what ``dcounter-node`` runs once its settings are checked
(:mod:`dcounter_node._cli`): it composes the node (transport, store, tombstones) with
membership, DNS seeds, pruning and bequests (:class:`_Parts`), starts the gossip side, then
the Redis protocol and the HTTP API, prints the ready line and waits for SIGINT/SIGTERM.

The stop order matters: the API servers close first, so no write comes after and this
node's own entry is final when it is bequeathed; then pruning stops, the leave is
announced (members mark it left at once), and the node closes (its last commit).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from aiohttp.log import access_logger

from dcounter_node._bequest_service import BequestService, load_bequests
from dcounter_node._errors import ConfigError, StorageError
from dcounter_node._http import create_app
from dcounter_node._http_server import start_http_server
from dcounter_node._membership_dns import DNSJoiner
from dcounter_node._membership_service import MembershipService, membership_config
from dcounter_node._node import Node
from dcounter_node._peers import PeerManager
from dcounter_node._pruning import Tombstones
from dcounter_node._pruning_service import JOURNAL_FILENAME, PruningService, load_journal
from dcounter_node._ready import ReadyLine
from dcounter_node._resp_server import start_resp_server
from dcounter_node._settings import parse_address
from dcounter_node._storage_sqlite import DATABASE_FILENAME, SQLiteStore, default_data_dir
from dcounter_protocol import CAP_MEMBERSHIP, CAP_NAMED, InvalidOptionError, TransportError
from dcounter_protocol._tcp import TCPOptions, TCPTransport, TLSOptions

if TYPE_CHECKING:
    from dcounter_node._config import NodeConfig
    from dcounter_node._http_server import HTTPServer
    from dcounter_node._resp_server import RespServer
    from dcounter_node._security import HTTPSecurity
    from dcounter_node._settings import NodeSettings
    from dcounter_node._storage_sqlite import Durability
    from dcounter_protocol._tcp import WireMode

__all__ = ["EXIT_FAILURE", "EXIT_STORAGE", "error", "serve", "store_for", "tls_options"]

_log = logging.getLogger(__name__)

#: Exit status when an address cannot be bound (in use, not local) or the node fails.
EXIT_FAILURE: Final = 1
#: Exit status when the data directory's database cannot be used (see the README).
EXIT_STORAGE: Final = 3


def error(message: str) -> None:
    """One line on stderr, as every refusal to start or stop cleanly is reported."""
    print(f"dcounter-node: error: {message}", file=sys.stderr, flush=True)


def tls_options(settings: NodeSettings) -> TLSOptions | None:
    """Gossip TLS from the three files (None without them); ConfigError if unusable."""
    files = settings.tls_files()
    if files is None:
        return None
    try:
        return TLSOptions.from_files(*files, plaintext_peers=settings.plaintext_peers)
    except InvalidOptionError as exc:
        raise ConfigError(str(exc)) from None


def store_for(settings: NodeSettings) -> SQLiteStore | None:
    """The durable store the settings ask for (issue 7), or None to run in memory."""
    if settings.in_memory:
        return None
    if settings.data_dir is not None:
        directory = Path(settings.data_dir).expanduser()
    elif parse_address(settings.listen)[1] == 0:
        _log.warning(
            "listening on port 0 without --data-dir: running in memory (a new replica id"
            " every start); pass --data-dir DIR to keep state, or --in-memory to silence this"
        )
        return None
    else:
        directory = default_data_dir(settings.listen)
    _log.info("state in %s (durability %s)", directory, settings.durability)
    durability: Durability = "always" if settings.durability == "always" else "batched"
    return SQLiteStore(
        directory / DATABASE_FILENAME,
        durability=durability,
        node_address=settings.listen,
        key_ttl=settings.idempotency_ttl,
        max_keys=settings.idempotency_keys,
    )


@dataclass(eq=False)
class _Parts:
    """Everything one process runs besides its API servers, wired together."""

    settings: NodeSettings
    store: SQLiteStore | None
    transport: TCPTransport
    node: Node
    members: MembershipService
    dns: DNSJoiner | None
    pruning: PruningService
    bequests: BequestService

    @classmethod
    def compose(cls, settings: NodeSettings, config: NodeConfig, tls: TLSOptions | None) -> _Parts:
        """The parts, none started; StorageError when the data directory's files are bad."""
        store = store_for(settings)
        directory = None if store is None else store.path.parent
        journal = None if directory is None else directory / JOURNAL_FILENAME
        tombstones = Tombstones() if journal is None else load_journal(journal)
        heirloom, bequeathed = load_bequests(directory)
        wire: WireMode = "seed" if settings.wire == "seed" else "auto"
        transport = TCPTransport(
            settings.listen,
            options=TCPOptions(wire=wire, tls=tls, capabilities=CAP_MEMBERSHIP | CAP_NAMED),
            advertise=settings.advertise,
        )
        node = Node(
            transport,
            config,
            peers=PeerManager(peers=settings.peers),
            store=store,
            tombstones=tombstones,
        )
        members = MembershipService(
            node,
            seeds=settings.join,
            static_peers=settings.peers,
            config=membership_config(
                settings.probe_interval,
                settings.suspect_timeout,
                max_members=settings.max_members,
                forget_after=settings.forget_after or None,
            ),
        )
        dns = (
            None
            if settings.join_dns is None
            else DNSJoiner(members, settings.join_dns, interval=settings.join_dns_interval)
        )
        pruning = PruningService(
            node,
            members,
            tombstones,
            prune_after=settings.prune_after or None,
            interval=settings.probe_interval,
            journal=journal,
        )
        bequests = BequestService(
            pruning, heirloom, bequeathed, directory=directory, store=store, standing=True
        )
        return cls(settings, store, transport, node, members, dns, pruning, bequests)

    async def start(self) -> None:
        """Gossip, membership and pruning (StorageError, TransportError or OSError)."""
        await self.node.start()
        self.bequests.started()  # before the API opens: no write under the id before
        self.members.start()
        self.pruning.start()

    async def stop(self) -> StorageError | None:
        """After the API servers closed: bequeath, stop pruning, leave, close the node.

        Returns the error of a last commit that failed (changes never acknowledged).
        """
        if self.dns is not None:
            await self.dns.close()
        probe = self.settings.probe_interval
        await self.bequests.bequeath(wait=min(max(2 * probe, 0.5), 5.0))
        await self.pruning.close()
        # Members mark a node that says it leaves as left at once, not after a timeout.
        await self.members.leave()
        await self.members.close()
        try:
            await self.node.close()
        except StorageError as exc:
            return exc
        return None

    async def abandon(self) -> None:
        """Close what started when the process cannot serve (an API address is unusable)."""
        await self.pruning.close()
        await self.members.close()
        await self.node.close()


async def serve(
    settings: NodeSettings, config: NodeConfig, tls: TLSOptions | None, security: HTTPSecurity
) -> int:
    """Run the process until SIGINT or SIGTERM; the exit status."""
    stop, received = _stop_on_signals()
    try:
        parts = _Parts.compose(settings, config, tls)
    except StorageError as exc:
        error(f"{exc} (the node was not started; nothing was changed)")
        return EXIT_STORAGE
    try:
        await parts.start()
    except StorageError as exc:
        await parts.node.close()  # idempotent: bequests.started() may fail after the node
        error(f"{exc} (the node was not started; nothing was changed)")
        return EXIT_STORAGE
    except (TransportError, OSError) as exc:
        error(f"cannot listen for gossip on {settings.listen}: {_reason(exc)}")
        return EXIT_FAILURE
    _reload_on_sighup(parts, security)
    try:
        # Before HTTP: a node whose HTTP API answers serves the Redis protocol too.
        resp = await _start_resp(parts, security)
    except OSError as exc:
        await parts.abandon()
        error(f"cannot listen for the Redis protocol on {settings.resp}: {_reason(exc)}")
        return EXIT_FAILURE
    try:
        server = await _start_http(parts, security, resp)
    except OSError as exc:
        if resp is not None:
            await resp.close()
        await parts.abandon()
        error(f"cannot listen for HTTP on {settings.http}: {_reason(exc)}")
        return EXIT_FAILURE
    try:
        _announce(parts, security, server, resp)
        await stop.wait()
        _log.info("%s received: shutting down", received[0] if received else "stop")
    finally:
        # No write after this: the own entry is final, to bequeath before the leave.
        if resp is not None:
            await resp.close()
        await server.close()
        unsaved = await parts.stop()
    if unsaved is not None:
        # Unsaved changes were never acknowledged; the next start is a new incarnation.
        error(f"stopped without saving every change: {unsaved}")
        return EXIT_STORAGE
    _log.info("stopped")
    return 0


def _stop_on_signals() -> tuple[asyncio.Event, list[str]]:
    """An event SIGINT or SIGTERM sets, and the names of the signals received."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    received: list[str] = []

    def on_signal(sig: signal.Signals) -> None:
        received.append(sig.name)
        stop.set()
        # A second signal gets the default behaviour: stop at once.
        for other in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(other)

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # Windows: Ctrl-C still works
            loop.add_signal_handler(sig, on_signal, sig)
    return stop, received


def _reload_on_sighup(parts: _Parts, security: HTTPSecurity) -> None:
    """SIGHUP: the API token file, the HTTPS certificate and the gossip TLS files again."""

    def reload() -> None:
        _log.info("SIGHUP received: reloading")
        security.reload()
        if parts.settings.tls_files() is not None:
            _reload_tls(parts.transport, parts.settings)

    with contextlib.suppress(NotImplementedError, AttributeError):  # no SIGHUP on Windows
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reload)


def _reload_tls(transport: TCPTransport, settings: NodeSettings) -> None:
    """Certificate rotation: the gossip TLS files again; a failure keeps the old ones."""
    try:
        tls = tls_options(settings)
    except ConfigError as exc:
        _log.error("SIGHUP: keeping the current TLS certificates: %s", exc)
        return
    if tls is not None:
        transport.set_tls(tls)
        _log.info("SIGHUP: TLS certificates reloaded; new gossip connections use them")


async def _start_resp(parts: _Parts, security: HTTPSecurity) -> RespServer | None:
    """The Redis-protocol listener with ``--resp`` (OSError when its address is unusable)."""
    settings, node, store = parts.settings, parts.node, parts.store
    if settings.resp is None:
        return None
    return await start_resp_server(
        node.counters,
        # In memory, Node.commit() has nothing to wait for: skip it.
        node.commit if store is not None else None,
        settings.resp,
        limits=settings.resp_limits(),
        tokens=security.tokens,
        health=(lambda: store.problem) if store is not None else None,
        ssl_context=security.ssl_context,
    )


async def _start_http(parts: _Parts, security: HTTPSecurity, resp: RespServer | None) -> HTTPServer:
    """The HTTP API (OSError when its address is unusable)."""
    settings, store = parts.settings, parts.store
    app = create_app(
        parts.node,
        idempotency_keys=settings.idempotency_keys,
        idempotency_ttl=settings.idempotency_ttl,
        storage=store,
        key_journal=store,
        peer_http=dict(settings.peer_http),
        allowed_origins=settings.allowed_origins,
        allowed_hosts=settings.allowed_hosts,
        listen_host=parse_address(settings.http)[0],
        tokens=security.tokens,
        peer_ssl=security.peer_ssl,
        members=parts.members,
        pruning=parts.pruning,
        resp=None if resp is None else resp.shared,
    )
    verbose = logging.getLogger().isEnabledFor(logging.DEBUG)
    return await start_http_server(
        app,
        settings.http,
        access_log=access_logger if verbose else None,
        limits=settings.http_limits(),
        ssl_context=security.ssl_context,
    )


def _announce(
    parts: _Parts, security: HTTPSecurity, server: HTTPServer, resp: RespServer | None
) -> None:
    """Log what is served, start the DNS seeds, print the ready line."""
    node = parts.node
    _log.info(
        "serving: gossip on %s%s, HTTP API on %s://%s, %s%s",
        node.address,
        "" if parts.settings.tls_files() is None else " (mutual TLS)",
        security.scheme,
        server.address,
        _peer_count(len(node.peers)),
        f", API tokens: {security.tokens.summary()}" if security.tokens is not None else "",
    )
    if parts.dns is not None:
        parts.dns.start()
    ready = ReadyLine(node.address, server.address, node.replica_id, os.getpid())
    if resp is not None:
        _log.info(
            "serving the Redis protocol on %s%s",
            resp.address,
            "" if security.ssl_context is None else " (TLS)",
        )
        ready = dataclasses.replace(ready, resp=resp.address)
    print(ready.format(), flush=True)


def _reason(exc: BaseException) -> str:
    """Why binding failed, without the address the caller's message already names."""
    # The transport's error wraps the OSError and repeats "cannot listen on ADDR", and
    # aiohttp's OSError repeats the address too: the errno's own text is the reason.
    cause = exc if isinstance(exc, OSError) else exc.__cause__
    if isinstance(cause, OSError):
        if isinstance(cause.errno, int) and cause.errno > 0:
            return os.strerror(cause.errno)
        if cause.strerror:  # resolver errors (negative codes) carry their own text
            return cause.strerror
    return str(cause or exc)


def _peer_count(count: int) -> str:
    return f"{count} peer" if count == 1 else f"{count} peers"

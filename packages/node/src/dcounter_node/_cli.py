"""The ``dcounter-node`` command: one node with its HTTP API, until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp.log import access_logger

from dcounter_node.__about__ import __version__
from dcounter_node._bequest_service import BequestService, load_bequests
from dcounter_node._errors import ConfigError, StorageError
from dcounter_node._http import create_app
from dcounter_node._http_server import start_http_server
from dcounter_node._logging import configure_logging
from dcounter_node._membership_dns import DNSJoiner
from dcounter_node._membership_service import (
    MembershipService,
    membership_config,
    wildcard_listen,
)
from dcounter_node._node import Node
from dcounter_node._peers import PeerManager
from dcounter_node._pruning import Tombstones
from dcounter_node._pruning_service import JOURNAL_FILENAME, PruningService, load_journal
from dcounter_node._ready import ReadyLine
from dcounter_node._resp_server import RespServer, start_resp_server
from dcounter_node._security import HTTPSecurity, exposure_problems, http_security, is_loopback
from dcounter_node._settings import (
    SETTINGS,
    NodeSettings,
    SettingSpec,
    load_config_file,
    parse_address,
)
from dcounter_node._storage_sqlite import DATABASE_FILENAME, SQLiteStore, default_data_dir
from dcounter_protocol import CAP_MEMBERSHIP, CAP_NAMED, InvalidOptionError, TransportError
from dcounter_protocol._tcp import TCPOptions, TCPTransport, TLSOptions

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from dcounter_node._config import NodeConfig
    from dcounter_node._storage_sqlite import Durability
    from dcounter_protocol._tcp import WireMode

__all__ = ["build_parser", "main", "run", "settings_from_args"]

_log = logging.getLogger(__name__)

PROG = "dcounter-node"
#: Exit status when an address cannot be bound (in use, not local) or the node fails.
EXIT_FAILURE = 1
#: Exit status for bad flags or a bad config file (argparse's own convention).
EXIT_USAGE = 2
#: Exit status when the data directory's database cannot be used (see the README).
EXIT_STORAGE = 3

_DESCRIPTION = """\
Run one dcounter node: a PN-counter replica that gossips with its peers over TCP and
serves an HTTP API (GET /counter, POST /increment, POST /decrement, /peers, /members,
/health, /metrics, /counter/watch) and a live dashboard at GET / (open http://HTTP-ADDRESS/);
with --resp, also the Redis protocol (redis-cli, redis-py, ...) for its counters.
Durations are in seconds; fractions are fine (0.5)."""

_EPILOG = """\
Settings come from, lowest priority first: built-in defaults, the config file's top level,
its [[nodes]] entry chosen with --node, then flags.

examples:
  dcounter-node --listen 127.0.0.1:7001 --http 127.0.0.1:8001 \\
      --peers 127.0.0.1:7002,127.0.0.1:7003 --sync-interval 0.5
  dcounter-node --listen 127.0.0.1:0 --http 127.0.0.1:0      # pick free ports
  dcounter-node --config cluster.toml --node b --log-format json

Once serving, it prints one line to stdout, e.g.
  dcounter-node ready gossip=127.0.0.1:7001 http=127.0.0.1:8001 replica=127.0.0.1:7001#9f3a pid=42
Logs go to stderr. SIGINT or SIGTERM stops the node cleanly; a second signal exits at once.
With --tls-cert/--tls-key/--tls-ca, SIGHUP re-reads the three files: new gossip connections
use them, open ones continue (a file that fails to load is logged and the old ones stay).

State is kept in --data-dir (default $XDG_DATA_HOME/dcounter/<listen address>, i.e.
~/.local/share/dcounter/...); --in-memory opts out, and a node listening on port 0 without
--data-dir runs in memory (it has no stable address to key the directory by).

exit status: 0 stopped by a signal; 1 an address cannot be bound (e.g. in use);
2 bad flags or config file; 3 the database in the data directory cannot be used
(unreadable or corrupt, missing or emptied although the node kept state there, its
write-ahead log lost after a crash, another node's, a newer schema, or in use by another
process), or the node was stopped while its storage was failing."""


def _flag_type(spec: SettingSpec) -> Callable[[str], Any]:
    parse = spec.parse_text
    if parse is None:  # pragma: no cover - boolean settings take no argument
        raise ValueError(f"{spec.key} takes no argument")

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = spec.key
    return convert


def _default_text(spec: SettingSpec, defaults: NodeSettings) -> str:
    if spec.default_text is not None:
        return spec.default_text
    value = getattr(defaults, spec.key)
    return spec.to_text(value) if value is not None else "none"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; one flag per row of :data:`~dcounter_node._settings.SETTINGS`."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config", metavar="FILE", help="TOML file with the same settings (see the README)"
    )
    parser.add_argument(
        "--node",
        metavar="NAME",
        help="which [[nodes]] entry of the config file to run (needed when it has several)",
    )
    defaults = NodeSettings()
    for spec in SETTINGS:
        help_text = f"{spec.help} (default: {_default_text(spec, defaults)})"
        if spec.parse_text is None:
            parser.add_argument(
                spec.flag,
                dest=spec.key,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=help_text,
            )
        else:
            parser.add_argument(
                spec.flag,
                dest=spec.key,
                metavar=spec.metavar,
                type=_flag_type(spec),
                default=argparse.SUPPRESS,
                help=help_text,
            )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def settings_from_args(argv: Sequence[str] | None = None) -> NodeSettings:
    """Parse flags (and the config file they name) into settings.

    Bad flags exit through argparse (status 2); a bad config file raises ConfigError.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.node is not None and args.config is None:
        parser.error("--node needs --config")
    flags = {spec.key: getattr(args, spec.key) for spec in SETTINGS if hasattr(args, spec.key)}
    if args.config is not None:
        base = load_config_file(args.config).settings(args.node)
    else:
        base = NodeSettings()
    return base.updated(flags)


def _error(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run a node until SIGINT/SIGTERM; return the exit status."""
    try:
        settings = settings_from_args(argv)
        config = settings.node_config()
        tls = _tls_options(settings)
        loop_factory = _loop_factory(settings.loop)
        if settings.advertise is None and wildcard_listen(settings.listen):
            raise ConfigError(
                f"--listen {settings.listen} binds every interface, which names no address"
                " for other nodes to dial: pass --advertise HOST:PORT"
            )
    except ConfigError as exc:
        _error(str(exc))
        return EXIT_USAGE
    configure_logging(settings.log_level, settings.log_format)
    try:
        security = http_security(settings)  # after logging: loading may warn
    except ConfigError as exc:
        _error(str(exc))
        return EXIT_USAGE
    if not _exposure_allowed(settings, security):
        return EXIT_USAGE
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(_serve(settings, config, tls, security))
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        return 130


def run() -> None:
    """Console-script entry point."""
    raise SystemExit(main())


def _exposure_allowed(settings: NodeSettings, security: HTTPSecurity) -> bool:
    """Warn about (or, with --require-auth, refuse) listeners open to the network."""
    problems = exposure_problems(
        gossip=settings.listen,
        gossip_tls=settings.tls_cert is not None,
        http=settings.http,
        https=security.ssl_context is not None,
        tokens=security.tokens is not None,
    )
    if settings.resp is not None and not is_loopback(parse_address(settings.resp)[0]):
        protections = (("TLS", security.ssl_context is not None), ("API tokens", security.tokens))
        missing = [what for what, present in protections if not present]
        if missing:
            problems.append(
                f"the Redis protocol listens on {settings.resp} without {' and '.join(missing)}"
            )
    if not problems:
        return True
    if settings.require_auth:
        _error(f"refusing to start (--require-auth): {'; '.join(problems)}")
        return False
    _log.warning(
        "this node is open to its network: %s (see 'Security' in the README; --require-auth"
        " refuses to start like this)",
        "; ".join(problems),
    )
    return True


def _loop_factory(loop: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop ``--loop`` asks for (None: asyncio's own); ConfigError if unavailable."""
    if loop != "uvloop":
        return None
    try:
        import uvloop
    except ImportError:
        raise ConfigError(
            "--loop uvloop: uvloop is not installed; install dcounter-node[fast] or use"
            " --loop asyncio"
        ) from None
    return uvloop.new_event_loop


def _tls_options(settings: NodeSettings) -> TLSOptions | None:
    """Gossip TLS from the three files (None without them); ConfigError if unusable."""
    files = settings.tls_files()
    if files is None:
        return None
    try:
        return TLSOptions.from_files(*files, plaintext_peers=settings.plaintext_peers)
    except InvalidOptionError as exc:
        raise ConfigError(str(exc)) from None


def _reload_tls(transport: TCPTransport, settings: NodeSettings) -> None:
    """Certificate rotation: the gossip TLS files again; a failure keeps the old ones."""
    try:
        tls = _tls_options(settings)
    except ConfigError as exc:
        _log.error("SIGHUP: keeping the current TLS certificates: %s", exc)
        return
    if tls is not None:
        transport.set_tls(tls)
        _log.info("SIGHUP: TLS certificates reloaded; new gossip connections use them")


async def _serve(
    settings: NodeSettings, config: NodeConfig, tls: TLSOptions | None, security: HTTPSecurity
) -> int:
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

    store = _store(settings)
    journal = None if store is None else store.path.parent / JOURNAL_FILENAME
    try:
        tombstones = Tombstones() if journal is None else load_journal(journal)
        heirloom, bequeathed = load_bequests(None if store is None else store.path.parent)
    except StorageError as exc:
        _error(f"{exc} (the node was not started; nothing was changed)")
        return EXIT_STORAGE
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
    directory = None if journal is None else journal.parent
    bequests = BequestService(
        pruning, heirloom, bequeathed, directory=directory, store=store, standing=True
    )
    try:
        await node.start()
        bequests.started()  # before the API opens: no write under the id before
        members.start()
        pruning.start()
    except StorageError as exc:
        await node.close()  # idempotent: started() may fail after the node started
        _error(f"{exc} (the node was not started; nothing was changed)")
        return EXIT_STORAGE
    except (TransportError, OSError) as exc:
        _error(f"cannot listen for gossip on {settings.listen}: {_reason(exc)}")
        return EXIT_FAILURE

    def reload() -> None:
        # SIGHUP: the API token file, the HTTPS certificate and the gossip TLS files again.
        _log.info("SIGHUP received: reloading")
        security.reload()
        if tls is not None:
            _reload_tls(transport, settings)

    with contextlib.suppress(NotImplementedError, AttributeError):  # no SIGHUP on Windows
        loop.add_signal_handler(signal.SIGHUP, reload)
    # Before HTTP: a node whose HTTP API answers serves the Redis protocol too.
    resp: RespServer | None = None
    if settings.resp is not None:
        try:
            resp = await start_resp_server(
                node.counters,
                # In memory, Node.commit() has nothing to wait for: skip it.
                node.commit if store is not None else None,
                settings.resp,
                limits=settings.resp_limits(),
                tokens=security.tokens,
                health=(lambda: store.problem) if store is not None else None,
                ssl_context=security.ssl_context,
            )
        except OSError as exc:
            await members.close()
            await node.close()
            _error(f"cannot listen for the Redis protocol on {settings.resp}: {_reason(exc)}")
            return EXIT_FAILURE
    try:
        app = create_app(
            node,
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
            members=members,
            pruning=pruning,
        )
        verbose = logging.getLogger().isEnabledFor(logging.DEBUG)
        server = await start_http_server(
            app,
            settings.http,
            access_log=access_logger if verbose else None,
            limits=settings.http_limits(),
            ssl_context=security.ssl_context,
        )
    except OSError as exc:
        if resp is not None:
            await resp.close()
        await pruning.close()
        await members.close()
        await node.close()
        _error(f"cannot listen for HTTP on {settings.http}: {_reason(exc)}")
        return EXIT_FAILURE
    try:
        _log.info(
            "serving: gossip on %s%s, HTTP API on %s://%s, %s%s",
            node.address,
            "" if tls is None else " (mutual TLS)",
            security.scheme,
            server.address,
            _peer_count(len(node.peers)),
            f", API tokens: {security.tokens.summary()}" if security.tokens is not None else "",
        )
        if dns is not None:
            dns.start()
        ready = ReadyLine(node.address, server.address, node.replica_id, os.getpid())
        if resp is not None:
            _log.info(
                "serving the Redis protocol on %s%s",
                resp.address,
                "" if security.ssl_context is None else " (TLS)",
            )
            ready = dataclasses.replace(ready, resp=resp.address)
        print(ready.format(), flush=True)
        await stop.wait()
        _log.info("%s received: shutting down", received[0] if received else "stop")
    finally:
        if dns is not None:
            await dns.close()
        # No write after this: the own entry is final, to bequeath before the leave.
        if resp is not None:
            await resp.close()
        await server.close()
        await bequests.bequeath(wait=min(max(2 * settings.probe_interval, 0.5), 5.0))
        await pruning.close()
        # Members mark a node that says it leaves as left at once, not after a timeout.
        await members.leave()
        await members.close()
        unsaved: StorageError | None = None
        try:
            await node.close()
        except StorageError as exc:
            unsaved = exc
    if unsaved is not None:
        # Unsaved changes were never acknowledged; the next start is a new incarnation.
        _error(f"stopped without saving every change: {unsaved}")
        return EXIT_STORAGE
    _log.info("stopped")
    return 0


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


def _store(settings: NodeSettings) -> SQLiteStore | None:
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

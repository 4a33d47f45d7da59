"""The ``dcounter-node`` command: one node with its HTTP API, until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import TYPE_CHECKING, Any

from dcounter_node.__about__ import __version__
from dcounter_node._errors import ConfigError
from dcounter_node._logging import configure_logging
from dcounter_node._membership_service import wildcard_listen
from dcounter_node._process import EXIT_FAILURE, EXIT_STORAGE, error, serve, tls_options
from dcounter_node._security import HTTPSecurity, exposure_problems, http_security, is_loopback
from dcounter_node._settings import (
    SETTINGS,
    NodeSettings,
    SettingSpec,
    load_config_file,
    parse_address,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence


__all__ = [
    "EXIT_FAILURE",
    "EXIT_STORAGE",
    "EXIT_USAGE",
    "build_parser",
    "main",
    "run",
    "settings_from_args",
]

_log = logging.getLogger(__name__)

PROG = "dcounter-node"
#: Exit status for bad flags or a bad config file (argparse's own convention).
EXIT_USAGE = 2

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


def main(argv: Sequence[str] | None = None) -> int:
    """Run a node until SIGINT/SIGTERM; return the exit status."""
    try:
        settings = settings_from_args(argv)
        config = settings.node_config()
        tls = tls_options(settings)
        loop_factory = _loop_factory(settings.loop)
        if settings.advertise is None and wildcard_listen(settings.listen):
            raise ConfigError(
                f"--listen {settings.listen} binds every interface, which names no address"
                " for other nodes to dial: pass --advertise HOST:PORT"
            )
    except ConfigError as exc:
        error(str(exc))
        return EXIT_USAGE
    configure_logging(settings.log_level, settings.log_format)
    try:
        security = http_security(settings)  # after logging: loading may warn
    except ConfigError as exc:
        error(str(exc))
        return EXIT_USAGE
    if not _exposure_allowed(settings, security):
        return EXIT_USAGE
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(serve(settings, config, tls, security))
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
        error(f"refusing to start (--require-auth): {'; '.join(problems)}")
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

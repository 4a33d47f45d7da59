"""``dcounter-cluster``: launch a static dcounter cluster, drive it and check it converges.

run      start N node processes, write to them, optionally kill one / partition them,
         wait for convergence, print a report (exit 0 only if every node is exact)
up       start a cluster in the background and record it in a state directory
status   show each background node's value, peers and members (as that node sees them)
down     stop the background cluster and remove its state
clean    remove network namespaces and links a crashed fault lab left behind

``run --hosts netns`` is the fault lab (see labcli.py and lab.py). The parser is in
cliparser.py, ``run`` in runcli.py, ``up``/``status``/``down`` in statecli.py.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import TYPE_CHECKING

from dcounter_tools.cluster.cliparser import build_parser
from dcounter_tools.cluster.labcli import clean_command
from dcounter_tools.cluster.runcli import run_command
from dcounter_tools.cluster.statecli import down_command, status_command, up_command
from dcounter_tools.errors import ClusterError, LabUnavailableError, UsageError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

__all__ = ["main", "run"]


class _Terminated(Exception):
    """SIGTERM or SIGHUP arrived: stop everything and exit."""


def _install_terminate_handlers(received: list[str]) -> list[signal.Signals]:
    """Turn SIGTERM/SIGHUP into cancelling the main task, so ``finally`` blocks stop nodes."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    installed = []
    for sig in (signal.SIGTERM, signal.SIGHUP):

        def cancel(sig: signal.Signals = sig) -> None:
            received.append(sig.name)
            if task is not None:
                task.cancel()

        try:
            loop.add_signal_handler(sig, cancel)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - not the main thread
            continue
        installed.append(sig)
    return installed


async def _guarded(command: Callable[[], Awaitable[int]]) -> int:
    received: list[str] = []
    installed = _install_terminate_handlers(received)
    try:
        return await command()
    except asyncio.CancelledError:
        if received:
            raise _Terminated(f"terminated by {received[0]}") from None
        raise
    finally:
        loop = asyncio.get_running_loop()
        for sig in installed:
            loop.remove_signal_handler(sig)


_COMMANDS = {
    "run": run_command,
    "up": up_command,
    "status": status_command,
    "down": down_command,
    "clean": clean_command,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``dcounter-cluster`` with ``argv``; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors (status 2)
        return exc.code if isinstance(exc.code, int) else 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    command = _COMMANDS[args.command]
    try:
        result = asyncio.run(_guarded(lambda: command(args)))
    except LabUnavailableError as exc:
        print(f"dcounter-cluster: {exc}", file=sys.stderr)
        return 2
    except UsageError as exc:
        parser.print_usage(sys.stderr)
        print(f"dcounter-cluster: error: {exc}", file=sys.stderr)
        return 2
    except ClusterError as exc:
        print(f"dcounter-cluster: error: {exc}", file=sys.stderr)
        return 1
    except _Terminated as exc:
        print(f"dcounter-cluster: {exc}; every node was stopped", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("dcounter-cluster: interrupted; every node was stopped", file=sys.stderr)
        return 130
    return result


def run() -> None:
    """Console-script entry point."""
    raise SystemExit(main())

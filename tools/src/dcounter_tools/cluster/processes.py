"""Node processes: spawn ``python -m dcounter_node``, read its ready line, stop it for sure.

Every node runs in its own session (process group), so a Ctrl-C in the terminal reaches
only the launcher, which then stops its nodes itself: SIGTERM to the group, a grace
period, SIGKILL. Attached nodes (``run``) are also recorded in a module registry that an
``atexit`` hook kills, so even an unexpected exit of the launcher leaves nothing behind.
Detached nodes (``up``) are started with ``posix_spawn`` in a new session and outlive the
launcher on purpose; :func:`terminate_pid` stops them later by pid.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from dcounter_node import ReadyLine, ReadyLineError, parse_ready_line
from dcounter_tools.errors import NodeStartError

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "NodeProcess",
    "is_node_process",
    "node_command",
    "pid_alive",
    "read_ready_line",
    "spawn_detached",
    "terminate_pid",
    "wait_ready_file",
]

#: How often detached nodes' output files and pids are polled.
_POLL = 0.02
_LOG_TAIL_LINES = 12


def read_ready_line(line: str | bytes) -> ReadyLine | None:
    """``dcounter_node.parse_ready_line``, with a garbled line as a NodeStartError."""
    try:
        return parse_ready_line(line)
    except ReadyLineError as exc:
        raise NodeStartError(str(exc)) from None


def node_command(args: Sequence[str]) -> list[str]:
    """The full command line running ``dcounter-node`` with ``args`` in this interpreter."""
    return [sys.executable, "-m", "dcounter_node", *args]


def _log_tail(path: Path | None) -> str:
    if path is None:
        return ""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    tail = [line for line in lines[-_LOG_TAIL_LINES:] if line.strip()]
    return ("; its log ends with:\n    " + "\n    ".join(tail)) if tail else ""


# -- the safety net for attached processes ------------------------------------------------

_LIVE_GROUPS: set[int] = set()


def _kill_leftovers() -> None:
    for pgid in list(_LIVE_GROUPS):
        with contextlib.suppress(OSError):
            os.killpg(pgid, signal.SIGKILL)
    _LIVE_GROUPS.clear()


atexit.register(_kill_leftovers)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class NodeProcess:
    """One attached ``dcounter-node`` process (stdout piped for its ready line)."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path | None,
        *,
        prefix: Sequence[str] = (),
    ) -> None:
        self.name = name
        self._argv = list(argv)
        # A command the node runs under, e.g. ``ip netns exec NS`` (it must exec, not fork).
        self._prefix = list(prefix)
        self._log_path = log_path
        self._proc: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None
        self.ready: ReadyLine | None = None

    @property
    def pid(self) -> int | None:
        """The process id once spawned."""
        return self._proc.pid if self._proc is not None else None

    @property
    def log_path(self) -> Path | None:
        """Where the node's stderr (its log) goes."""
        return self._log_path

    @property
    def running(self) -> bool:
        """Spawned and not yet exited."""
        return self._proc is not None and self._proc.returncode is None

    async def start(self, startup_timeout: float) -> ReadyLine:
        """Spawn the node and wait for its ready line; NodeStartError if none comes."""
        if self._log_path is not None:
            with self._log_path.open("ab") as log:
                proc = await asyncio.create_subprocess_exec(
                    *self._prefix,
                    *node_command(self._argv),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=log,
                    start_new_session=True,
                )
        else:
            proc = await asyncio.create_subprocess_exec(
                *self._prefix,
                *node_command(self._argv),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
                start_new_session=True,
            )
        self._proc = proc
        _LIVE_GROUPS.add(proc.pid)
        try:
            async with asyncio.timeout(startup_timeout):
                self.ready = await self._read_ready(proc)
        except TimeoutError:
            raise NodeStartError(
                f"{self.name} printed no ready line within {startup_timeout:g} s"
                f"{_log_tail(self._log_path)}"
            ) from None
        self._drain = asyncio.create_task(self._discard_stdout(proc), name=f"{self.name}-stdout")
        return self.ready

    async def _read_ready(self, proc: asyncio.subprocess.Process) -> ReadyLine:
        stdout = proc.stdout
        if stdout is None:  # pragma: no cover - always piped above
            raise NodeStartError(f"{self.name}: no stdout pipe")
        while line := await stdout.readline():
            ready = read_ready_line(line)
            if ready is not None:
                return ready
        status = await proc.wait()
        raise NodeStartError(
            f"{self.name} exited with status {status} before it was ready"
            f"{_log_tail(self._log_path)}"
        )

    @staticmethod
    async def _discard_stdout(proc: asyncio.subprocess.Process) -> None:
        # Keep the pipe drained so a chatty node can never block on a full pipe.
        if proc.stdout is not None:
            while await proc.stdout.read(65536):
                pass

    async def kill(self) -> None:
        """SIGKILL the node's process group (a crash, as ``kill -9``) and reap it."""
        await self._end(signal.SIGKILL, grace=0.0)

    async def stop(self, grace: float = 5.0) -> None:
        """SIGTERM, wait up to ``grace`` seconds, then SIGKILL; idempotent."""
        await self._end(signal.SIGTERM, grace=grace)

    async def _end(self, first: signal.Signals, *, grace: float) -> None:
        proc = self._proc
        if proc is None:
            return
        pgid = proc.pid
        try:
            if proc.returncode is None:
                _signal_group(pgid, first)
                if first is not signal.SIGKILL:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(proc.wait(), grace)
            if proc.returncode is None:
                _signal_group(pgid, signal.SIGKILL)
            await proc.wait()
        finally:
            if proc.returncode is not None:
                _LIVE_GROUPS.discard(pgid)
            if self._drain is not None:
                self._drain.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._drain
                self._drain = None


# -- detached processes (dcounter-cluster up/down) ----------------------------------------


def spawn_detached(args: Sequence[str], stdout_path: Path, log_path: Path) -> int:
    """Start ``dcounter-node args`` in a new session, output to files; returns its pid."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(stdout_path), flags, 0o644),
        (os.POSIX_SPAWN_OPEN, 2, str(log_path), flags, 0o644),
    ]
    command = node_command(args)
    return os.posix_spawn(command[0], command, os.environ, file_actions=actions, setsid=True)


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (zombies count as dead; our own are reaped)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass  # not our child: ask the kernel instead
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    # Field 3 (after the parenthesised command name) is the state; Z = zombie, X = dead.
    state = stat.rpartition(")")[2].split()[:1]
    return state not in (["Z"], ["X"])


def is_node_process(pid: int) -> bool:
    """Whether ``pid`` runs ``dcounter_node`` (guards against a recycled pid); True if unknown."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return False
    except OSError:
        return True
    return b"dcounter_node" in cmdline


def _ready_in_file(path: Path) -> ReadyLine | None:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        ready = read_ready_line(line)
        if ready is not None:
            return ready
    return None


async def wait_ready_file(
    name: str, pid: int, stdout_path: Path, log_path: Path, startup_timeout: float
) -> ReadyLine:
    """Poll a detached node's stdout file until its ready line appears (or it dies).

    Polling, because the node is not our pipe's writer: it must outlive the launcher.
    """
    deadline = time.monotonic() + startup_timeout
    while True:
        ready = _ready_in_file(stdout_path)
        if ready is not None:
            return ready
        if not pid_alive(pid):
            raise NodeStartError(f"{name} exited before it was ready{_log_tail(log_path)}")
        if time.monotonic() > deadline:
            raise NodeStartError(
                f"{name} printed no ready line within {startup_timeout:g} s{_log_tail(log_path)}"
            )
        await asyncio.sleep(_POLL)


async def terminate_pid(pid: int, grace: float = 5.0) -> bool:
    """Stop a detached node (its whole session group): SIGTERM, then SIGKILL after ``grace``.

    Returns True if it had to be killed. Polls: a process that is not our child cannot be
    waited for.
    """
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    killed = False
    while pid_alive(pid):
        if not killed and time.monotonic() > deadline:
            _signal_group(pid, signal.SIGKILL)
            killed = True
        await asyncio.sleep(_POLL)
    return killed

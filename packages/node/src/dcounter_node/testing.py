"""Support for tests and benchmarks that run real nodes: :class:`NodeProcess`, :func:`wait_until`,
:func:`free_port`.

Nothing here sleeps in place of synchronization: a node is ready when it prints its ready
line, and :func:`wait_until` polls a condition against a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import signal
import socket
import sys
from typing import IO, TYPE_CHECKING

from dcounter_node._errors import NodeError
from dcounter_node._ready import ReadyLine, parse_ready_line

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping
    from contextlib import AbstractContextManager
    from pathlib import Path

__all__ = ["NodeProcess", "NodeProcessError", "free_port", "wait_until"]

#: Generous bound for a node to start or stop on a busy machine; real ones take ~1 s.
DEADLINE = 30.0
_LOG_TAIL_LINES = 20


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now: for a node that must restart at the same
    address, or a server that cannot bind port 0 and tell which port it got. Another
    process may take it before it is used: prefer port 0 where it works."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


class NodeProcessError(NodeError):
    """A node process that exited, or printed no ready line, when it should have been ready."""


async def wait_until(
    predicate: Callable[[], bool | Awaitable[bool]],
    *,
    within: float = 20.0,
    what: str | Callable[[], str] = "condition",
    interval: float = 0.01,
) -> None:
    """Poll ``predicate`` (sync or async) until it is true.

    Raises AssertionError naming ``what`` (a string, or a function giving one at the time
    of the failure) if ``within`` seconds pass first.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() >= deadline:
            detail = what() if callable(what) else what
            raise AssertionError(f"timed out after {within:g} s waiting for {detail}")
        await asyncio.sleep(interval)


class NodeProcess:
    """One ``python -m dcounter_node`` child process: spawn, read the ready line, stop.

    Its stderr (the log) goes to ``log`` (a file) or is discarded; stdout carries only the
    ready line. Use :meth:`start` to wait for it, or :meth:`spawn` for a node expected to fail.
    """

    def __init__(self, process: asyncio.subprocess.Process, log: Path | None) -> None:
        self.process = process
        self.log = log
        #: What the node announced, once :meth:`wait_ready` returned, and the line as printed.
        self.ready: ReadyLine | None = None
        self.ready_text = ""

    @classmethod
    async def spawn(
        cls, *args: str, log: Path | None = None, env: Mapping[str, str] | None = None
    ) -> NodeProcess:
        """Run ``dcounter-node *args`` in this interpreter; do not wait for it."""
        environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        opened: AbstractContextManager[IO[bytes] | None] = (
            log.open("ab") if log is not None else contextlib.nullcontext()
        )
        with opened as stderr:  # the child keeps its own copy of the descriptor
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "dcounter_node",
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr if stderr is not None else asyncio.subprocess.DEVNULL,
                env=environment,
            )
        return cls(process, log)

    @classmethod
    async def start(
        cls,
        *args: str,
        log: Path | None = None,
        env: Mapping[str, str] | None = None,
        within: float = DEADLINE,
    ) -> NodeProcess:
        """Spawn a node and wait for its ready line (NodeProcessError, node stopped, if none)."""
        node = await cls.spawn(*args, log=log, env=env)
        try:
            await node.wait_ready(within=within)
        except BaseException:
            await node.kill()
            raise
        return node

    async def wait_ready(self, *, within: float = DEADLINE) -> ReadyLine:
        """Read the ready line; NodeProcessError if the node exits or stays silent first."""
        stdout = self.process.stdout
        if stdout is None:  # pragma: no cover - always piped by spawn()
            raise NodeProcessError("the node's stdout is not piped")
        try:
            async with asyncio.timeout(within):
                while line := await stdout.readline():
                    ready = parse_ready_line(line)
                    if ready is not None:
                        self.ready, self.ready_text = ready, line.decode().rstrip("\n")
                        return ready
                status = await self.process.wait()
        except TimeoutError:
            raise NodeProcessError(
                f"node {self.pid} printed no ready line within {within:g} s{self._log_tail()}"
            ) from None
        raise NodeProcessError(
            f"node {self.pid} exited with status {status} before it was ready{self._log_tail()}"
        )

    def _announced(self) -> ReadyLine:
        if self.ready is None:
            raise NodeProcessError("the node has not printed its ready line yet")
        return self.ready

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def gossip(self) -> str:
        """The bound gossip address, ``host:port``."""
        return self._announced().gossip

    @property
    def http(self) -> str:
        """The bound HTTP address, ``host:port``."""
        return self._announced().http

    @property
    def resp(self) -> str:
        """The bound Redis-protocol address, ``host:port`` (the node must run ``--resp``)."""
        resp = self._announced().resp
        if resp is None:
            raise NodeProcessError("the node serves no Redis protocol (start it with --resp)")
        return resp

    @property
    def url(self) -> str:
        """The HTTP API's base URL, ``http://host:port``."""
        return f"http://{self.http}"

    @property
    def replica(self) -> str:
        return self._announced().replica

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    def log_text(self) -> str:
        """Everything the node logged so far ("" when its log is discarded)."""
        if self.log is None:
            return ""
        return self.log.read_text(encoding="utf-8", errors="replace")

    def _log_tail(self) -> str:
        lines = [line for line in self.log_text().splitlines() if line.strip()]
        tail = lines[-_LOG_TAIL_LINES:]
        return ("; its log ends with:\n    " + "\n    ".join(tail)) if tail else ""

    def signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` if the node still runs."""
        if self.process.returncode is None:
            self.process.send_signal(sig)

    async def wait_exit(self, *, within: float = DEADLINE) -> int:
        """The exit status, once the node exits; NodeProcessError after ``within`` seconds."""
        try:
            return await asyncio.wait_for(self.process.wait(), within)
        except TimeoutError:
            raise NodeProcessError(
                f"node {self.pid} did not exit within {within:g} s{self._log_tail()}"
            ) from None

    async def stop(self, *, within: float = DEADLINE) -> int:
        """SIGTERM (a clean shutdown) and the exit status; SIGKILL if it outlasts ``within``."""
        self.signal(signal.SIGTERM)
        try:
            return await self.wait_exit(within=within)
        except NodeProcessError:
            await self.kill()
            raise

    async def kill(self) -> int:
        """SIGKILL (no shutdown code runs, like a crash) and the exit status."""
        self.signal(signal.SIGKILL)
        return await self.process.wait()

    async def __aenter__(self) -> NodeProcess:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self.process.returncode is None:
            await self.stop()

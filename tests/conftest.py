"""Fixtures shared by every test area."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pytest
import trustme

from dcounter_protocol import TLSOptions

if TYPE_CHECKING:
    import signal

REPO_ROOT = Path(__file__).resolve().parents[1]
#: The reference implementation's vectors live beside the repository, never inside it.
GOLDEN_DIR = Path(os.environ.get("DCOUNTER_GOLDEN_DIR", REPO_ROOT.parent / "shared" / "golden"))
GOLDEN_FILE = GOLDEN_DIR / "seed-wire-vectors.json"


@pytest.fixture(scope="session")
def golden() -> dict[str, Any]:
    """The Go reference's wire vectors; tests that need them skip, saying why, when absent."""
    if not GOLDEN_FILE.is_file():
        pytest.skip(
            f"golden vectors not found at {GOLDEN_FILE}: they come from ../shared/golden "
            "(set DCOUNTER_GOLDEN_DIR to point elsewhere)"
        )
    data: dict[str, Any] = json.loads(GOLDEN_FILE.read_text(encoding="utf-8"))
    return data


#: Upper bound for one wait on a condition; real waits end far sooner.
WAIT_DEADLINE = 20.0


class WaitUntil(Protocol):
    async def __call__(
        self, predicate: Callable[[], Awaitable[bool]], *, seconds: float = ..., what: str = ...
    ) -> None: ...


async def _wait_until(
    predicate: Callable[[], Awaitable[bool]],
    *,
    seconds: float = WAIT_DEADLINE,
    what: str = "condition",
) -> None:
    """Poll ``predicate`` until it holds; fail the test after ``seconds``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not await predicate():
        if loop.time() > deadline:
            pytest.fail(f"timed out after {seconds} s waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
def wait_until() -> WaitUntil:
    """``await wait_until(async_predicate, seconds=..., what=...)``: a condition with a deadline."""
    return _wait_until


# -- node processes ---------------------------------------------------------------------------


#: Upper bound for a node process to start or exit; real ones take well under a second.
NODE_DEADLINE = 10.0


@dataclass
class NodeProcess:
    """A ``python -m dcounter_node`` child process and what its ready line said."""

    process: asyncio.subprocess.Process
    stderr_path: Path
    ready: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def http(self) -> str:
        return f"http://{self.ready['http']}"

    @property
    def gossip(self) -> str:
        return self.ready["gossip"]

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    async def wait_ready(self, seconds: float = NODE_DEADLINE) -> dict[str, str]:
        """Read and parse the ready line (fails the test if the process exits first)."""
        assert self.process.stdout is not None
        try:
            line = await asyncio.wait_for(self.process.stdout.readline(), seconds)
        except TimeoutError:
            pytest.fail(f"node did not become ready in {seconds} s; stderr:\n{self.stderr()}")
        words = line.decode().split()
        if words[:2] != ["dcounter-node", "ready"]:
            await self.wait_exit()
            pytest.fail(f"no ready line (got {line!r}); stderr:\n{self.stderr()}")
        self.ready = dict(word.split("=", 1) for word in words[2:])
        return self.ready

    async def wait_exit(self, seconds: float = NODE_DEADLINE) -> int:
        """Wait for the process to exit and return its status."""
        try:
            return await asyncio.wait_for(self.process.wait(), seconds)
        except TimeoutError:
            pytest.fail(f"node {self.pid} did not exit in {seconds} s; stderr:\n{self.stderr()}")

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)


SpawnNode = Callable[..., Awaitable[NodeProcess]]


@pytest.fixture
async def spawn_node(tmp_path: Path) -> AsyncIterator[SpawnNode]:
    """Start ``python -m dcounter_node *args``; every process is killed after the test."""
    processes: list[NodeProcess] = []

    async def spawn(*args: str) -> NodeProcess:
        stderr_path = tmp_path / f"node-{len(processes)}.stderr"
        with stderr_path.open("wb") as stderr:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "dcounter_node",
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        node = NodeProcess(process, stderr_path)
        processes.append(node)
        return node

    yield spawn
    for node in processes:
        if node.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                node.process.kill()
            await node.process.wait()


# -- mutual TLS (issue 13) --------------------------------------------------------------------


@dataclass(frozen=True)
class TLSFiles:
    """One node's PEM files: its certificate chain, private key and the CA it trusts."""

    cert: Path
    key: Path
    ca: Path

    def flags(self) -> list[str]:
        """The ``dcounter-node`` flags that use these files."""
        return ["--tls-cert", str(self.cert), "--tls-key", str(self.key), "--tls-ca", str(self.ca)]

    def options(self, *, plaintext_peers: tuple[str, ...] = ()) -> TLSOptions:
        return TLSOptions.from_files(self.cert, self.key, self.ca, plaintext_peers=plaintext_peers)


class IssueTLS(Protocol):
    """The type of the ``issue_tls`` fixture."""

    def __call__(
        self, name: str, *, ca: trustme.CA | None = ..., expired: bool = ...
    ) -> TLSFiles: ...


@pytest.fixture(scope="session")
def cluster_ca() -> trustme.CA:
    """The cluster's certificate authority, shared by a whole test session."""
    return trustme.CA()


@pytest.fixture
def issue_tls(cluster_ca: trustme.CA, tmp_path: Path) -> IssueTLS:
    """Writes a certificate for 127.0.0.1 (signed by ``ca``, the cluster CA unless given;
    ``expired`` one that ran out yesterday) and returns its files; ``ca.pem`` is always the
    cluster CA, the one root a node trusts."""

    def issue(name: str, *, ca: trustme.CA | None = None, expired: bool = False) -> TLSFiles:
        folder = tmp_path / "tls" / name
        folder.mkdir(parents=True)
        issuer = cluster_ca if ca is None else ca
        now = datetime.datetime.now(datetime.UTC)
        if expired:
            leaf = issuer.issue_cert(
                "127.0.0.1",
                common_name=name,
                not_before=now - datetime.timedelta(days=2),
                not_after=now - datetime.timedelta(days=1),
            )
        else:
            leaf = issuer.issue_cert("127.0.0.1", common_name=name)
        files = TLSFiles(folder / "node.pem", folder / "node.key", folder / "ca.pem")
        leaf.cert_chain_pems[0].write_to_path(str(files.cert))
        for extra in leaf.cert_chain_pems[1:]:
            extra.write_to_path(str(files.cert), append=True)
        leaf.private_key_pem.write_to_path(str(files.key))
        cluster_ca.cert_pem.write_to_path(str(files.ca))
        return files

    return issue

"""Fixtures shared by every test area."""

from __future__ import annotations

import datetime
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pytest
import trustme

from dcounter_node.testing import NodeProcess, wait_until
from dcounter_protocol import TLSOptions

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

REPO_ROOT = Path(__file__).resolve().parents[1]
#: The Go reference's wire vectors, part of the test data (see the README next to them).
GOLDEN_FILE = REPO_ROOT / "tests" / "protocol" / "golden" / "seed-wire-vectors.json"


@pytest.fixture(scope="session")
def golden() -> dict[str, Any]:
    """The Go reference's wire vectors (always present: a missing file is an error)."""
    data: dict[str, Any] = json.loads(GOLDEN_FILE.read_text(encoding="utf-8"))
    return data


class WaitUntil(Protocol):
    """``await wait_until(predicate, within=..., what=...)``; the predicate may be sync or async."""

    async def __call__(
        self,
        predicate: Callable[[], bool | Awaitable[bool]],
        *,
        within: float = ...,
        what: str | Callable[[], str] = ...,
        interval: float = ...,
    ) -> None: ...


@pytest.fixture(name="wait_until")
def wait_until_fixture() -> WaitUntil:
    """:func:`dcounter_node.testing.wait_until`: a condition polled against a deadline."""
    return wait_until


class NodeProcesses:
    """The ``dcounter-node`` processes one test starts, each logging to its own file."""

    def __init__(self, directory: Path, *defaults: str) -> None:
        self._directory = directory
        #: Flags every node gets before its own.
        self.defaults = defaults
        self.started: list[NodeProcess] = []

    async def spawn(self, name: str, *args: str, env: dict[str, str] | None = None) -> NodeProcess:
        """Run ``dcounter-node *defaults *args``, logging to ``NAME.log``; do not wait."""
        log = self._directory / f"{name}.log"
        node = await NodeProcess.spawn(*self.defaults, *args, log=log, env=env)
        self.started.append(node)
        return node

    async def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> NodeProcess:
        """Spawn a node and wait for its ready line (failing with its log if there is none)."""
        node = await self.spawn(name, *args, env=env)
        await node.wait_ready()
        return node

    async def close(self) -> None:
        """Stop (SIGTERM, then SIGKILL) every node still running."""
        for node in self.started:
            if node.returncode is None:
                await node.stop()


@pytest.fixture
async def node_processes(tmp_path: Path) -> AsyncIterator[NodeProcesses]:
    """Start node processes; every one still running is stopped at teardown."""
    processes = NodeProcesses(tmp_path)
    yield processes
    await processes.close()


SpawnNode = Callable[..., Awaitable[NodeProcess]]


@pytest.fixture
def spawn_node(node_processes: NodeProcesses) -> SpawnNode:
    """Start ``dcounter-node *args`` (without waiting for it); every one is stopped after."""

    async def spawn(*args: str) -> NodeProcess:
        return await node_processes.spawn(f"node-{len(node_processes.started)}", *args)

    return spawn


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

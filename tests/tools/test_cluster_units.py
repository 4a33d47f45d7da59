"""The launcher's parts on their own: ready lines, cluster specs, usage errors, the driver."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest
from aiohttp import web

from dcounter_tools.cluster.backend import NodeInfo, pin_free_ports
from dcounter_tools.cluster.cli import main
from dcounter_tools.cluster.client import CounterView, NodeClient, OpResult, Outcome
from dcounter_tools.cluster.driver import LoadDriver
from dcounter_tools.cluster.processes import read_ready_line
from dcounter_tools.cluster.spec import ClusterSpec, NodeSpec, build_spec
from dcounter_tools.errors import NodeStartError, UsageError

from .conftest import StillBackend

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence
    from pathlib import Path


# -- ready lines ---------------------------------------------------------------------------


def test_a_garbled_ready_line_stops_the_launch_with_a_node_start_error() -> None:
    with pytest.raises(NodeStartError, match="without pid"):
        read_ready_line("dcounter-node ready gossip=a:1 http=a:2 replica=r")


# -- cluster specs -------------------------------------------------------------------------


def test_flags_without_base_port_use_free_ports_and_wire_peers_later() -> None:
    spec = build_spec(nodes=3)
    assert len(spec) == 3
    node = spec.nodes[0]
    assert node.name == "node-0"
    assert node.wire_after_start is True
    argv = node.argv()
    assert argv[argv.index("--listen") + 1] == "127.0.0.1:0"
    assert argv[argv.index("--http") + 1] == "127.0.0.1:0"
    assert "--in-memory" in argv
    assert "--peers" not in argv
    assert argv[argv.index("--sync-interval") + 1] == "0.5"


def test_base_port_gives_fixed_addresses_and_a_full_mesh() -> None:
    spec = build_spec(nodes=3, base_port=20000, host="127.0.0.2")
    assert [(n.listen, n.http) for n in spec.nodes] == [
        ("127.0.0.2:20000", "127.0.0.2:20003"),
        ("127.0.0.2:20001", "127.0.0.2:20004"),
        ("127.0.0.2:20002", "127.0.0.2:20005"),
    ]
    argv = spec.nodes[1].argv()
    assert argv[argv.index("--peers") + 1] == "127.0.0.2:20000,127.0.0.2:20002"
    assert spec.nodes[1].wire_after_start is False


def test_base_port_range_past_65535_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="65535"):
        build_spec(nodes=10, base_port=65530)


def test_config_file_entries_run_as_their_own_node(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        'sync_interval = 0.25\n[[nodes]]\nname = "a"\nlisten = "127.0.0.1:7001"\n'
        'http = "127.0.0.1:8001"\n[[nodes]]\nname = "b"\nlisten = "127.0.0.1:7002"\n'
        'http = "127.0.0.1:8002"\n'
    )
    spec = build_spec(config=config)
    assert [n.name for n in spec.nodes] == ["a", "b"]
    assert spec.sync_interval == 0.25
    assert spec.nodes[0].argv() == ["--config", str(config), "--node", "a", "--in-memory"]
    assert [n.wire_after_start for n in spec.nodes] == [False, False]


def test_config_file_without_entries_gives_n_nodes_reading_it(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("sync_interval = 0.3\n")
    spec = build_spec(config=config, nodes=2)
    assert len(spec) == 2
    assert spec.sync_interval == 0.3
    assert spec.nodes[0].argv()[:2] == ["--config", str(config)]


def test_config_file_with_an_unknown_key_is_a_usage_error(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("colour = 'blue'\n")
    with pytest.raises(UsageError, match="colour"):
        build_spec(config=config)


def test_nodes_flag_must_match_the_config_entries(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[[nodes]]\nname = "a"\nlisten = "127.0.0.1:0"\n')
    with pytest.raises(UsageError, match="--nodes 3 conflicts"):
        build_spec(config=config, nodes=3)


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--partition", "3", "--duration", "2"],
        ["run", "--kill-node", "--nodes", "1"],
        ["run", "--kill-node", "5", "--nodes", "3"],
        ["run", "--nodes", "0"],
        ["run", "--duration", "0"],
        ["run", "--interval", "0.1", "--rate", "5"],
        ["run", "--in-process", "--base-port", "9000"],
        ["frobnicate"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "error" in capsys.readouterr().err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--help"]) == 0
    assert "--kill-node" in capsys.readouterr().out


# -- the load driver -----------------------------------------------------------------------


class _ScriptedBackend(StillBackend):
    """Answers writes from a script of outcomes; remembers every (node, delta, key)."""

    def __init__(self, nodes: int, script: Sequence[Outcome] = ()) -> None:
        super().__init__(nodes)
        self.script = list(script)
        self.calls: list[tuple[int, int, str]] = []
        self.names: list[str] = []

    @property
    def mode(self) -> str:
        return "scripted"

    async def change(self, index: int, delta: int, key: str, name: str) -> OpResult:
        self.calls.append((index, delta, key))
        self.names.append(name)
        outcome = self.script.pop(0) if self.script else Outcome.ACKED
        return OpResult(outcome, 0 if outcome is Outcome.ACKED else None, outcome.value)

    async def counter(self, index: int) -> CounterView:
        raise NotImplementedError

    async def values(self, index: int) -> dict[str, int]:
        raise NotImplementedError


async def _one_write(backend: _ScriptedBackend, max_attempts: int = 4) -> LoadDriver:
    driver = LoadDriver(backend, interval=0.01, seed=1, run_id="t", max_attempts=max_attempts)
    await driver._write(0, 1)
    return driver


async def test_unknown_outcome_is_retried_with_the_same_key_and_counted_once() -> None:
    backend = _ScriptedBackend(1, [Outcome.UNKNOWN, Outcome.ACKED])
    driver = await _one_write(backend)
    assert [key for _, _, key in backend.calls] == ["t-n0-1", "t-n0-1"]
    assert driver.stats.acked_increments == 1
    assert driver.stats.retries == 1
    assert driver.stats.settled_by_retry == 1
    assert driver.unknown == 0


async def test_refused_write_is_failed_not_retried() -> None:
    backend = _ScriptedBackend(1, [Outcome.FAILED])
    driver = await _one_write(backend)
    assert len(backend.calls) == 1
    assert driver.stats.failed == 1
    assert driver.stats.expected == 0


async def test_failure_after_an_unknown_attempt_stays_unknown() -> None:
    # The first attempt may have landed; a refused retry proves nothing about it.
    backend = _ScriptedBackend(1, [Outcome.UNKNOWN, Outcome.FAILED])
    driver = await _one_write(backend, max_attempts=2)
    assert driver.stats.failed == 0
    assert driver.unknown == 1


async def test_reconcile_settles_unknown_writes_on_the_same_incarnation() -> None:
    backend = _ScriptedBackend(1, [Outcome.UNKNOWN, Outcome.ACKED])
    driver = await _one_write(backend, max_attempts=1)
    assert driver.unknown == 1
    await driver.reconcile()
    assert driver.unknown == 0
    assert driver.stats.acked_increments == 1
    assert [key for _, _, key in backend.calls] == ["t-n0-1", "t-n0-1"]


async def test_reconcile_never_retries_on_a_restarted_node() -> None:
    backend = _ScriptedBackend(1, [Outcome.UNKNOWN])
    driver = await _one_write(backend, max_attempts=1)
    backend.infos[0] = NodeInfo("n0", "n0:1", None, "r0-new", None, incarnation=1)
    await driver.reconcile()
    assert len(backend.calls) == 1
    assert driver.unknown == 1


async def test_same_seed_gives_each_node_the_same_writes() -> None:
    runs: list[dict[int, list[int]]] = []
    for _ in range(2):
        backend = _ScriptedBackend(2)
        driver = LoadDriver(backend, interval=0.01, seed=42, run_id="t")
        await driver.run(0.2)
        runs.append({node: [d for n, d, _ in backend.calls if n == node] for node in (0, 1)})
    # Timing decides how many ticks fit in the run, never which write each tick makes.
    shortest = min(len(seq) for run in runs for seq in run.values())
    assert shortest >= 5
    for node in (0, 1):
        assert runs[0][node][:shortest] == runs[1][node][:shortest]
    assert runs[0][0][:shortest] != runs[0][1][:shortest]


# -- the HTTP client's outcome classification ----------------------------------------------


@pytest.fixture
async def scripted_server() -> AsyncIterator[tuple[str, list[int]]]:
    """A fake node API answering /increment with the statuses queued in the list."""
    statuses: list[int] = []
    release = asyncio.Event()

    async def increment(request: web.Request) -> web.Response:
        status = statuses.pop(0)
        if status == 0:  # hang until the client gives up
            await release.wait()
        return web.json_response({"value": 1} if status == 200 else {"error": "x"}, status=status)

    app = web.Application()
    app.router.add_post("/increment", increment)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"127.0.0.1:{port}", statuses
    release.set()
    await runner.cleanup()


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(200, Outcome.ACKED), (400, Outcome.FAILED), (409, Outcome.FAILED), (503, Outcome.UNKNOWN)],
)
async def test_write_status_maps_to_an_outcome(
    scripted_server: tuple[str, list[int]], status: int, outcome: Outcome
) -> None:
    address, statuses = scripted_server
    statuses.append(status)
    client = NodeClient(address)
    try:
        result = await client.change(1, key="k")
    finally:
        await client.close()
    assert result.outcome is outcome


async def test_write_timeout_is_unknown(scripted_server: tuple[str, list[int]]) -> None:
    address, statuses = scripted_server
    statuses.append(0)
    client = NodeClient(address, timeout=0.2)
    try:
        result = await client.change(1, key="k")
    finally:
        await client.close()
    assert result.outcome is Outcome.UNKNOWN


async def test_refused_connection_is_failed() -> None:
    # A port that was just free: bind, note it, close.
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    client = NodeClient(f"127.0.0.1:{port}")
    try:
        result = await client.change(1, key="k")
    finally:
        await client.close()
    assert result.outcome is Outcome.FAILED


def test_pin_free_ports_replaces_only_port_zero_with_distinct_free_ports() -> None:
    spec = ClusterSpec(
        nodes=tuple(
            NodeSpec(f"n{i}", "127.0.0.1:0", http, (), addresses_from_file=True)
            for i, http in enumerate(("127.0.0.1:0", "127.0.0.1:18080"))
        ),
        source="test",
    )
    pinned = pin_free_ports(spec)
    ports = [int(a.rsplit(":", 1)[1]) for n in pinned.nodes for a in (n.listen, n.http)]
    assert ports[3] == 18080
    assert 0 not in ports
    assert len(set(ports)) == 4
    assert all(not n.addresses_from_file for n in pinned.nodes)
    assert "--listen" in pinned.nodes[0].argv(data_dir=None)

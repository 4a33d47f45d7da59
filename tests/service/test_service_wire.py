"""dcounter-node --wire and --loop: settings, flags, and a cluster mixing the two wires."""

from __future__ import annotations

import signal
import sys
import tomllib
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from dcounter_node._cli import main, settings_from_args
from dcounter_node._settings import NodeSettings, parse_config

if TYPE_CHECKING:
    from pathlib import Path

    from tests.conftest import SpawnNode, WaitUntil
    from tests.service.conftest import Api

#: Every node here binds free ports and keeps no durable state.
FREE = ("--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--in-memory")


def test_wire_defaults_to_auto_and_loop_to_asyncio() -> None:
    settings = settings_from_args([])
    assert (settings.wire, settings.loop) == ("auto", "asyncio")


def test_wire_and_loop_flags_set_the_settings() -> None:
    settings = settings_from_args(["--wire", "seed", "--loop", "uvloop"])
    assert (settings.wire, settings.loop) == ("seed", "uvloop")


def test_wire_in_a_nodes_entry_overrides_the_top_level() -> None:
    text = (
        'wire = "seed"\n[[nodes]]\nname = "a"\nlisten = "127.0.0.1:7001"\n'
        '[[nodes]]\nname = "b"\nlisten = "127.0.0.1:7002"\nwire = "auto"\n'
    )
    cluster = parse_config(tomllib.loads(text), source="test.toml")
    assert [node.wire for node in cluster.nodes] == ["seed", "auto"]


def test_to_argv_carries_wire_and_loop() -> None:
    settings = NodeSettings(wire="seed", loop="uvloop")
    assert settings_from_args(settings.to_argv()) == settings


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--wire", "stream"], "argument --wire: expected one of auto, seed; got 'stream'"),
        (["--loop", "trio"], "argument --loop: expected one of asyncio, uvloop; got 'trio'"),
    ],
)
def test_bad_wire_or_loop_flag_exits_2_with_one_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert f"dcounter-node: error: {message}" in capsys.readouterr().err


def test_bad_wire_in_the_config_file_exits_2_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "node.toml"
    path.write_text('wire = "fast"\n', encoding="utf-8")
    assert main(["--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == (f"dcounter-node: error: {path}: wire: expected one of auto, seed; got 'fast'\n")


def test_loop_uvloop_without_uvloop_installed_exits_2_with_one_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # makes `import uvloop` fail
    assert main(["--loop", "uvloop", *FREE]) == 2
    err = capsys.readouterr().err
    assert err == (
        "dcounter-node: error: --loop uvloop: uvloop is not installed; install"
        " dcounter-node[fast] or use --loop asyncio\n"
    )


async def test_metrics_export_the_transport_stats(api: Api) -> None:
    async with api.session.get(api.url + "/metrics") as response:
        text = await response.text()
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("dcounter_transport_")
    }
    expected: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {
        **{
            (f"dcounter_transport_messages_{way}_total", (("wire", wire),)): 0.0
            for way in ("sent", "received")
            for wire in ("stream", "seed")
        },
        **{
            (f"dcounter_transport_{name}_total", ()): 0.0
            for name in (
                "queue_drops",
                "undelivered",
                "streams_opened",
                "reconnects",
                "seed_fallbacks",
                "inbound_dropped",
                "streams_evicted",
                "tls_refused",
                "tls_dial_failures",
            )
        },
        ("dcounter_transport_open_streams", (("direction", "inbound"),)): 0.0,
        ("dcounter_transport_open_streams", (("direction", "outbound"),)): 0.0,
        ("dcounter_transport_queued", ()): 0.0,
    }
    assert samples == expected


async def _post(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> Any:
    async with session.post(url, json=body) as response:
        assert response.status in (200, 201), await response.text()
        return await response.json()


async def _sent_by_wire(session: aiohttp.ClientSession, url: str) -> dict[str, float]:
    """The node's dcounter_transport_messages_sent_total, by wire label."""
    async with session.get(url + "/metrics") as response:
        text = await response.text()
    sent: dict[str, float] = {}
    for line in text.splitlines():
        for wire in ("stream", "seed"):
            prefix = f'dcounter_transport_messages_sent_total{{wire="{wire}"}} '
            if line.startswith(prefix):
                sent[wire] = float(line.removeprefix(prefix))
    return sent


@pytest.mark.slow
async def test_seed_and_auto_wire_processes_converge_exactly_each_on_its_wire(
    spawn_node: SpawnNode, wait_until: WaitUntil
) -> None:
    seed = await spawn_node(*FREE, "--sync-interval", "0.2", "--wire", "seed")
    auto = await spawn_node(*FREE, "--sync-interval", "0.2", "--wire", "auto")
    nodes = [seed, auto]
    for node in nodes:
        await node.wait_ready()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        await _post(session, seed.url + "/peers", {"addr": auto.gossip})
        await _post(session, auto.url + "/peers", {"addr": seed.gossip})
        await _post(session, seed.url + "/increment", {"by": 5})
        await _post(session, auto.url + "/increment", {"by": 7})
        await _post(session, auto.url + "/decrement", {"by": 2})

        async def counters() -> list[Any]:
            bodies = []
            for node in nodes:
                async with session.get(node.url + "/counter") as response:
                    bodies.append(await response.json())
            return bodies

        async def converged() -> bool:
            return [body["value"] for body in await counters()] == [10, 10]

        await wait_until(converged, what="both nodes to read 10")
        bodies = await counters()
        sent = [await _sent_by_wire(session, node.url) for node in nodes]
    replicas = [node.replica for node in nodes]
    for body in bodies:
        assert body["increments"] == {replicas[0]: 5, replicas[1]: 7}
        assert body["decrements"] == {replicas[1]: 2}
    assert sent[0]["stream"] == 0
    assert sent[0]["seed"] > 0
    assert sent[1]["stream"] > 0
    for node in nodes:
        node.signal(signal.SIGTERM)
    assert [await node.wait_exit() for node in nodes] == [0, 0]

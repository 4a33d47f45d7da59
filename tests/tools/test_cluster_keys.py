"""dcounter-cluster run --keys N: writes over named counters, every key checked exactly."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest

from dcounter_tools.cluster.cli import main
from dcounter_tools.cluster.client import CounterView, OpResult, Outcome
from dcounter_tools.cluster.driver import LoadDriver
from dcounter_tools.cluster.keys import key_mismatches, key_names
from dcounter_tools.cluster.progress import QuietProgress
from dcounter_tools.cluster.runner import RunOptions, run_cluster

from .conftest import StillBackend

if TYPE_CHECKING:
    from tests.tools.conftest import ClusterCLI, PidsGone


# -- names and the per-key check --------------------------------------------------------------


def test_key_names_are_padded_to_list_in_order() -> None:
    assert key_names(1) == ("key-0",)
    assert key_names(3) == ("key-0", "key-1", "key-2")
    names = key_names(11)
    assert (names[0], names[10]) == ("key-00", "key-10")
    assert list(names) == sorted(names)
    assert "default" not in key_names(1000)


def test_every_key_must_match_and_a_missing_key_holds_zero() -> None:
    expected = {"key-0": 3, "key-1": -2, "key-2": 0}
    assert key_mismatches(expected, {"key-0": 3, "key-1": -2}) == {}
    assert key_mismatches(expected, {"key-0": 3}) == {"key-1": (0, -2)}
    assert key_mismatches(expected, {"key-0": 3, "key-1": -2, "key-9": 1}) == {"key-9": (1, 0)}
    # The same total spread differently is still wrong.
    assert key_mismatches(expected, {"key-0": 1, "key-1": 0}) == {
        "key-0": (1, 3),
        "key-1": (0, -2),
    }


# -- the driver and the runner on a simulated cluster -----------------------------------------


class _KeysBackend(StillBackend):
    """Nodes that each hold the counters written to them; ``lose`` drops one acked write
    (a node that acknowledged it forgets it), ``gossip`` copies every node's counts to all.

    Counts are kept per (node written, name), so "gossip" is exact: a node holds the sum
    of every node's writes.
    """

    def __init__(self, nodes: int, *, gossip: bool = True, lose: str | None = None) -> None:
        super().__init__(nodes)
        self.gossip = gossip
        self.lose = lose
        self.written: list[Counter[str]] = [Counter() for _ in range(nodes)]

    @property
    def mode(self) -> str:
        return "simulated"

    async def change(self, index: int, delta: int, key: str, name: str) -> OpResult:
        if name == self.lose:
            self.lose = None
        else:
            self.written[index][name] += delta
        return OpResult(Outcome.ACKED, 0)

    async def counter(self, index: int) -> CounterView:
        return CounterView(0, f"r{index}", {}, {}, f"n{index}")

    async def values(self, index: int) -> dict[str, int]:
        sources = self.written if self.gossip else [self.written[index]]
        total: Counter[str] = Counter()
        for written in sources:
            total.update(written)
        return dict(total)


OPTIONS = RunOptions(duration=0.3, interval=0.01, seed=5, converge_timeout=0.5, keys=4)


async def test_the_driver_spreads_writes_over_the_keys_and_sums_each() -> None:
    backend = _KeysBackend(2)
    driver = LoadDriver(backend, interval=0.01, seed=9, run_id="t", keys=key_names(4))
    await driver.run(0.3)
    stats = driver.stats
    assert set(stats.expected_by_key) <= set(key_names(4))
    assert len(stats.expected_by_key) > 1
    assert sum(stats.expected_by_key.values()) == stats.expected
    assert await backend.values(0) == stats.expected_by_key


async def test_without_keys_every_write_goes_to_the_default_counter() -> None:
    backend = _KeysBackend(1)
    driver = LoadDriver(backend, interval=0.01, seed=9, run_id="t")
    await driver.run(0.1)
    assert list(driver.stats.expected_by_key) == ["default"]


async def test_a_run_with_keys_converges_when_every_key_is_exact() -> None:
    report = await run_cluster(_KeysBackend(3), OPTIONS, QuietProgress())
    assert report.converged
    assert (report.keys, report.key_mismatches) == (4, {})
    assert [n.value for n in report.nodes] == [report.expected] * 3
    assert "each of the 4 keys" in report.render_text()


async def test_a_lost_write_on_one_key_fails_the_run_and_is_named() -> None:
    report = await run_cluster(_KeysBackend(2, lose="key-2"), OPTIONS, QuietProgress())
    assert not report.converged
    assert report.key_mismatches is not None
    assert set(report.key_mismatches) == {"n0", "n1"}
    assert list(report.key_mismatches["n0"]) == ["key-2"]
    assert "MISMATCH: key-2=" in report.render_text()


async def test_nodes_that_only_hold_their_own_writes_do_not_converge() -> None:
    report = await run_cluster(_KeysBackend(2, gossip=False), OPTIONS, QuietProgress())
    assert not report.converged
    assert report.key_mismatches


# -- the command ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--keys", "-1"], "--keys takes a number of counters"),
        (["--keys", "3", "--nodes", "2", "--kill-node", "0"], "needs --durable"),
    ],
)
def test_bad_keys_flags_are_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--in-process", *argv]) == 2
    assert message in capsys.readouterr().err


def _assert_keys_exact(report: dict[str, Any], keys: int) -> None:
    assert report["keys"] == keys
    assert report["acknowledged"] == report["attempted"] > 0
    assert report["failed"] == report["unknown"] == 0
    assert report["key_mismatches"] == {}
    assert report["values"] == [report["expected"]] * len(report["nodes"])
    assert report["converged"] is True


def test_in_process_single_node_run_with_keys(cluster_json: ClusterCLI) -> None:
    status, report = cluster_json(
        "run", "--in-process", "--nodes", "1", "--keys", "5", "--duration", "0.5",
        "--interval", "0.02", "--seed", "4", "--quiet",
    )  # fmt: skip
    assert status == 0
    _assert_keys_exact(report, 5)


@pytest.mark.slow
def test_process_single_node_run_with_keys_goes_through_http(
    cluster_json: ClusterCLI, pids_gone: PidsGone
) -> None:
    status, report = cluster_json(
        "run", "--nodes", "1", "--keys", "7", "--duration", "1", "--interval", "0.02",
        "--seed", "4", "--quiet", "--durable",
    )  # fmt: skip
    assert status == 0
    _assert_keys_exact(report, 7)
    assert pids_gone([int(n["pid"]) for n in report["nodes"]]) == []


@pytest.mark.slow
def test_process_cluster_run_with_keys_converges_on_every_key(
    cluster_json: ClusterCLI, pids_gone: PidsGone
) -> None:
    status, report = cluster_json(
        "run", "--nodes", "3", "--keys", "20", "--duration", "1.5", "--sync-interval", "0.2",
        "--seed", "7", "--quiet",
    )  # fmt: skip
    assert status == 0
    _assert_keys_exact(report, 20)
    assert pids_gone([int(n["pid"]) for n in report["nodes"]]) == []

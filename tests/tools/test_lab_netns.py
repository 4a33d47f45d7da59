"""The fault lab on real network namespaces: partitions, kills, pauses, restarts, a valid history.

These need root and ``ip netns`` (CI runs as root); elsewhere they skip, saying why. Every
test asserts that it leaves no namespace or link with the lab's prefix behind.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import pytest

from dcounter_tools.cluster.cli import main as cluster_main
from dcounter_tools.cluster.history import load_history
from dcounter_tools.cluster.nemesis import plan_schedule
from dcounter_tools.cluster.netns import NETWORK, PREFIX, NetnsHosts

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

#: A seed whose 30-second schedule (interval 3 s, 5 nodes) has all four kinds of fault.
SEED = 16
ALL = ("partition", "kill", "pause", "restart")
LAB = (sys.executable, "-m", "dcounter_tools.cluster")


def _netns_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "the fault lab needs root to create network namespaces"
    if shutil.which("ip") is None:
        return "the fault lab needs the ip command (iproute2)"
    probe = f"{PREFIX}-probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot create a network namespace here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], check=False)
    return None


def _lab_names() -> set[str]:
    names = set()
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    names |= {f"netns {line.split()[0]}" for line in listed.splitlines() if line.strip()}
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    for line in links.splitlines():
        parts = line.split(":", 2)
        if len(parts) > 1:
            names.add(f"link {parts[1].strip().split('@')[0]}")
    return {name for name in names if name.split()[1].startswith(PREFIX)}


@pytest.fixture
def netns() -> Iterator[None]:
    """Skip without root/namespaces; after the test, assert it leaked nothing (and sweep)."""
    reason = _netns_unavailable()
    if reason is not None:
        pytest.skip(reason)
    before = _lab_names()
    yield
    leaked = _lab_names() - before
    for name in leaked:  # never leave them to the next test, even when failing this one
        kind, _, item = name.partition(" ")
        subprocess.run(["ip", kind, "del", item], capture_output=True, check=False)
    assert not leaked, f"left behind: {sorted(leaked)}"


def _connect(hosts: NetnsHosts, src: int | None, dst: int) -> str:
    """'refused' if a TCP SYN from host src (None: the root namespace) reached host dst."""
    code = (
        "import socket\n"
        "s = socket.socket()\n"
        "s.settimeout(1.0)\n"
        "try:\n"
        f"    s.connect(({hosts.hosts[dst].address!r}, 9))\n"
        "except ConnectionRefusedError:\n"
        "    print('refused')\n"
        "except OSError as exc:\n"
        "    print('blocked', type(exc).__name__)\n"
    )
    prefix = [] if src is None else hosts.exec_prefix(src)
    done = subprocess.run(
        [*prefix, sys.executable, "-c", code], capture_output=True, text=True, timeout=30
    )
    return done.stdout.split()[0] if done.stdout.strip() else done.stderr


@pytest.mark.slow
@pytest.mark.usefixtures("netns")
def test_hosts_have_their_own_addresses_and_partitions_are_real() -> None:
    hosts = NetnsHosts(["a", "b", "c"])
    hosts.create()
    try:
        addresses = [ipaddress.IPv4Address(h.address) for h in hosts.hosts]
        assert len(set(addresses)) == 3
        assert all(a in NETWORK for a in addresses)
        assert _connect(hosts, 0, 1) == "refused"  # reached b: nothing listens on port 9
        hosts.block([(0, 1), (1, 0)])
        assert _connect(hosts, 0, 1) == "blocked"
        assert _connect(hosts, 1, 0) == "blocked"
        assert _connect(hosts, 0, 2) == "refused"  # c is on a's side of nothing: still reachable
        assert _connect(hosts, None, 1) == "refused"  # the launcher still reaches everyone
        hosts.heal()
        assert _connect(hosts, 0, 1) == "refused"
        assert hosts.blackholes() == {"a": [], "b": [], "c": []}
    finally:
        hosts.destroy()


@pytest.mark.slow
@pytest.mark.usefixtures("netns")
def test_thirty_seconds_of_every_nemesis_on_five_nodes_is_valid(tmp_path: Path) -> None:
    schedule = plan_schedule(ALL, 5, 30.0, 3.0, SEED)
    assert {f.kind for f in schedule} == set(ALL)  # the seed still exercises every fault
    history_file, plot_file = tmp_path / "history.jsonl", tmp_path / "lab.png"
    argv = f"run --hosts netns --nodes 5 --duration 30 --nemesis {','.join(ALL)}"
    argv += f" --nemesis-interval 3 --seed {SEED} --json"
    done = subprocess.run(
        [*LAB, *argv.split(), "--history", str(history_file), "--plot", str(plot_file)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    report: dict[str, Any] = json.loads(done.stdout)
    assert report["valid"] is True, report["reason"]
    assert report["seed"] == SEED
    assert len(report["schedule"]) == len(schedule) == 8
    assert report["operations"] > 500
    assert report["failed"] > 0  # writes to a killed or stopped node were refused
    gossip = {node["gossip"].split(":")[0] for node in report["nodes"]}
    assert len(gossip) == 5
    assert all(ipaddress.IPv4Address(a) in NETWORK for a in gossip)
    assert len(set(report["final_values"])) == 1
    assert report["converged_after_heal"] is not None  # the nodes agreed before the check

    history = load_history(history_file)
    assert len(history.ops) == report["operations"]
    assert [f.fault["kind"] for f in history.faults] == [f.kind for f in schedule]
    for record in history.faults:
        assert record.started <= record.healed
    assert {op.node for op in history.ops} == set(range(5))
    assert plot_file.read_bytes().startswith(b"\x89PNG")


@pytest.mark.slow
@pytest.mark.usefixtures("netns")
def test_tls_runs_the_lab_over_mutual_tls_and_https(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    argv = "run --hosts netns --nodes 2 --duration 4 --nemesis kill --nemesis-interval 2"
    argv += f" --seed {SEED} --tls --json --quiet --log-dir {logs} --node-log-level info"
    done = subprocess.run([*LAB, *argv.split()], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    report: dict[str, Any] = json.loads(done.stdout)
    assert report["valid"] is True, report["reason"]
    assert report["ok"] > 0  # the launcher's HTTPS writes with the token were acknowledged
    assert len(set(report["final_values"])) == 1
    for node in report["nodes"]:
        log = (logs / f"{node['name']}.log").read_text()
        # Every start, the restart after the kill too, serves TLS on the namespace address.
        starts = log.count("serving: gossip on")
        assert starts >= 1
        assert log.count("(mutual TLS), HTTP API on https://") == starts, log[-2000:]


#: The progress line the run prints when a fault begins, e.g.
#: "[   3.48s]    2.00 s  pause node-2 (SIGSTOP, back at the end)".
FAULT_STARTED = re.compile(r"\]\s+\d+\.\d\d s  (?!healed)")


@pytest.mark.slow
@pytest.mark.usefixtures("netns")
def test_ctrl_c_stops_the_nodes_and_removes_every_namespace(tmp_path: Path) -> None:
    argv = "run --hosts netns --nodes 3 --duration 120 --nemesis pause,partition"
    proc = subprocess.Popen(
        [*LAB, *argv.split(), "--nemesis-interval", "2", "--seed", "3"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        # A child of a background job may inherit SIGINT ignored: give it the default.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stderr is not None
    seen: list[str] = []
    deadline = time.monotonic() + 120
    try:
        for line in proc.stderr:
            seen.append(line)
            if "writing under the nemesis" in line or time.monotonic() > deadline:
                break
        assert any(f"ready in {PREFIX}-" in line for line in seen), "".join(seen)
        # Interrupt while a fault is in force: it must be healed and removed too.
        for line in proc.stderr:
            seen.append(line)
            if FAULT_STARTED.search(line) or time.monotonic() > deadline:
                break
        assert FAULT_STARTED.search(seen[-1]), "".join(seen)
        proc.send_signal(signal.SIGINT)
        interrupted = time.monotonic()
        rest = proc.communicate(timeout=120)[1]
        stopping = time.monotonic() - interrupted
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, "".join(seen) + rest
    assert "interrupted" in rest
    # Well before the 120 s of writes would have ended: the interrupt stopped the run.
    assert stopping < 60, f"took {stopping:.1f} s to stop: {rest[-1500:]}"


@pytest.mark.slow
@pytest.mark.usefixtures("netns")
def test_clean_removes_what_a_crashed_lab_left_behind(
    capsys: pytest.CaptureFixture[str],
) -> None:
    hosts = NetnsHosts(["a", "b"])
    hosts.create()
    # A node-like process still running inside, as after a crash of the launcher.
    orphan = subprocess.Popen([*hosts.exec_prefix(1), "sleep", "600"])
    try:
        assert cluster_main(["clean"]) == 0
        out = capsys.readouterr().out
        assert f"removed netns {hosts.hosts[0].netns}" in out
        assert f"removed link {hosts.bridge}" in out
        assert orphan.wait(timeout=20) == -signal.SIGKILL
        assert not {h.netns for h in hosts.hosts} & {n.split()[1] for n in _lab_names()}
    finally:
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait()
        hosts.destroy()

"""Pruning between dcounter-node processes: old entries go, the value stays.

Three scenarios (process tests are slow on a shared 2-core machine):

* three nodes joined through one seed; one keeps its state in a data directory, is killed
  (-9) and restarted (a new incarnation), and after --prune-after its two incarnations are
  one entry on every node, with the value unchanged; a clean restart then resumes the pruned
  id from its data directory and continues under its successor, as its pruning.json says;
* bequests: three durable nodes with a short --prune-after, one stopped for good and
  pruned by its heir;
* standing bequests: three durable nodes, one killed (-9) for good and pruned by its standing
  heir once it has been dead for --prune-after;
* two durable nodes whose heir's --prune-after is long, the other restarted (its id revoked
  and resumed), then restarted again while the heir is down (a new incarnation, the old id
  left to the heir).
"""

from __future__ import annotations

import re
import signal
from typing import TYPE_CHECKING, Any

import pytest

from dcounter_node.testing import free_port, wait_until

if TYPE_CHECKING:
    from pathlib import Path

    import aiohttp
    from tests.conftest import NodeProcesses

    from dcounter_node.testing import NodeProcess

pytestmark = pytest.mark.slow

DEADLINE = 60.0
QUICK = (
    "--http",
    "127.0.0.1:0",
    "--sync-interval",
    "0.1",
    "--probe-interval",
    "0.2",
    "--suspect-timeout",
    "1.5",
    "--prune-after",
    "1.5",
)
#: QUICK without --prune-after (each bequest scenario sets its own).
QUICK_BASE = QUICK[:-2]
MADE = re.compile(r"^dcounter_pruning_records_made_total (\S+)$", re.M)


async def counter(http: aiohttp.ClientSession, node: NodeProcess) -> dict[str, Any]:
    async with http.get(f"{node.url}/counter") as response:
        assert response.status == 200
        document: dict[str, Any] = await response.json()
    return document


def entries(document: dict[str, Any]) -> set[str]:
    return set(document["increments"]) | set(document["decrements"])


def the_heir(
    document: dict[str, Any], survivors: list[NodeProcess], gone: NodeProcess
) -> NodeProcess:
    """The one survivor whose successor holds ``gone``'s entry now (``gone``'s is gone)."""
    assert gone.replica not in entries(document)
    heirs = [n for n in survivors if n.replica + "'" in entries(document)]
    assert len(heirs) == 1, f"heirs by {sorted(entries(document))}: {heirs}"
    return heirs[0]


async def write(http: aiohttp.ClientSession, node: NodeProcess, route: str, by: int) -> None:
    async with http.post(f"{node.url}/{route}", json={"by": by}) as response:
        assert response.status == 200


async def all_hold(
    http: aiohttp.ClientSession, nodes: list[NodeProcess], total: int, count: int
) -> list[dict[str, Any]]:
    """Wait until every node has ``total`` in ``count`` entries, all the same."""
    documents: list[dict[str, Any]] = []

    async def check() -> bool:
        documents[:] = [await counter(http, node) for node in nodes]
        first = documents[0]
        return all(
            d["value"] == total
            and len(entries(d)) == count
            and (d["increments"], d["decrements"]) == (first["increments"], first["decrements"])
            for d in documents
        )

    await wait_until(
        check, within=DEADLINE, what=lambda: f"{total} in {count} entries: {documents}"
    )
    return documents


async def test_a_crash_restarts_old_entry_is_pruned_and_the_value_kept(
    node_processes: NodeProcesses, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    seed = await node_processes.start("seed", "--listen", "127.0.0.1:0", "--in-memory", *QUICK)
    other = await node_processes.start(
        "other", "--listen", "127.0.0.1:0", "--join", seed.gossip, "--in-memory", *QUICK
    )
    durable = (
        "--listen",
        f"127.0.0.1:{free_port()}",
        "--join",
        seed.gossip,
        "--data-dir",
        str(tmp_path / "data"),
        *QUICK,
    )
    crasher = await node_processes.start("crasher", *durable)
    await write(http, seed, "increment", 10)
    await write(http, other, "decrement", 3)
    await write(http, crasher, "increment", 7)
    await write(http, crasher, "decrement", 2)
    await all_hold(http, [seed, other, crasher], 12, 3)

    await crasher.kill()
    again = await node_processes.start("crasher-again", *durable)
    assert again.replica != crasher.replica  # no clean shutdown: a new incarnation
    await write(http, again, "increment", 5)
    nodes = [seed, other, again]
    # Both incarnations collapse into the successor of the new one, on every node.
    documents = await all_hold(http, nodes, 17, 3)
    successor = again.replica + "'"
    assert crasher.replica not in entries(documents[0])
    assert documents[0]["increments"][successor] == 12
    assert documents[0]["decrements"][successor] == 2
    async with http.get(f"{again.url}/metrics") as response:
        made = MADE.search(await response.text())
    assert made is not None
    assert float(made.group(1)) == 1
    assert "pruned 2 replica entries into" in again.log_text()

    async def listed_as_successor() -> bool:
        async with http.get(f"{seed.url}/members") as response:
            listed = (await response.json())["members"]
        return any(m["address"] == again.gossip and m["replica"] == successor for m in listed)

    await wait_until(listed_as_successor, within=DEADLINE, what="the new id in /members")
    await write(http, again, "increment", 1)
    await all_hold(http, nodes, 18, 3)

    # A clean restart resumes the pruned id from the data directory; pruning.json moves it
    # to its successor at once, and nothing is counted twice.
    again.signal(signal.SIGTERM)
    assert await again.wait_exit() == 0
    resumed = await node_processes.start("crasher-resumed", *durable)
    assert resumed.replica == successor
    await write(http, resumed, "increment", 2)
    await all_hold(http, [seed, other, resumed], 20, 3)


async def metric(http: aiohttp.ClientSession, node: NodeProcess, name: str) -> float:
    async with http.get(f"{node.url}/metrics") as response:
        found = re.search(rf"^{name} (\S+)$", await response.text(), re.M)
    assert found is not None, name
    return float(found.group(1))


def durable(tmp_path: Path, name: str, *more: str) -> tuple[str, ...]:
    """Flags of a node with a fixed port and a data directory (so it can come back)."""
    data = str(tmp_path / name)
    return ("--listen", f"127.0.0.1:{free_port()}", "--data-dir", data, *QUICK_BASE, *more)


async def capable_of_pruning(http: aiohttp.ClientSession, nodes: list[NodeProcess]) -> None:
    """Wait until every node knows that every other speaks pruning (a bequest needs it)."""
    others = len(nodes) - 1

    async def ready() -> bool:
        name = "dcounter_pruning_capable_members"
        return all([await metric(http, n, name) == others for n in nodes])

    await wait_until(ready, within=DEADLINE, what="pruning unpaused everywhere")


async def three_counting(
    node_processes: NodeProcesses, http: aiohttp.ClientSession, tmp_path: Path, *flags: str
) -> tuple[NodeProcess, NodeProcess, NodeProcess]:
    """Three durable members (the last to be pruned) with 12 counted, 3 entries, every one
    known to speak pruning."""
    seed = await node_processes.start("seed", *durable(tmp_path, "seed", *flags))
    other = await node_processes.start(
        "other", *durable(tmp_path, "other", "--join", seed.gossip, *flags)
    )
    last = await node_processes.start(
        "last", *durable(tmp_path, "last", "--join", seed.gossip, *flags)
    )
    await write(http, seed, "increment", 10)
    await write(http, other, "decrement", 3)
    await write(http, last, "increment", 7)
    await write(http, last, "decrement", 2)
    await all_hold(http, [seed, other, last], 12, 3)
    await capable_of_pruning(http, [seed, other, last])
    return seed, other, last


async def test_a_node_that_leaves_for_good_is_pruned_by_its_heir(
    node_processes: NodeProcesses, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    seed, other, leaver = await three_counting(node_processes, http, tmp_path, "--prune-after", "1")

    assert await leaver.stop() == 0
    assert "pruning: bequeathed" in leaver.log_text()
    # The heir's entry and the leaver's collapse into the heir's successor: 2 entries left.
    documents = await all_hold(http, [seed, other], 12, 2)
    heir = the_heir(documents[0], [seed, other], leaver)
    assert await metric(http, heir, "dcounter_bequests_accepted_total") == 1
    assert await metric(http, heir, "dcounter_bequests_pruned_total") == 1
    assert await metric(http, heir, "dcounter_bequests_held") == 0
    # Writes go on under the heir's successor, exactly.
    await write(http, heir, "increment", 1)
    await all_hold(http, [seed, other], 13, 2)


async def test_a_node_killed_for_good_is_pruned_by_its_standing_heir(
    node_processes: NodeProcesses, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    seed, other, victim = await three_counting(
        node_processes, http, tmp_path, "--prune-after", "1", "--suspect-timeout", "1"
    )

    async def named() -> bool:
        return await metric(http, victim, "dcounter_bequests_standing_given_total") >= 1

    await wait_until(named, within=DEADLINE, what="the victim naming a standing heir")
    await victim.kill()
    # Dead after the suspect timeout, pruned --prune-after later: the heir's entry and the
    # victim's collapse into the heir's successor, 2 entries left, the value unchanged.
    documents = await all_hold(http, [seed, other], 12, 2)
    heir = the_heir(documents[0], [seed, other], victim)
    assert await metric(http, heir, "dcounter_bequests_standing_pruned_total") == 1
    assert "pruned 2 replica entries into" in heir.log_text()
    # Its own standing heir revoked its id before the collapse (or was the victim itself).
    assert await metric(http, heir, "dcounter_bequests_own_revokes_total") <= 1
    await write(http, heir, "increment", 1)
    await all_hold(http, [seed, other], 13, 2)


async def test_a_node_back_in_time_takes_its_id_back_and_one_that_cannot_ask_starts_anew(
    node_processes: NodeProcesses, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    heir_flags = durable(tmp_path, "heir", "--prune-after", "600")
    heir = await node_processes.start("heir", *heir_flags)
    flags = durable(tmp_path, "leaver", "--join", heir.gossip, "--prune-after", "600")
    leaver = await node_processes.start("leaver", *flags)
    await write(http, heir, "increment", 4)
    await write(http, leaver, "increment", 9)
    await all_hold(http, [heir, leaver], 13, 2)
    await capable_of_pruning(http, [heir, leaver])

    # A rolling restart: the bequest is revoked, the id resumed, no entry added.
    assert await leaver.stop() == 0
    assert "pruning: bequeathed" in leaver.log_text()

    async def held() -> bool:
        return await metric(http, heir, "dcounter_bequests_held") == 1

    await wait_until(held, within=DEADLINE, what="the heir holding the bequest")
    back = await node_processes.start("leaver-back", *flags)
    assert back.replica == leaver.replica
    assert await metric(http, heir, "dcounter_bequests_revoked_total") == 1
    assert await metric(http, heir, "dcounter_bequests_held") == 0
    await write(http, back, "decrement", 1)
    await all_hold(http, [heir, back], 12, 2)
    await capable_of_pruning(http, [heir, back])

    # Bequeathed again, and the heir is down when it comes back: a new incarnation, the
    # old id the heir's (its entry stays until the heir prunes it).
    assert await back.stop() == 0
    assert "pruning: bequeathed" in back.log_text()
    assert await heir.stop() == 0
    anew = await node_processes.start("leaver-anew", *flags)
    assert anew.replica != back.replica
    assert "starting a new incarnation" in anew.log_text()
    # The leaver's join went to no one: the heir joins it this time.
    heir_again = await node_processes.start("heir-again", *heir_flags, "--join", anew.gossip)
    assert await metric(http, heir_again, "dcounter_bequests_held") == 1
    await write(http, anew, "increment", 2)
    documents: list[dict[str, Any]] = await all_hold(http, [heir_again, anew], 14, 3)
    assert back.replica in entries(documents[0])


async def named_counter(
    http: aiohttp.ClientSession, node: NodeProcess, name: str
) -> dict[str, Any]:
    async with http.get(f"{node.url}/counters/{name}") as response:
        assert response.status == 200
        document: dict[str, Any] = await response.json()
    return document


async def all_hold_named(
    http: aiohttp.ClientSession, nodes: list[NodeProcess], expected: dict[str, int], count: int
) -> dict[str, dict[str, Any]]:
    """Wait until every node holds each name's value in ``count`` entries, all the same."""
    documents: dict[str, list[dict[str, Any]]] = {}

    async def check() -> bool:
        for name in expected:
            documents[name] = [await named_counter(http, node, name) for node in nodes]
        return all(
            d["value"] == expected[name]
            and len(entries(d)) == count
            and (d["increments"], d["decrements"]) == (ds[0]["increments"], ds[0]["decrements"])
            for name, ds in documents.items()
            for d in ds
        )

    await wait_until(
        check, within=DEADLINE, what=lambda: f"{expected} in {count} entries: {documents}"
    )
    return {name: ds[0] for name, ds in documents.items()}


async def test_the_heir_prunes_a_leavers_named_counter_entries_too(
    node_processes: NodeProcesses, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    seed, other, leaver = await three_counting(node_processes, http, tmp_path, "--prune-after", "1")
    for node, by in ((seed, 4), (other, 5), (leaver, 6)):
        await write(http, node, "counters/hits/increment", by)
    await write(http, leaver, "counters/stock/decrement", 2)
    await write(http, other, "counters/stock/increment", 9)
    await write(http, seed, "counters/stock/increment", 1)
    await all_hold_named(http, [seed, other, leaver], {"hits": 15, "stock": 8}, 3)

    assert await leaver.stop() == 0
    # Every named counter's entry of the leaver goes with the default counter's, into the
    # heir's successor; the values stay exact and the two nodes agree entry for entry.
    await all_hold(http, [seed, other], 12, 2)
    documents = await all_hold_named(http, [seed, other], {"hits": 15, "stock": 8}, 2)
    heir = the_heir(documents["hits"], [seed, other], leaver)
    survivor = heir.replica + "'"
    assert leaver.replica not in entries(documents["stock"])
    assert documents["hits"]["increments"][survivor] == 6 + (4 if heir is seed else 5)
    assert documents["stock"]["increments"][survivor] == (1 if heir is seed else 9)
    assert documents["stock"]["decrements"] == {survivor: 2}
    assert "and 2 named counters' too" in heir.log_text()
    assert await metric(http, heir, "dcounter_pruning_named_capable_members") == 1  # the other
    # Writes go on under the heir's successor, exactly, on both nodes.
    await write(http, heir, "counters/hits/increment", 1)
    await write(http, heir, "counters/stock/decrement", 3)
    await write(http, seed if heir is other else other, "counters/hits/increment", 10)
    await all_hold_named(http, [seed, other], {"hits": 26, "stock": 5}, 2)

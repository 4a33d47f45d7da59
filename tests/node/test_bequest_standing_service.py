"""Standing bequests between nodes on the in-memory network: one heir per running node's id,
an unanswered offer pinned to its heir, a leave that makes it final with that heir, and the
ids a data directory counted under kept in ``bequest.json``."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from dcounter_node._bequest_service import GIVEN_FILENAME, load_bequests
from dcounter_protocol._memory import MemoryNetwork

from .conftest import address, wait_until
from .test_bequest_service import Member, given_file, start_member, three

if TYPE_CHECKING:
    from pathlib import Path


async def standing_heir(cluster: list[Member], owner: Member, directory: Path) -> Member:
    """The member ``owner`` names its standing heir, once it has (``directory``: its data)."""
    await wait_until(lambda: owner.bequests.standing_given == 1, what="a standing heir")
    [row] = given_file(directory)
    return next(m for m in cluster if m.node.address == row[1])


async def test_every_running_node_names_one_standing_heir(tmp_path: Path) -> None:
    network = MemoryNetwork(seed=5)
    cluster = await three(network, [tmp_path / n for n in "abc"], standing=True)
    try:
        await wait_until(
            lambda: all(m.bequests.standing_given == 1 for m in cluster),
            what="a standing heir for every node",
        )
        assert sum(m.bequests.standing_held for m in cluster) == 3
        assert all(m.bequests.held == 0 for m in cluster)  # no final bequest
        for member, name in zip(cluster, "abc", strict=True):
            [row] = given_file(tmp_path / name)
            victim, heir, p, n, _resumable, standing, confirmed = row
            assert (victim, p, n, standing, confirmed) == (member.node.replica_id, 0, 0, True, True)
            assert heir != member.node.address
            data = json.loads((tmp_path / name / GIVEN_FILENAME).read_text())
            assert data["own"] == [member.node.replica_id]
        # Nothing more is offered once held.
        assert all(m.bequests.standing_given == 1 for m in cluster)
    finally:
        for member in cluster:
            await member.close()


async def test_an_unanswered_offer_is_retried_with_its_heir_only(tmp_path: Path) -> None:
    network = MemoryNetwork(seed=6)
    cluster = await three(network, [tmp_path / n for n in "abc"])
    try:
        owner = cluster[2]
        victim = owner.node.replica_id
        # The answers to the owner are lost: the first heir takes it, the owner cannot know.
        network.partition([address(0), address(1)], [address(2)], one_way=True)
        owner.bequests.standing = True
        await owner.bequests._offer(victim, [address(0), address(1)])
        [row] = given_file(tmp_path / "c")
        assert (row[1], row[5], row[6]) == (address(0), True, False)  # pinned, unconfirmed
        assert (cluster[0].bequests.standing_held, cluster[1].bequests.standing_held) == (1, 0)
        network.heal()
        # The next rounds ask that heir again, which accepts what it holds.
        await wait_until(lambda: owner.bequests.standing_given == 1, what="the heir confirmed")
        [row] = given_file(tmp_path / "c")
        assert (row[1], row[6]) == (address(0), True)
        assert cluster[1].bequests.standing_held == 0
    finally:
        network.heal()
        for member in cluster:
            await member.close()


async def test_a_leave_makes_the_standing_bequest_final_with_its_heir(tmp_path: Path) -> None:
    network = MemoryNetwork(seed=7)
    cluster = await three(network, [tmp_path / n for n in "abc"], standing=True)
    try:
        leaver = cluster[2]
        heir = await standing_heir(cluster, leaver, tmp_path / "c")
        leaver.node.increment(5)
        await leaver.bequests.bequeath(wait=2.0)
        assert leaver.bequests.given == 1
        assert heir.bequests.held == 1
        assert heir.bequests.due(0.0) == {leaver.node.replica_id: (5, 0)}
        assert given_file(tmp_path / "c") == [
            [leaver.node.replica_id, heir.node.address, 5, 0, True, False, True]
        ]
    finally:
        for member in cluster:
            await member.close()


async def test_the_ids_a_data_directory_counted_under_are_kept(tmp_path: Path) -> None:
    network = MemoryNetwork(seed=8)
    directory = tmp_path / "a"
    directory.mkdir()
    first = await start_member(network, 0, directory)
    first_id = first.node.replica_id
    await first.close()
    # A new incarnation in the same directory adds its id; its tombstones claim both, so
    # a record naming the first moves what this directory counted above it (adopt).
    again = await start_member(network, 0, directory)
    try:
        assert again.node.replica_id != first_id
        _, bequeathed = load_bequests(directory)
        assert bequeathed.own() == {first_id, again.node.replica_id}
        assert again.pruning.tombstones.claimed == {first_id, again.node.replica_id}
    finally:
        await again.close()


async def test_a_leaving_heir_releases_and_its_owner_names_another(tmp_path: Path) -> None:
    network = MemoryNetwork(seed=9)
    cluster = await three(network, [tmp_path / n for n in "abc"], standing=True)
    try:
        owner = cluster[2]
        heir = await standing_heir(cluster, owner, tmp_path / "c")
        await heir.bequests.bequeath(wait=2.0)  # its shutdown: it has nothing of its own
        assert heir.bequests.standing_released >= 1
        assert heir.bequests.standing_held == 0
        await wait_until(lambda: owner.bequests.standing_given == 2, what="a second heir")
        [row] = given_file(tmp_path / "c")
        assert row[1] not in (heir.node.address, owner.node.address)
    finally:
        for member in cluster:
            await member.close()

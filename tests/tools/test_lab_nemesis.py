"""The nemesis schedule: seeded, replayable, non-overlapping, and each partition shape right."""

from __future__ import annotations

import itertools

import pytest

from dcounter_tools.cluster.nemesis import (
    NEMESIS_KINDS,
    Fault,
    parse_nemesis,
    plan_schedule,
    render_schedule,
)
from dcounter_tools.errors import UsageError

ALL = NEMESIS_KINDS


def _partitions(count: int, seeds: range = range(200)) -> list[Fault]:
    return [
        fault for seed in seeds for fault in plan_schedule(("partition",), count, 60.0, 3.0, seed)
    ]


def test_the_same_seed_gives_the_same_schedule() -> None:
    assert plan_schedule(ALL, 5, 30.0, 3.0, 42) == plan_schedule(ALL, 5, 30.0, 3.0, 42)


def test_different_seeds_give_different_schedules() -> None:
    schedules = {render_schedule(plan_schedule(ALL, 5, 30.0, 3.0, seed)) for seed in range(20)}
    assert len(schedules) > 15


def test_windows_never_overlap_and_heal_well_before_the_end() -> None:
    for seed in range(50):
        faults = plan_schedule(ALL, 5, 30.0, 3.0, seed)
        assert len(faults) == 8  # starts at 3, 6, ..., 24
        for fault in faults:
            assert 0 < fault.start < fault.end <= 30.0 - 1.5
            assert 0.4 * 3.0 <= fault.end - fault.start <= 0.8 * 3.0 + 0.001
        for earlier, later in itertools.pairwise(faults):
            assert earlier.end < later.start


def test_only_the_asked_kinds_strike() -> None:
    kinds = {f.kind for seed in range(30) for f in plan_schedule(("kill", "pause"), 4, 40, 2, seed)}
    assert kinds == {"kill", "pause"}


def test_a_run_too_short_for_a_fault_gets_none() -> None:
    assert plan_schedule(ALL, 5, 4.0, 3.0, 1) == []
    assert render_schedule([]) == "nemesis schedule: no faults fit in the run"


def test_process_faults_name_one_victim_and_no_links() -> None:
    for fault in plan_schedule(("kill", "pause", "restart"), 5, 60.0, 3.0, 9):
        assert len(fault.nodes) == 1
        assert 0 <= fault.nodes[0] < 5
        assert fault.links == ()


def test_every_partition_shape_occurs() -> None:
    assert {f.shape for f in _partitions(5)} == {
        "halves",
        "majority",
        "isolated",
        "bridge",
        "one-way",
    }


def test_symmetric_partitions_cut_every_link_between_their_two_sides_both_ways() -> None:
    for fault in _partitions(5):
        if fault.shape not in ("halves", "majority", "isolated"):
            continue
        a, b = fault.sides
        assert sorted([*a, *b]) == [0, 1, 2, 3, 4]
        expected = {(x, y) for x in a for y in b} | {(y, x) for x in a for y in b}
        assert set(fault.links) == expected
        if fault.shape == "isolated":
            assert len(a) == 1
        if fault.shape == "majority":
            assert (len(a), len(b)) == (3, 2)


def test_a_bridge_node_sits_on_both_sides_and_keeps_every_link() -> None:
    for fault in _partitions(5):
        if fault.shape != "bridge":
            continue
        left, right = map(set, fault.sides)
        (bridge,) = left & right
        assert left | right == {0, 1, 2, 3, 4}
        assert all(bridge not in link for link in fault.links)
        assert set(fault.links) == {(x, y) for x in left - {bridge} for y in right - {bridge}} | {
            (y, x) for x in left - {bridge} for y in right - {bridge}
        }


def test_a_one_way_partition_cuts_one_direction_only() -> None:
    for fault in _partitions(5):
        if fault.shape != "one-way":
            continue
        senders, receivers = fault.sides
        assert set(fault.links) == {(s, r) for s in senders for r in receivers}
        assert not {(r, s) for s, r in fault.links} & set(fault.links)


def test_two_nodes_only_split_in_two_or_one_way() -> None:
    assert {f.shape for f in _partitions(2, range(50))} == {"halves", "one-way"}


def test_a_partition_of_one_node_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="at least 2 nodes"):
        plan_schedule(("partition",), 1, 30.0, 3.0, 1)


def test_parse_nemesis_keeps_known_kinds_in_order_without_duplicates() -> None:
    assert parse_nemesis("kill, pause,kill") == ("kill", "pause")


@pytest.mark.parametrize("text", ["", "kill,explode", ","])
def test_parse_nemesis_rejects_unknown_or_empty(text: str) -> None:
    with pytest.raises(UsageError, match="--nemesis takes"):
        parse_nemesis(text)


def test_the_printed_schedule_names_every_fault_and_its_window() -> None:
    faults = plan_schedule(ALL, 5, 30.0, 3.0, 7)
    names = tuple(f"node-{i}" for i in range(5))
    text = render_schedule(faults, names)
    lines = text.splitlines()
    assert lines[0] == f"nemesis schedule ({len(faults)} faults):"
    for fault, line in zip(faults, lines[1:], strict=True):
        assert f"{fault.start:.2f}" in line
        assert f"{fault.end:.2f}" in line
        assert fault.kind in line
        assert "node-" in line


def test_describe_shows_sides_and_direction() -> None:
    halves = Fault("partition", 1, 2, (0, 1, 2), "halves", ((0,), (1, 2)), ())
    one_way = Fault("partition", 1, 2, (0, 1), "one-way", ((0,), (1,)), ((0, 1),))
    assert halves.describe() == "partition halves: [n0] | [n1 n2]"
    assert one_way.describe() == "partition one-way: [n0] -/-> [n1]"
    assert Fault("kill", 1, 2, (3,)).describe() == "kill n3 (SIGKILL, back at the end)"

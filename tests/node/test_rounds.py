"""When periodic gossip runs (GossipRounds): idle rounds spared only when both cores agree,
cores out of step brought in step, full syncs only while something diverged."""

from __future__ import annotations

import random
from dataclasses import dataclass

from dcounter_node._rounds import GossipRounds
from dcounter_node.testing import wait_until


@dataclass
class Core:
    """A gossip core's idle-round bookkeeping, recording what pacing takes."""

    idle_round_due: bool = False
    taken: int = 0

    def take_idle_round(self) -> bool:
        self.taken += 1
        due, self.idle_round_due = self.idle_round_due, False
        return due


def scheduled(paced: GossipRounds) -> bool:
    # A call, not the property: mypy would keep the property narrowed across calls.
    return paced.full_syncs_scheduled


def rounds(*, full_sync_due: list[bool], full_syncs: list[int]) -> GossipRounds:
    return GossipRounds(
        sync_interval=3600.0,  # never during a test: pacing is called directly
        full_sync_interval=0.01,
        rng=random.Random(1),
        sync_round=lambda: None,
        full_sync_round=lambda: full_syncs.append(1),
        full_sync_due=lambda: full_sync_due[0],
    )


async def test_a_round_is_spared_only_when_both_cores_would_pull_for_nothing() -> None:
    paced = rounds(full_sync_due=[True], full_syncs=[])
    paced.start()
    try:
        default, named = Core(idle_round_due=True), Core(idle_round_due=False)
        paced.pace(default, named, in_agreement=True)
        assert (default.taken, named.taken) == (0, 0)  # the named core still pulls
        named.idle_round_due = True
        paced.pace(default, named, in_agreement=True)
        assert (default.taken, named.taken) == (1, 1)
    finally:
        paced.stop()


async def test_cores_out_of_step_pull_together_after_a_round() -> None:
    paced = rounds(full_sync_due=[True], full_syncs=[])
    paced.start()
    try:
        default, named = Core(idle_round_due=True), Core(idle_round_due=False)
        paced.round_ended(default, named, in_agreement=True)
        assert (default.taken, named.taken) == (1, 1)
        assert not default.idle_round_due
    finally:
        paced.stop()


async def test_full_syncs_stop_while_nothing_diverged_and_resume_on_a_change() -> None:
    due, full_syncs = [False], list[int]()
    paced = rounds(full_sync_due=due, full_syncs=full_syncs)
    paced.start()
    try:
        await wait_until(lambda: bool(full_syncs), what="a first full-sync round")
        assert not scheduled(paced)  # it pushed nothing: no wake-ups for it
        due[0] = True
        paced.woken()  # a local write
        assert scheduled(paced)
        ran = len(full_syncs)
        await wait_until(lambda: len(full_syncs) > ran + 2, what="full syncs again")
    finally:
        paced.stop()
    assert not scheduled(paced)


async def test_nothing_is_scheduled_again_once_stopped() -> None:
    paced = rounds(full_sync_due=[True], full_syncs=[])
    paced.start()
    paced.stop()
    paced.woken()
    paced.pace(Core(), Core(), in_agreement=False)
    assert not scheduled(paced)

"""Bequests' edge: runs the pure rules of :mod:`dcounter_node._bequest` for a node.

Both sides: as an heir it answers ``bequeath`` and ``revoke`` (``DCP`` payloads) and keeps
what it holds in ``bequests.json``; the pruning service collapses the bequests that are due.
As a leaving node it gives its id to one heir (:meth:`BequestService.bequeath`, at shutdown,
after the API servers closed) and keeps what it gave in ``bequest.json``; as a returning one
it asks the heir to revoke it before its database is opened (:meth:`BequestService.resolve`,
run by the node through ``Node.before_open``). Files are written before what they record
takes effect (fsync, atomic replace), like ``pruning.json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from typing import TYPE_CHECKING, Final

from dcounter_node._bequest import (
    Answer,
    Bequeathed,
    Bequest,
    Given,
    Heirloom,
    Outcome,
    after_revoke,
    heir_order,
    standing_heirs,
)
from dcounter_node._bequest_files import GIVEN_FILENAME, HELD_FILENAME, load_bequests
from dcounter_node._errors import StorageError
from dcounter_node._membership import MemberState
from dcounter_node._pruning import MAX_RECORDS
from dcounter_node._pruning_service import write_json
from dcounter_node._pruning_wire import (
    PruningKind,
    encode_answer,
    encode_bequeath,
    encode_revoke,
    encode_stand,
)
from dcounter_node._ratelimit import RateLimitedLog

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

    from dcounter_node._pruning import PruneRecord
    from dcounter_node._pruning_service import PruningService
    from dcounter_node._pruning_wire import PruningMessage
    from dcounter_node._storage_sqlite import SQLiteStore

__all__ = ["GIVEN_FILENAME", "HELD_FILENAME", "BequestService", "load_bequests"]

logger = logging.getLogger("dcounter_node.pruning")

#: How long a start waits for the heir's answer to a revoke, resending every _RESEND.
REVOKE_WAIT: Final = 5.0
_RESEND: Final = 0.5


class BequestService:
    """Bequests for a node whose pruning service runs; ``directory`` None: in memory (this
    node then neither gives nor takes bequests, but answers revokes)."""

    def __init__(
        self,
        pruning: PruningService,
        heirloom: Heirloom,
        bequeathed: Bequeathed,
        *,
        directory: Path | None,
        store: SQLiteStore | None = None,
        rng: random.Random | None = None,
        standing: bool = False,
    ) -> None:
        self._pruning = pruning
        # A crash between a prune and the rewrite of bequests.json leaves pruned ones held.
        heirloom.drop([b.victim for b in heirloom.held() if pruning.tombstones.is_victim(b.victim)])
        self._heirloom = heirloom
        self._given = bequeathed
        self._directory = directory
        self._store = store
        self._rng = rng if rng is not None else random.Random()
        self._waiting: dict[str, asyncio.Future[Answer]] = {}
        #: Whether this node names a standing heir for its id while it runs.
        self.standing = standing and directory is not None and pruning.prune_after is not None
        #: The standing bequest offer or own revoke in flight (one at a time).
        self._asking: asyncio.Task[None] | None = None
        # Previous incarnations' excess above a record moves to their successors (adopt).
        pruning.tombstones.claim(bequeathed.own())
        # Set at shutdown: a node on its way out takes no bequest (it could not prune it).
        self._leaving = False
        self._log = RateLimitedLog(logger)
        self.accepted = 0
        self.pruned = 0
        self.revoked = 0
        self.given = 0
        self.standing_given = 0
        self.standing_accepted = 0
        self.standing_released = 0
        self.standing_pruned = 0
        self.own_revokes = 0
        pruning.bequests = self
        pruning.node.before_open = self.resolve

    @property
    def held(self) -> int:
        """Final bequests held (ids of members that left)."""
        return sum(1 for b in self._heirloom.held() if not b.standing)

    @property
    def standing_held(self) -> int:
        return sum(1 for b in self._heirloom.held() if b.standing)

    def started(self) -> None:
        """Record the node's id among its data directory's own ids (after the node started,
        before its API opens: no write under it yet); StorageError if it cannot."""
        replica_id = self._pruning.node.replica_id
        self._pruning.tombstones.claim([replica_id])
        if self._given.claim(replica_id) and not self._write_given():
            raise StorageError(f"cannot write {GIVEN_FILENAME} (the node was not started)")

    def kept(self) -> frozenset[str]:
        """Ids this node bequeathed: its lineage pruning leaves them to their heir."""
        return self._given.kept()

    def due(self, prune_after: float) -> dict[str, tuple[int, int]]:
        """The held bequests to prune now (a standing one at this node's entry for it)."""
        state = self._pruning.node.state()
        return self._heirloom.due(
            time.time(),
            prune_after,
            lambda v: (state.increments.get(v, 0), state.decrements.get(v, 0)),
        )

    def watch(self) -> None:
        """Note which standing bequests' owners are gone (every probe interval)."""
        if not any(b.standing for b in self._heirloom.held()):
            return
        membership = self._pruning.members.membership
        known = {} if membership is None else {m.address: m for m in membership.members()}

        def gone(bequest: Bequest) -> bool:
            member = known.get(bequest.owner)
            return (
                member is None
                or member.state in (MemberState.DEAD, MemberState.LEFT)
                or member.replica != bequest.victim
            )

        self._heirloom.watch(gone, time.time())

    # -- the heir's side --------------------------------------------------------------------

    def on_message(self, sender: str, message: PruningMessage) -> None:
        """A bequeath, revoke or answer (each handled in this one step)."""
        if message.kind is PruningKind.BEQUEATH:
            answer = self._take(sender, Bequest(message.victim, message.counts, time.time()))
            self._pruning.send(sender, encode_answer(message.victim, answer))
        elif message.kind is PruningKind.STAND:
            bequest = Bequest(message.victim, (0, 0), time.time(), standing=True, owner=sender)
            answer = self._take(sender, bequest)
            self._pruning.send(sender, encode_answer(message.victim, answer))
        elif message.kind is PruningKind.REVOKE:
            self._on_revoke(sender, message.victim, message.counts)
        elif message.answer is Answer.RELEASED:
            if self._given.released(message.victim, sender):
                self._write_given()
                logger.info(
                    "pruning: %s released the standing bequest of %s", sender, message.victim
                )
        elif message.answer is not None:
            waiting = self._waiting.get(message.victim)
            if waiting is not None and not waiting.done():
                waiting.set_result(message.answer)

    def _take(self, sender: str, bequest: Bequest) -> Answer:
        pruning = self._pruning
        reason = pruning.pause_now()
        if bequest.victim in self._heirloom:
            reason = None  # held already: see Heirloom.refusal
        elif self._leaving:
            reason = "this node is shutting down"
        elif pruning.prune_after is None or self._directory is None:
            reason = "this node does not prune, or keeps no data directory"
        elif len(pruning.tombstones) >= MAX_RECORDS:
            reason = "too many records held"
        if reason is None:
            reason = self._heirloom.refusal(bequest, pruned=pruning.tombstones.is_victim)
        if reason is None:
            previous = self._heirloom.take(bequest)
            if self._write_held():
                if bequest.standing:
                    self.standing_accepted += 1
                else:
                    self.accepted += 1
                logger.info("pruning: holding the bequest of %s from %s", bequest.victim, sender)
                return Answer.ACCEPTED
            self._heirloom.drop([bequest.victim])
            if previous is not None:
                self._heirloom.take(previous)  # as the file still says
            reason = "cannot write the bequests"
        self._log.warning(
            f"refuse:{sender}",
            "pruning: refusing the bequest of %s from %s: %s",
            bequest.victim,
            sender,
            reason,
        )
        return Answer.REFUSED

    def _on_revoke(self, sender: str, victim: str, counts: tuple[int, int]) -> None:
        tombstones = self._pruning.tombstones
        if tombstones.is_victim(victim):
            record = next(r for r in tombstones.records() if victim in r.victims)
            # In this order: the owner applies the record before it reads the answer.
            answer = encode_answer(victim, Answer.PRUNED)
            self._pruning.send(sender, *self._pruning.records_payloads(sender, [record]), answer)
            return
        dropped = self._heirloom.revoke(victim, counts)
        if dropped is not None:
            if not self._write_held():
                self._heirloom.take(dropped)  # no answer: the owner starts a new incarnation
                return
            self.revoked += 1
            logger.info("pruning: %s revoked its bequest", victim)
        self._pruning.send(sender, encode_answer(victim, Answer.REVOKED))

    def collapsed(self, record: PruneRecord) -> None:
        """A record this node made or learnt: the bequests it prunes are done."""
        dropped = self._heirloom.drop(list(record.victims))
        if dropped:
            standing = sum(1 for b in dropped if b.standing)
            self.standing_pruned += standing
            self.pruned += len(dropped) - standing
            self._write_held()
        if self._given.settle(self._pruning.tombstones.is_victim):
            self._write_given()

    # -- the leaving side ---------------------------------------------------------------------

    async def bequeath(self, *, wait: float) -> None:
        """Give this node's id to one heir (at shutdown, after the API servers closed)."""
        self._leaving = True
        await self._release(wait)
        pruning = self._pruning
        node = pruning.node
        victim = node.replica_id
        state = node.state()
        counts = (state.increments.get(victim, 0), state.decrements.get(victim, 0))
        if pruning.prune_after is None or self._directory is None or counts == (0, 0):
            return
        reason = pruning.pause_now()
        if reason is not None:
            logger.info("pruning: not bequeathing %s: %s", victim, reason)
            return
        pruning.stop_rounds()  # no collapse of this id while it is being given
        await self._stop_asking()
        standing = self._given.get(victim)
        if standing is not None:
            await self._make_final(standing, counts, wait)
            return
        for heir in heir_order(pruning.alive(), pruning.capable, self._rng):
            answer = await self._give(Given(victim, heir, counts), wait)
            if answer is not Answer.REFUSED:
                # Given, or it may hold it: never a second heir for this id (see the README).
                return
            self._given.forget(victim)
            self._write_given()
        logger.info("pruning: no member took the bequest of %s", victim)

    async def _make_final(self, standing: Given, counts: tuple[int, int], wait: float) -> None:
        """Turn the standing bequest of this node's id final, with its heir only (it holds
        it, or may): refused, it stays the standing one, which the heir prunes once this
        node has been left for --prune-after."""
        answer = await self._give(Given(standing.victim, standing.heir, counts), wait)
        if answer is Answer.REFUSED:
            self._given.record(standing)
            self._write_given()
            logger.info(
                "pruning: %s keeps the standing bequest of %s", standing.heir, standing.victim
            )

    async def _give(self, given: Given, wait: float) -> Answer | None:
        """Record ``given`` durably, then ask its heir to take it: the answer (None: the
        record could not be written, or no answer came), logged unless refused."""
        victim, heir = given.victim, given.heir
        self._given.record(given)
        if not self._write_given():
            return None
        answer = await self._ask(heir, encode_bequeath(victim, given.counts), victim, wait)
        if answer is Answer.ACCEPTED:
            self.given += 1
            logger.info("pruning: bequeathed %s to %s", victim, heir)
        elif answer is not Answer.REFUSED:
            logger.warning("pruning: no answer from %s to the bequest of %s", heir, victim)
        return answer

    # -- standing bequests (the running side) --------------------------------------------------

    def offer(self) -> None:
        """A round (pruning on, running, not paused): name a standing heir for this node's
        id if none holds it, in the background."""
        if not self.standing or self._leaving or self._asking is not None:
            return
        victim = self._pruning.node.replica_id
        pruning = self._pruning
        order = standing_heirs(self._given.get(victim), pruning.alive(), pruning.capable, self._rng)
        if order:
            self._asking = asyncio.ensure_future(self._offer(victim, order))
            self._asking.add_done_callback(self._asked)

    def _asked(self, task: asyncio.Task[None]) -> None:
        self._asking = None
        if not task.cancelled() and task.exception() is not None:
            logger.error("pruning: a standing bequest failed", exc_info=task.exception())

    async def _offer(self, victim: str, order: list[str]) -> None:
        wait = min(max(2 * self._pruning.interval, 0.5), 5.0)
        for heir in order:
            pinned = self._given.get(victim) is not None  # an earlier answer was lost
            self._given.record(Given(victim, heir, (0, 0), standing=True, confirmed=False))
            if not self._write_given():
                return
            answer = await self._ask(heir, encode_stand(victim), victim, wait)
            if answer is Answer.ACCEPTED:
                self._given.record(Given(victim, heir, (0, 0), standing=True))
                self._write_given()
                self.standing_given += 1
                logger.info("pruning: %s is the standing heir of %s", heir, victim)
                return
            if answer is None or pinned:
                return  # it may hold it (or a copy still on its way): that heir only
            self._given.forget(victim)
            self._write_given()

    def may_collapse(self, record: PruneRecord) -> bool:
        """Whether this node may make ``record`` now (it names its current id): yes unless
        an heir holds (or may hold) a standing bequest of it, which it then asks to revoke
        in the background (the collapse follows the ``revoked`` answer), or that heir is
        gone and ``record`` prunes the heir's own id, given to this node (see the README)."""
        victim = self._pruning.node.replica_id
        given = self._given.get(victim)
        if given is None or self._prunes_its_heir(given, record):
            return True
        if self._asking is None and not self._leaving:
            self._asking = asyncio.ensure_future(self._revoke_own(given))
            self._asking.add_done_callback(self._asked)
        return False

    def _prunes_its_heir(self, given: Given, record: PruneRecord) -> bool:
        """Whether ``record`` prunes a standing bequest whose owner is ``given``'s heir, held
        gone (dead, left, forgotten) by this node: it cannot revoke, and need not."""
        if not given.standing or given.heir not in self._gone_owners():
            return False
        return any(
            b.standing and b.owner == given.heir and b.victim in record.victims
            for b in self._heirloom.held()
        )

    def _gone_owners(self) -> set[str]:
        """Members this node holds dead or left, or does not know (any more)."""
        membership = self._pruning.members.membership
        if membership is None:
            return set()
        known = {m.address: m.state for m in membership.members()}
        owners = {b.owner for b in self._heirloom.held() if b.standing}
        return {
            o
            for o in owners
            if known.get(o, MemberState.DEAD) in (MemberState.DEAD, MemberState.LEFT)
        }

    async def _revoke_own(self, given: Given) -> None:
        wait = min(max(2 * self._pruning.interval, 0.5), 5.0)
        payload = encode_revoke(given.victim, given.counts)
        answer = await self._ask(given.heir, payload, given.victim, wait)
        if answer is not Answer.REVOKED or self._leaving:
            return  # pruned: the heir's record came first; no answer: next round
        self._given.forget(given.victim)
        if not self._write_given():
            return
        self.own_revokes += 1
        logger.info("pruning: %s revoked the standing bequest of %s", given.heir, given.victim)
        self._pruning.prune_now()  # in this step: no offer of the id in between

    async def close(self) -> None:
        await self._stop_asking()

    async def _stop_asking(self) -> None:
        task, self._asking = self._asking, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _release(self, wait: float) -> None:
        """Leaving: drop the standing bequests held (durably), then tell their owners."""
        released = self._heirloom.release()
        if not released:
            return
        if not self._write_held():
            for bequest in released:
                self._heirloom.take(bequest)  # as the file still says: keep holding them
            return
        self.standing_released += len(released)
        sends = [
            self._pruning.send_now(b.owner, encode_answer(b.victim, Answer.RELEASED))
            for b in released
        ]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await asyncio.gather(*sends, return_exceptions=True)

    async def _ask(self, address: str, payload: bytes, victim: str, wait: float) -> Answer | None:
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._waiting[victim] = future
        try:
            async with asyncio.timeout(wait):
                await self._pruning.send_now(address, payload)
                return await future
        except TimeoutError:
            return None
        finally:
            del self._waiting[victim]

    # -- the returning side -------------------------------------------------------------------

    async def resolve(self) -> None:
        """Before the database opens: have a resumable bequest revoked, or start anew."""
        tombstones = self._pruning.tombstones
        if self._given.settle(tombstones.is_victim):
            self._write_given()
        given = self._given.to_revoke()
        if given is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + REVOKE_WAIT
        answer: Answer | None = None
        payload = encode_revoke(given.victim, given.counts)
        while answer not in (Answer.REVOKED, Answer.PRUNED) and loop.time() < deadline:
            wait = min(_RESEND, deadline - loop.time())
            # Resent: the first may go out before the heir's stream is up (or be lost).
            answer = await self._ask(given.heir, payload, given.victim, wait)
        outcome = after_revoke(answer, pruned=tombstones.is_victim(given.victim))
        if outcome is Outcome.NEW_INCARNATION:
            self._given.abandon(given.victim)
            if self._store is not None:
                self._store.resume = False
            logger.warning(
                "pruning: %s did not revoke the bequest of %s: starting a new incarnation"
                " (the heir prunes the old id)",
                given.heir,
                given.victim,
            )
        else:
            self._given.forget(given.victim)
            said = "revoked" if outcome is Outcome.RESUME else "had pruned"
            logger.info("pruning: %s %s the bequest of %s", given.heir, said, given.victim)
        if not self._write_given():
            raise StorageError(f"cannot write {GIVEN_FILENAME} (the node was not started)")

    # -- files ---------------------------------------------------------------------------

    def _write(
        self, name: str, key: str, rows: Iterable[list[object]], *, own: list[str] | None = None
    ) -> bool:
        if self._directory is None:
            return True
        path = self._directory / name
        data: dict[str, object] = {"version": 1, key: list(rows)}
        if own is not None:
            data["own"] = own
        try:
            write_json(path, data)
        except OSError as exc:
            self._log.warning("write", "pruning: cannot write %s: %s", path, exc)
            return False
        return True

    def _write_held(self) -> bool:
        rows = (
            [b.victim, *b.counts, b.received, b.owner, b.standing] for b in self._heirloom.held()
        )
        return self._write(HELD_FILENAME, "held", rows)

    def _write_given(self) -> bool:
        rows = (
            [g.victim, g.heir, *g.counts, g.resumable, g.standing, g.confirmed]
            for g in self._given.given()
        )
        return self._write(GIVEN_FILENAME, "given", rows, own=sorted(self._given.own()))

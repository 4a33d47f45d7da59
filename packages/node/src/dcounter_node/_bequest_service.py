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
import json
import logging
import random
import time
from typing import TYPE_CHECKING, Any, Final

from dcounter_node._bequest import (
    Answer,
    Bequeathed,
    Bequest,
    Given,
    Heirloom,
    Outcome,
    after_revoke,
    heir_order,
)
from dcounter_node._errors import StorageError
from dcounter_node._pruning import MAX_RECORDS
from dcounter_node._pruning_service import write_json
from dcounter_node._pruning_wire import (
    PruningKind,
    encode_answer,
    encode_bequeath,
    encode_records,
    encode_revoke,
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

#: What this node bequeathed (the leaving side).
GIVEN_FILENAME: Final = "bequest.json"
#: What this node holds as an heir.
HELD_FILENAME: Final = "bequests.json"
#: How long a start waits for the heir's answer to a revoke, resending every _RESEND.
REVOKE_WAIT: Final = 5.0
_RESEND: Final = 0.5


def _rows(path: Path, key: str) -> list[list[Any]]:
    """The rows kept under ``key`` in ``path`` (none if it does not exist)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise StorageError(f"{path}: cannot read the bequests: {exc}") from None
    except ValueError as exc:
        raise StorageError(f"{path}: the bequests are corrupt: {exc!r}") from None
    rows = data.get(key) if isinstance(data, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
        raise StorageError(f"{path}: the bequests are corrupt: no list of rows {key!r}")
    return rows


def load_bequests(directory: Path | None) -> tuple[Heirloom, Bequeathed]:
    """What ``directory`` keeps (None: in memory): the bequests held and given;
    StorageError if unusable."""
    if directory is None:
        return Heirloom(), Bequeathed()
    held = _rows(directory / HELD_FILENAME, "held")
    given = _rows(directory / GIVEN_FILENAME, "given")
    try:
        return Heirloom(
            Bequest(str(v), (int(p), int(n)), float(received)) for v, p, n, received in held
        ), Bequeathed(
            Given(str(v), str(heir), (int(p), int(n)), bool(resumable))
            for v, heir, p, n, resumable in given
        )
    except (ValueError, TypeError) as exc:
        raise StorageError(f"{directory}: the bequest files are corrupt: {exc!r}") from None


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
        # Set at shutdown: a node on its way out takes no bequest (it could not prune it).
        self._leaving = False
        self._log = RateLimitedLog(logger)
        self.accepted = 0
        self.pruned = 0
        self.revoked = 0
        self.given = 0
        pruning.bequests = self
        pruning.node.before_open = self.resolve

    @property
    def held(self) -> int:
        return len(self._heirloom)

    def kept(self) -> frozenset[str]:
        """Ids this node bequeathed: its lineage pruning leaves them to their heir."""
        return self._given.kept()

    def due(self, prune_after: float) -> dict[str, tuple[int, int]]:
        return self._heirloom.due(time.time(), prune_after)

    # -- the heir's side --------------------------------------------------------------------

    def on_message(self, sender: str, message: PruningMessage) -> None:
        """A bequeath, revoke or answer (each handled in this one step)."""
        if message.kind is PruningKind.BEQUEATH:
            answer = self._take(sender, Bequest(message.victim, message.counts, time.time()))
            self._pruning.send(sender, encode_answer(message.victim, answer))
        elif message.kind is PruningKind.REVOKE:
            self._on_revoke(sender, message.victim, message.counts)
        elif message.answer is not None:
            waiting = self._waiting.get(message.victim)
            if waiting is not None and not waiting.done():
                waiting.set_result(message.answer)

    def _take(self, sender: str, bequest: Bequest) -> Answer:
        pruning = self._pruning
        reason = pruning.pause_now()
        if self._leaving:
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
            self._pruning.send(sender, encode_records([record]), answer)
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
            self.pruned += len(dropped)
            self._write_held()
        if self._given.settle(self._pruning.tombstones.is_victim):
            self._write_given()

    # -- the leaving side ---------------------------------------------------------------------

    async def bequeath(self, *, wait: float) -> None:
        """Give this node's id to one heir (at shutdown, after the API servers closed)."""
        self._leaving = True
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
        for heir in heir_order(pruning.alive(), pruning.capable, self._rng):
            self._given.record(Given(victim, heir, counts))
            if not self._write_given():
                return
            answer = await self._ask(heir, encode_bequeath(victim, counts), victim, wait)
            if answer is Answer.ACCEPTED:
                self.given += 1
                logger.info("pruning: bequeathed %s to %s", victim, heir)
                return
            if answer is not Answer.REFUSED:
                # It may hold it: never a second heir for this id (see the README).
                logger.warning("pruning: no answer from %s to the bequest of %s", heir, victim)
                return
            self._given.forget(victim)
            self._write_given()
        logger.info("pruning: no member took the bequest of %s", victim)

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

    def _write(self, name: str, key: str, rows: Iterable[list[object]]) -> bool:
        if self._directory is None:
            return True
        path = self._directory / name
        try:
            write_json(path, {"version": 1, key: list(rows)})
        except OSError as exc:
            self._log.warning("write", "pruning: cannot write %s: %s", path, exc)
            return False
        return True

    def _write_held(self) -> bool:
        rows = ([b.victim, *b.counts, b.received] for b in self._heirloom.held())
        return self._write(HELD_FILENAME, "held", rows)

    def _write_given(self) -> bool:
        rows = ([g.victim, g.heir, *g.counts, g.resumable] for g in self._given.given())
        return self._write(GIVEN_FILENAME, "given", rows)

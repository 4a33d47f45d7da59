"""Pruning's edge: runs the pure rules of :mod:`dcounter_node._pruning` for a node.

It spreads and receives records (``DCP`` payloads, :mod:`dcounter_node._pruning_wire`)
through the membership service's sends (streams that confirmed ``CAP_MEMBERSHIP`` only),
keeps them in ``pruning.json`` in the data directory (written before they take effect),
decides every probe interval whether this node collapses its lineage, logs each prune once
and exports its counters on ``/metrics``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import time
from typing import TYPE_CHECKING, Any, Final

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from dcounter_node._errors import StorageError
from dcounter_node._membership import MemberState
from dcounter_node._pruning import Added, PruneRecord, Tombstones, pause_reason, plan
from dcounter_node._pruning_named import NamedSpeakers, with_named_part
from dcounter_node._pruning_wire import (
    MAX_RECORDS_PER_MESSAGE,
    PruningDecodeError,
    PruningKind,
    decode_pruning,
    encode_have,
    encode_named_ack,
    encode_named_records,
    encode_records,
)
from dcounter_node._ratelimit import RateLimitedLog
from dcounter_node._ticker import Ticker

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from prometheus_client.core import Metric

    from dcounter_node._bequest_service import BequestService
    from dcounter_node._membership_service import MembershipService
    from dcounter_node._node import Node

__all__ = ["JOURNAL_FILENAME", "PruningCollector", "PruningService", "load_journal", "write_json"]

logger = logging.getLogger("dcounter_node.pruning")

JOURNAL_FILENAME: Final = "pruning.json"
#: Sends in flight at most; beyond it pruning messages are dropped (anti-entropy resends).
_MAX_IN_FLIGHT: Final = 64


def load_journal(path: Path) -> Tombstones:
    """The records kept in ``path`` (none if it does not exist); StorageError if unusable."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Tombstones()
    except OSError as exc:
        raise StorageError(f"{path}: cannot read the pruning records: {exc}") from None
    try:
        data = json.loads(text)
        records = [_journal_record(*item) for item in data["records"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise StorageError(f"{path}: the pruning records are corrupt: {exc!r}") from None
    tombstones = Tombstones()
    tombstones.add_all(records)
    return tombstones


def _write_journal(path: Path, records: list[PruneRecord]) -> None:
    """Replace ``path`` with ``records``, durably (a crash leaves the old or the new file)."""
    items: list[list[object]] = []
    for r in records:
        item: list[object] = [
            r.survivor,
            r.created,
            [[v, *c] for v, c in sorted(r.victims.items())],
        ]
        if r.named is not None:
            # A fourth item: an older version refuses the file (it would count the named
            # victims' stored entries and their survivor's both) instead of reading it.
            item.append(
                {name: [[v, *c] for v, c in sorted(a.items())] for name, a in r.named.items()}
            )
        items.append(item)
    write_json(path, {"version": 1, "records": items})


def _journal_record(
    survivor: str, created: float, victims: list[list[Any]], named: Any = None
) -> PruneRecord:
    part = (
        None
        if named is None
        else {str(k): {v: (int(p), int(n)) for v, p, n in a} for k, a in named.items()}
    )
    amounts = {v: (int(p), int(n)) for v, p, n in victims}
    return PruneRecord(str(survivor), amounts, float(created), part)


def write_json(path: Path, data: object) -> None:
    """Replace ``path`` with ``data`` as JSON, durably (a crash leaves the old or the new)."""
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("w", encoding="utf-8") as file:
        json.dump(data, file)
        file.flush()
        os.fsync(file.fileno())
    temporary.replace(path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class PruningService:
    """Pruning for one started node whose membership service runs (``start`` after both).

    ``prune_after`` None: this node never prunes, but still learns and applies records.
    """

    def __init__(
        self,
        node: Node,
        members: MembershipService,
        tombstones: Tombstones,
        *,
        prune_after: float | None,
        interval: float,
        journal: Path | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._node = node
        self._members = members
        self._tombstones = tombstones
        self._prune_after = prune_after
        self._interval = interval
        self._journal = journal
        self._rng = rng if rng is not None else random.Random()
        self._started = 0.0
        self._capable: set[str] = set()
        # Members that apply records' named parts (an answer takes a round trip or two).
        self._speakers = NamedSpeakers(patience=2 * interval)
        self._paused: str | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._ticker: Ticker | None = None
        self._log = RateLimitedLog(logger)
        self.pruned_entries = 0
        self.records_made = 0
        self.invalid = 0
        self.refused = 0
        #: Bequests (pruning members that left), once a BequestService is attached.
        self.bequests: BequestService | None = None
        node.pruning_handler = self._on_frame

    @property
    def tombstones(self) -> Tombstones:
        return self._tombstones

    @property
    def node(self) -> Node:
        return self._node

    @property
    def interval(self) -> float:
        return self._interval

    @property
    def members(self) -> MembershipService:
        return self._members

    @property
    def prune_after(self) -> float | None:
        return self._prune_after

    @property
    def capable(self) -> frozenset[str]:
        """Members that sent this node a pruning message (so they speak pruning)."""
        return frozenset(self._capable)

    @property
    def named_capable(self) -> frozenset[str]:
        """Members that answered they apply records' named parts (still alive)."""
        return self._speakers.speakers

    @property
    def paused(self) -> str | None:
        """Why this node does not prune now (None while it may, or never prunes)."""
        return self._paused

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._started = loop.time()
        # On the loop's timer heap, not a sleeping task: one loop pass per round, not two.
        self._ticker = Ticker(
            loop, self._interval, self._tick, first_delay=self._interval, what="pruning: a round"
        )

    def stop_rounds(self) -> None:
        """No more rounds (no collapse, no anti-entropy); messages are still handled."""
        if self._ticker is not None:
            self._ticker.stop()
            self._ticker = None

    async def close(self) -> None:
        self._node.pruning_handler = None
        self.stop_rounds()
        if self.bequests is not None:
            await self.bequests.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- internals ------------------------------------------------------------------------

    def alive(self) -> dict[str, bool]:
        """Other members believed alive or suspect, each with whether it is suspect."""
        membership = self._members.membership
        if membership is None:
            return {}
        return {
            m.address: m.state is MemberState.SUSPECT
            for m in membership.members()
            if m.address != self._node.address
            and m.state in (MemberState.ALIVE, MemberState.SUSPECT)
        }

    def pause_now(self) -> str | None:
        """Why this node must not prune (or take or give a bequest) now; None: it may."""
        alive = self.alive()
        return pause_reason(
            peers=self._node.peers.peers(),
            members=alive,
            capable=self._capable,
            suspects=[a for a, suspect in alive.items() if suspect],
        )

    def _tick(self) -> None:
        alive = self.alive()
        self._speakers.forget_absent(alive)
        now = asyncio.get_running_loop().time()
        for address in sorted(self._capable.intersection(alive)):
            if self._speakers.heard(address, now):  # back after it was forgotten: ask again
                self.send(address, encode_named_records([]))
        if alive:
            target = self._rng.choice(sorted(alive))
            self.send(target, encode_have(self._tombstones.survivors()))
        if self._prune_after is None or not self._node.running:
            return
        bequests = self.bequests
        if bequests is not None:
            bequests.watch()
            if self.pause_now() is None:
                bequests.offer()
        if asyncio.get_running_loop().time() - self._started < self._prune_after:
            return
        reason = self.pause_now()
        if reason != self._paused:
            if reason is None:
                logger.info("pruning: resumed")
            else:
                logger.info("pruning: paused: %s", reason)
            self._paused = reason
        if reason is None:
            self._prune(alive)

    def prune_now(self) -> None:
        """Collapse now if this node may (pruning on, running, not paused)."""
        if self._prune_after is None or not self._node.running or self._ticker is None:
            return
        if self.pause_now() is None:
            self._prune(self.alive())

    def _prune(self, alive: dict[str, bool]) -> None:
        node = self._node
        bequests = self.bequests
        record = plan(
            node.address,
            node.replica_id,
            node.state(),
            self._tombstones,
            time.time(),
            bequests=None if bequests is None else bequests.due(self._prune_after or 0.0),
            keep=() if bequests is None else bequests.kept(),
        )
        if record is None or (bequests is not None and not bequests.may_collapse(record)):
            return
        speak = self._speakers.all_speak(alive, asyncio.get_running_loop().time())
        if speak is None:
            return  # a member may yet show it applies named parts: next round
        if speak:
            # Every member applies named parts: the named counters' entries go too. A
            # member that could not would count the victims and the raised survivor both.
            record = with_named_part(record, node.counters.snapshot())
        if not self._persist([*self._tombstones.records(), record]):
            return
        added = self._tombstones.add(record)
        if added is not Added.NEW:  # pragma: no cover - plan() only makes addable records
            logger.error("pruning: own record refused: %s", added.value)
            return
        value = node.value
        self._apply()
        self.records_made += 1
        logger.info(
            "pruned %d replica entries into %s (value %d unchanged)%s",
            len(record.victims),
            record.survivor,
            value,
            "" if record.named is None else f", and {len(record.named)} named counters' too",
        )
        if node.value != value:  # pragma: no cover - the safety argument says it cannot
            logger.error("pruning changed the value from %d to %d", value, node.value)
        if bequests is not None:
            bequests.collapsed(record)
        for address in alive:
            self.send(address, *self.records_payloads(address, [record]))

    def _apply(self) -> int:
        """Apply the records to the node; members hear of a new replica id of its own."""
        removed = self._node.apply_tombstones()
        self.pruned_entries += removed
        membership = self._members.membership
        if membership is not None:
            membership.set_replica(self._node.replica_id)
        return removed

    def _persist(self, records: list[PruneRecord]) -> bool:
        if self._journal is None:
            return True
        try:
            _write_journal(self._journal, records)
        except OSError as exc:
            self._log.warning(
                "journal", "pruning: cannot write %s, records not applied: %s", self._journal, exc
            )
            return False
        return True

    async def _on_frame(self, sender: str, payload: bytes) -> None:
        try:
            message = decode_pruning(payload)
        except PruningDecodeError as exc:
            self.invalid += 1
            self._log.warning("decode", "pruning: dropping a message from %s: %s", sender, exc)
            return
        first = sender not in self._capable
        self._capable.add(sender)
        if message.kind in (PruningKind.NAMED_RECORDS, PruningKind.NAMED_ACK):
            self._speakers.answered(sender)
            if message.kind is PruningKind.NAMED_RECORDS and not message.records:
                self.send(sender, encode_named_ack())  # the question: answered always
        if self._speakers.heard(sender, asyncio.get_running_loop().time()):
            # Whether it applies named parts: a node that does answers (an older one
            # counts it as an invalid message, once per contact).
            self.send(sender, encode_named_records([]))
        if message.kind is PruningKind.HAVE:
            self._on_have(sender, message.survivors, reply=first)
        elif message.kind in (PruningKind.RECORDS, PruningKind.NAMED_RECORDS):
            self._on_records(sender, list(message.records))
        elif self.bequests is not None:
            self.bequests.on_message(sender, message)

    def _on_have(self, sender: str, theirs: tuple[str, ...], *, reply: bool) -> None:
        known = set(theirs)
        lacking = [r for r in self._tombstones.records() if r.survivor not in known]
        if lacking:
            self.send(sender, *self.records_payloads(sender, lacking))
        if reply or any(s not in self._tombstones for s in known):
            # It has records we lack (it sends them on our `have`), or has not heard us yet.
            self.send(sender, encode_have(self._tombstones.survivors()))

    def _on_records(self, sender: str, records: list[PruneRecord]) -> None:
        fresh = [r for r in records if r.survivor not in self._tombstones]
        if not fresh:
            return
        trial = Tombstones(self._tombstones.records())
        outcomes = trial.add_all(fresh)
        new = [r for r, added in outcomes if added is Added.NEW]
        for record, added in outcomes:
            if added is not Added.NEW:
                self.refused += 1
                self._log.warning(
                    f"refused:{sender}",
                    "pruning: not applying the record of %s from %s: %s",
                    record.survivor,
                    sender,
                    added.value,
                )
        if not new or not self._persist(trial.records()):
            return
        self._tombstones.add_all(new)
        removed = self._apply()
        logger.info(
            "pruning: applied %d record(s) from %s (%s), removing %d replica entries",
            len(new),
            sender,
            ", ".join(r.survivor for r in new),
            removed,
        )
        if self.bequests is not None:
            for record in new:
                self.bequests.collapsed(record)

    def records_payloads(self, address: str, records: list[PruneRecord]) -> list[bytes]:
        """The messages carrying ``records`` to ``address``: with their named parts (one a
        message) if it applies them, else without (an older node reads those only)."""
        if address in self._speakers.speakers:
            return [encode_named_records([record]) for record in records]
        step = MAX_RECORDS_PER_MESSAGE
        return [encode_records(records[i : i + step]) for i in range(0, len(records), step)]

    def send(self, address: str, *payloads: bytes) -> None:
        """Send pruning messages in the background, in order (dropped beyond the bound)."""
        if len(self._tasks) >= _MAX_IN_FLIGHT:
            return
        task = asyncio.ensure_future(self._send_in_order(address, payloads))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_in_order(self, address: str, payloads: tuple[bytes, ...]) -> None:
        for payload in payloads:
            await self.send_now(address, payload)

    async def send_now(self, address: str, payload: bytes) -> None:
        await self._members.send_payload(address, payload)


class PruningCollector(Collector):
    """The pruning counters for /metrics."""

    def __init__(self, service: PruningService) -> None:
        self._service = service

    def collect(self) -> Iterator[Metric]:
        service = self._service
        yield CounterMetricFamily(
            "dcounter_pruned_entries",
            "Replica entries this node removed from its state by applying pruning records.",
            value=service.pruned_entries,
        )
        yield CounterMetricFamily(
            "dcounter_pruning_records_made",
            "Collapses this node made (records it created).",
            value=service.records_made,
        )
        yield GaugeMetricFamily(
            "dcounter_pruning_records",
            "Pruning records (tombstones) this node holds.",
            value=len(service.tombstones),
        )
        yield GaugeMetricFamily(
            "dcounter_pruning_paused",
            "1 while a non-member peer, an unconfirmed member or a suspect holds pruning back.",
            value=0 if service.paused is None else 1,
        )
        yield GaugeMetricFamily(
            "dcounter_pruning_named_capable_members",
            "Members that have shown this node they apply records' named parts.",
            value=len(service.named_capable),
        )
        yield GaugeMetricFamily(
            "dcounter_pruning_capable_members",
            "Members that have shown this node they speak pruning (sent a pruning message).",
            value=len(service.capable),
        )
        yield CounterMetricFamily(
            "dcounter_pruning_invalid_messages",
            "Pruning messages dropped as malformed.",
            value=service.invalid,
        )
        yield CounterMetricFamily(
            "dcounter_pruning_refused_records",
            "Pruning records received and not applied (conflicting, waiting, or too many).",
            value=service.refused,
        )
        if service.bequests is not None:
            yield from _bequest_metrics(service.bequests)


def _bequest_metrics(bequests: BequestService) -> Iterator[Metric]:
    """The bequests' counters for /metrics (final ones, then standing ones)."""
    yield GaugeMetricFamily(
        "dcounter_bequests_held",
        "Final bequests (ids of members that left) this node holds as their heir.",
        value=bequests.held,
    )
    for name, text, value in (
        ("accepted", "Bequests this node accepted as heir.", bequests.accepted),
        ("pruned", "Held bequests this node's records pruned.", bequests.pruned),
        ("revoked", "Held bequests their owner revoked on its return.", bequests.revoked),
        ("given", "Bequests of this node's own id an heir accepted.", bequests.given),
        (
            "standing_accepted",
            "Standing bequests (ids of running members) this node accepted as heir.",
            bequests.standing_accepted,
        ),
        (
            "standing_pruned",
            "Standing bequests this node's records pruned (members gone for good).",
            bequests.standing_pruned,
        ),
        (
            "standing_given",
            "Standing bequests of this node's own id an heir accepted.",
            bequests.standing_given,
        ),
        (
            "standing_released",
            "Standing bequests this node released when it left (their owners name another).",
            bequests.standing_released,
        ),
        (
            "own_revokes",
            "Standing bequests of this node's id revoked before its own collapse.",
            bequests.own_revokes,
        ),
    ):
        yield CounterMetricFamily(f"dcounter_bequests_{name}", text, value=value)
    yield GaugeMetricFamily(
        "dcounter_bequests_standing_held",
        "Standing bequests (ids of running members) this node holds as their heir.",
        value=bequests.standing_held,
    )

"""Pruning against a model of a cluster: random writes, lossy gossip, restarts and prunes.

Each process is what a node keeps (its id, its state, its records) and does what the node
does with them (merge pushes through :meth:`Tombstones.admit`, refusing counts for its own
id above its own; apply records with :meth:`Tombstones.adopt`). Hypothesis picks the
schedule: which message gets through (the others are lost, which is also how partitions
look), clean and unclean restarts, a new data directory, an old data directory resumed (a
pruned id coming back), and prunes, each after the pruner caught up with every count and
record held anywhere (assumption A of the README: what --prune-after buys). At every step no
process counts anything twice; once gossip has had its way, every process holds the exact
total with fewer entries than without pruning.

Each process also holds named counters (a map, merged through the records' named parts
with :func:`admit_map` and :func:`adopt_map`); a prune makes its record with a named part,
or without one (a member could not learn it), and every name ends exact as well.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from dcounter_crdt import CounterMapState, CounterState
from dcounter_node._pruning import PruneRecord, Tombstones, plan
from dcounter_node._pruning_named import admit_map, adopt_map, with_named_part

ADDRESSES = ["10.0.0.1:7946", "10.0.0.2:7946", "10.0.0.3:7946"]


@dataclass
class Process:
    address: str
    own: str
    state: CounterState
    tombstones: Tombstones
    named: CounterMapState = field(default_factory=CounterMapState.empty)

    def own_counts(self) -> tuple[int, int]:
        return self.state.increments.get(self.own, 0), self.state.decrements.get(self.own, 0)

    def write(self, amount: int) -> None:
        inc, dec = self.own_counts()
        if amount > 0:
            inc += amount
        else:
            dec -= amount
        self.state = self.state.merged(
            CounterState.from_maps(
                {self.own: inc} if inc else None, {self.own: dec} if dec else None
            )
        )

    def merge(self, theirs: CounterState) -> None:
        # The node refuses counts for its own id above its own (a forged push) ...
        inc = {i: c for i, c in theirs.increments.items() if i != self.own}
        dec = {i: c for i, c in theirs.decrements.items() if i != self.own}
        # ... and whatever its records refuse.
        gains = self.tombstones.admit(CounterState.from_maps(inc, dec))
        self.state = self.state.merged(gains)

    def write_named(self, name: str, amount: int) -> None:
        counter = self.named.get(name)
        inc, dec = counter.increments.get(self.own, 0), counter.decrements.get(self.own, 0)
        if amount > 0:
            inc += amount
        else:
            dec -= amount
        mine = CounterState.from_maps({self.own: inc} if inc else None, {self.own: dec})
        self.named = self.named.merged(CounterMapState({name: mine}))

    def merge_named(self, theirs: CounterMapState) -> None:
        # As for the default counter: no counts for its own id, nothing the records refuse.
        clean = CounterMapState(
            {
                name: CounterState.from_maps(
                    {i: c for i, c in counter.increments.items() if i != self.own},
                    {i: c for i, c in counter.decrements.items() if i != self.own},
                )
                for name, counter in theirs.counters.items()
            }
        )
        self.named = self.named.merged(admit_map(self.tombstones, clean))

    def learn(self, records: list[PruneRecord]) -> None:
        self.tombstones.add_all(records)
        own = self.own
        self.own, self.state = self.tombstones.adopt(own, self.state)
        self.named = adopt_map(self.tombstones, own, self.named)


@dataclass
class Snapshot:
    """A data directory left by a clean stop: resumable once."""

    own: str
    state: CounterState
    records: list[PruneRecord]
    named: CounterMapState


@dataclass
class World:
    processes: list[Process] = field(default_factory=list)
    directories: dict[str, list[Snapshot]] = field(default_factory=dict)
    increments: int = 0
    decrements: int = 0
    ids_made: int = 0
    named: dict[str, list[int]] = field(default_factory=dict)  # name: [increments, decrements]
    named_prunes_only: bool = True

    def new_id(self, address: str) -> str:
        self.ids_made += 1
        return f"{address}#{self.ids_made:08x}"

    def write(self, i: int, amount: int) -> None:
        self.processes[i].write(amount)
        if amount > 0:
            self.increments += amount
        else:
            self.decrements -= amount

    def write_named(self, i: int, name: str, amount: int) -> None:
        self.processes[i].write_named(name, amount)
        totals = self.named.setdefault(name, [0, 0])
        totals[0 if amount > 0 else 1] += abs(amount)

    def push(self, i: int, j: int) -> None:
        if i != j:
            self.processes[j].merge(self.processes[i].state)
            self.processes[j].merge_named(self.processes[i].named)

    def send_records(self, i: int, j: int) -> None:
        if i != j:
            self.processes[j].learn(self.processes[i].tombstones.records())

    def restart(self, i: int, mode: str) -> None:
        old = self.processes[i]
        # A closing node pushes its state once (its last delta); one peer gets it.
        self.push(i, (i + 1) % len(self.processes))
        records = old.tombstones.records()
        if mode == "clean":
            self.directories.setdefault(old.address, []).append(
                Snapshot(old.own, old.state, records, old.named)
            )
            snapshot = self.directories[old.address].pop()
            new = self.resume(old.address, snapshot)
        elif mode == "unclean":
            new = Process(
                old.address, self.new_id(old.address), old.state, Tombstones(records), old.named
            )
        elif mode == "new-directory":
            self.directories.setdefault(old.address, []).append(
                Snapshot(old.own, old.state, records, old.named)
            )
            new = Process(old.address, self.new_id(old.address), CounterState.empty(), Tombstones())
        else:  # an old data directory, which may hold an id pruned meanwhile
            stored = self.directories.get(old.address)
            if not stored:
                return
            self.directories[old.address].append(Snapshot(old.own, old.state, records, old.named))
            new = self.resume(old.address, stored.pop(0))
        self.processes[i] = new

    def resume(self, address: str, snapshot: Snapshot) -> Process:
        process = Process(
            address, snapshot.own, snapshot.state, Tombstones(snapshot.records), snapshot.named
        )
        process.learn([])
        return process

    def catch_up(self, i: int) -> None:
        """What --prune-after seconds of gossip bring the pruner (assumption A): every
        record and every count held anywhere, running or in a stopped data directory."""
        pruner = self.processes[i]
        held = [
            (p.tombstones.records(), p.state, p.named) for p in self.processes if p is not pruner
        ]
        held += [
            (s.records, s.state, s.named) for stored in self.directories.values() for s in stored
        ]
        for records, _, _ in held:
            pruner.learn(records)
        for _, state, named in held:
            pruner.merge(state)
            pruner.merge_named(named)

    def prune(self, i: int, *, named: bool = True) -> PruneRecord | None:
        self.catch_up(i)
        pruner = self.processes[i]
        record = plan(pruner.address, pruner.own, pruner.state, pruner.tombstones, created=0.0)
        if record is not None:
            if named:
                record = with_named_part(record, pruner.named)
            else:
                self.named_prunes_only = False
            value = pruner.state.value
            values = named_values(pruner.named)
            pruner.learn([record])
            assert pruner.state.value == value
            assert named_values(pruner.named) == values
            for process in self.processes:  # sent at once to every member
                process.learn([record])
        return record

    def check_nothing_counted_twice(self) -> None:
        for process in self.processes:
            assert sum(process.state.increments.values()) <= self.increments
            assert sum(process.state.decrements.values()) <= self.decrements
            for name, counter in process.named.counters.items():
                assert sum(counter.increments.values()) <= self.named[name][0]
                assert sum(counter.decrements.values()) <= self.named[name][1]

    def expected_named(self) -> dict[str, int]:
        return {name: inc - dec for name, (inc, dec) in self.named.items() if inc or dec}

    def settle(self) -> None:
        """Gossip without loss until nothing changes: records first, then states."""
        n = len(self.processes)
        for _ in range(2 * n + 2):
            for i in range(n):
                for j in range(n):
                    self.send_records(i, j)
            for i in range(n):
                for j in range(n):
                    self.push(i, j)


def named_values(named: CounterMapState) -> dict[str, int]:
    return {name: counter.value for name, counter in named.counters.items()}


steps = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.integers(0, 2), st.sampled_from([-3, -1, 1, 2, 5])),
        st.tuples(st.just("push"), st.integers(0, 2), st.integers(0, 2)),
        st.tuples(st.just("records"), st.integers(0, 2), st.integers(0, 2)),
        st.tuples(st.just("prune"), st.integers(0, 2), st.sampled_from([0, 1])),
        st.tuples(
            st.just("named"),
            st.integers(0, 2),
            st.tuples(st.sampled_from(["x", "y"]), st.sampled_from([-2, 1, 3])),
        ),
        st.tuples(
            st.just("restart"),
            st.integers(0, 2),
            st.sampled_from(["clean", "unclean", "new-directory", "old-directory"]),
        ),
        st.tuples(st.just("prune"), st.integers(0, 2), st.just(0)),
    ),
    min_size=20,
    max_size=80,
)


@settings(settings.get_profile("model"))
@given(steps)
@example(
    # A pruned id comes back: 10.0.0.1's first data directory is pruned by the process that
    # ran with a new one, then resumed, counts 5 more under its old id, then learns it.
    [
        ("write", 0, 2),
        ("restart", 0, "new-directory"),
        ("prune", 0, 0),
        ("restart", 0, "old-directory"),
        ("write", 0, 5),
        ("push", 0, 1),
        ("records", 1, 0),
    ]
)
def test_pruning_never_changes_the_value_and_drops_entries(
    schedule: list[tuple[str, int, object]],
) -> None:
    world = World()
    world.processes = [
        Process(a, world.new_id(a), CounterState.empty(), Tombstones()) for a in ADDRESSES
    ]
    pruned = 0
    for op, i, arg in schedule:
        if op == "write":
            assert isinstance(arg, int)
            world.write(i, arg)
        elif op == "push":
            assert isinstance(arg, int)
            world.push(i, arg)
        elif op == "records":
            assert isinstance(arg, int)
            world.send_records(i, arg)
        elif op == "restart":
            assert isinstance(arg, str)
            world.restart(i, arg)
        elif op == "named":
            assert isinstance(arg, tuple)
            world.write_named(i, *arg)
        elif world.prune(i, named=arg == 0) is not None:
            pruned += 1
        world.check_nothing_counted_twice()
    event(f"prunes: {min(pruned, 3)}")
    world.settle()
    expected = world.increments - world.decrements
    first = world.processes[0].state
    for process in world.processes:
        assert process.state.value == expected
        assert process.state == first
        assert named_values(process.named) == world.expected_named()
        assert process.named == world.processes[0].named
    # After a last prune at every address, each holds at most its own id and one survivor.
    for i in range(len(world.processes)):
        world.prune(i)
    world.settle()
    for process in world.processes:
        assert process.state.value == expected
        assert named_values(process.named) == world.expected_named()
        for address in ADDRESSES:
            assert len([x for x in process.state.replicas() if x.startswith(address)]) <= 2
            if not world.named_prunes_only:
                continue  # a record without a named part left its victims' named entries
            for counter in process.named.counters.values():
                assert len([x for x in counter.replicas() if x.startswith(address)]) <= 2

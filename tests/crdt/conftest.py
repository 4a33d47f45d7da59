"""Shared Hypothesis setup for the CRDT tests: a deterministic profile and state strategies.

Test modules cannot import this file by name (every test area has a ``conftest``), so
what they share goes through Hypothesis's own registries instead:

- the settings profile ``"crdt"`` (``settings.get_profile("crdt")``): derandomized, so a
  run is reproducible in CI, with no example database written into the tree;
- the type strategies registered below, drawn with ``st.from_type(...)``
  (``CounterState`` and ``CounterMapState``).
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from dcounter_crdt import MAX_COUNT, CounterMapState, CounterState

settings.register_profile(
    "crdt",
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=50,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)

#: A handful of well-known ids (so that states overlap and merges have work to do) and,
#: less often, arbitrary non-empty ones.
replica_ids = st.one_of(st.sampled_from(["a", "b", "c", "d", "e"]), st.text(min_size=1))

#: Counts are mostly small (so that maxima collide) but the uint64 edges are included.
counts = st.one_of(
    st.integers(min_value=0, max_value=10),
    st.integers(min_value=0, max_value=MAX_COUNT),
    st.sampled_from([MAX_COUNT - 1, MAX_COUNT]),
)

_count_maps = st.dictionaries(replica_ids, counts, max_size=6)

st.register_type_strategy(CounterState, st.builds(CounterState.from_maps, _count_maps, _count_maps))

#: Counter names: a few shared ones (so that maps overlap), the default, and arbitrary.
counter_names = st.one_of(st.sampled_from(["default", "x", "y", "z"]), st.text(min_size=1))

st.register_type_strategy(
    CounterMapState,
    st.builds(
        CounterMapState,
        st.dictionaries(counter_names, st.from_type(CounterState), max_size=4),
    ),
)

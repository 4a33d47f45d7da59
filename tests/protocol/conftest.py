"""Shared setup for the protocol tests: Hypothesis profile and strategies, golden vectors.

Test modules cannot import this file by name (every test area has a ``conftest``), so what
they share goes through registries instead:

- the Hypothesis settings profile ``"protocol"`` (``settings.get_profile("protocol")``):
  derandomized, so runs are reproducible, and no example database in the tree;
- type strategies for the message classes and :class:`Frame`, drawn with ``st.from_type(...)``;
- fixtures: ``golden_message`` (golden JSON message -> :class:`Message`), one fixture per
  golden vector group (``decode_vector``, ``encode_vector``, ...) parametrized with the
  vectors' names at collection time, and ``zstd_bomb``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import zstandard
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from dcounter_crdt import MAX_COUNT
from dcounter_protocol import DigestAck, DigestPull, Frame, Message, MessageType, Push

# -- Hypothesis ---------------------------------------------------------------------------

settings.register_profile(
    "protocol",
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=80,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)

#: Mostly address-like ids, sometimes any non-empty text: multi-byte UTF-8 and lengths
#: past the fixstr limit.
replica_ids = st.one_of(
    st.integers(min_value=1, max_value=65535).map(lambda port: f"10.0.0.1:{port}"),
    st.text(min_size=1, max_size=40),
)
counts = st.one_of(
    st.integers(min_value=0, max_value=1000),
    st.integers(min_value=0, max_value=MAX_COUNT),
    st.sampled_from([0, 2**32, MAX_COUNT]),
)
digests = st.one_of(st.just(0), st.integers(min_value=0, max_value=MAX_COUNT))


def _cluster_state(size: int, seed: int) -> dict[str, int]:
    return {f"10.0.{i // 250}.{i % 250}:7946": (seed + i * 7919) % 2**64 for i in range(size)}


#: Maps of a whole cluster (drawn cheaply from two integers): bodies past the compression
#: threshold and map16 headers.
_cluster_maps = st.builds(
    _cluster_state,
    st.integers(min_value=20, max_value=300),
    st.integers(min_value=0, max_value=MAX_COUNT),
)
count_maps = st.one_of(
    st.none(),
    st.dictionaries(replica_ids, counts, max_size=8),
    _cluster_maps,
)

_pushes = st.builds(Push, replica_ids, count_maps, count_maps, digests).filter(
    lambda msg: bool(msg.increments or msg.decrements)
)
_pulls = st.builds(DigestPull, replica_ids, digests)
_acks = st.builds(DigestAck, replica_ids, digests)
#: The reference also encodes maps in pulls and acks; they must survive a round trip too.
_pulls_with_maps = st.builds(DigestPull, replica_ids, digests, count_maps, count_maps)
_acks_with_maps = st.builds(DigestAck, replica_ids, digests, count_maps, count_maps)
# ``st.from_type(Message)`` draws from the union's members, each registered here.
st.register_type_strategy(Push, _pushes)
st.register_type_strategy(DigestPull, st.one_of(_pulls, _pulls_with_maps))
st.register_type_strategy(DigestAck, st.one_of(_acks, _acks_with_maps))

#: Addresses of every UTF-8 length 1..255 (multi-byte characters included).
addresses = st.text(min_size=1, max_size=255).filter(
    lambda text: 1 <= len(text.encode("utf-8")) <= 255
)
st.register_type_strategy(Frame, st.builds(Frame, addresses, st.binary(min_size=1, max_size=2048)))


# -- golden vectors -------------------------------------------------------------------------

# The file `golden` in tests/conftest.py reads; parametrizing by vector name happens at
# collection time, before fixtures exist, so it is read here too.
_GOLDEN_FILE = Path(__file__).resolve().parent / "golden" / "seed-wire-vectors.json"

_Select = Callable[[dict[str, Any]], bool]


def _every(vector: dict[str, Any]) -> bool:
    return True


#: fixture name -> (golden group, which of its vectors) it is parametrized with.
_VECTOR_FIXTURES: dict[str, tuple[str, _Select]] = {
    "encode_vector": ("encode", _every),
    "encode_reject_vector": ("encode_rejects", _every),
    "digest_vector": ("digest", _every),
    "frame_vector": ("tcp_frames", _every),
    "decode_vector": ("decode", _every),
    "python_input_vector": ("decode_python_inputs", _every),
    "exchange_step": ("node_exchange", _every),
    "exchange_reply_step": ("node_exchange", lambda step: step["reply"] is not None),
}


def _vectors(data: dict[str, Any], group: str) -> list[dict[str, Any]]:
    vectors = data[group]["steps"] if group == "node_exchange" else data[group]
    return cast("list[dict[str, Any]]", vectors)


def _name(vector: dict[str, Any]) -> str:
    return cast("str", vector.get("name", vector.get("step")))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    for fixture, (group, select) in _VECTOR_FIXTURES.items():
        if fixture in metafunc.fixturenames:
            data = json.loads(_GOLDEN_FILE.read_text(encoding="utf-8"))
            names = [_name(v) for v in _vectors(data, group) if select(v)]
            metafunc.parametrize(fixture, names, ids=names, indirect=True)


def _vector(golden: dict[str, Any], group: str, name: str) -> dict[str, Any]:
    return next(v for v in _vectors(golden, group) if _name(v) == name)


@pytest.fixture
def encode_vector(request: pytest.FixtureRequest, golden: dict[str, Any]) -> dict[str, Any]:
    """One vector of the golden `encode` group."""
    return _vector(golden, "encode", request.param)


@pytest.fixture
def encode_reject_vector(request: pytest.FixtureRequest, golden: dict[str, Any]) -> dict[str, Any]:
    """One vector of the golden `encode_rejects` group."""
    return _vector(golden, "encode_rejects", request.param)


@pytest.fixture
def digest_vector(request: pytest.FixtureRequest, golden: dict[str, Any]) -> dict[str, Any]:
    """One vector of the golden `digest` group."""
    return _vector(golden, "digest", request.param)


@pytest.fixture
def frame_vector(request: pytest.FixtureRequest, golden: dict[str, Any]) -> dict[str, Any]:
    """One vector of the golden `tcp_frames` group."""
    return _vector(golden, "tcp_frames", request.param)


@pytest.fixture
def decode_vector(request: pytest.FixtureRequest, golden: dict[str, Any]) -> dict[str, Any]:
    """One vector of the golden `decode` group."""
    return _vector(golden, "decode", request.param)


@pytest.fixture
def python_input_vector(request: pytest.FixtureRequest, golden: dict[str, Any]) -> dict[str, Any]:
    """One vector of the golden `decode_python_inputs` group."""
    return _vector(golden, "decode_python_inputs", request.param)


@pytest.fixture
def exchange_step(request: pytest.FixtureRequest, golden: dict[str, Any]) -> dict[str, Any]:
    """One step of the golden `node_exchange` conversation."""
    return _vector(golden, "node_exchange", request.param)


@pytest.fixture
def exchange_reply_step(request: pytest.FixtureRequest, golden: dict[str, Any]) -> dict[str, Any]:
    """One step of the golden `node_exchange` conversation to which the node replied."""
    return _vector(golden, "node_exchange", request.param)


def message_from_golden(obj: Mapping[str, Any]) -> Message:
    """A golden JSON message (``digest`` as ``"0x%016x"``; null maps are nil) as a Message."""
    digest = obj["digest"]
    kind = obj["type"]
    fields = {
        "node_id": obj["node_id"],
        "increments": obj["inc"],
        "decrements": obj["dec"],
        "digest": int(digest, 16) if isinstance(digest, str) else digest,
    }
    if kind not in set(MessageType):
        # encode_rejects holds invalid types (0, 4) on purpose: no message class has them.
        return cast("Message", SimpleNamespace(type=kind, **fields))
    cls: type[Message] = {1: Push, 2: DigestPull, 3: DigestAck}[kind]
    return cls(**fields)


@pytest.fixture(scope="session")
def golden_message() -> Callable[[Mapping[str, Any]], Message]:
    """Converts a golden JSON message into a :class:`Message`."""
    return message_from_golden


# -- hostile inputs -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def zstd_bomb() -> bytes:
    """1 GiB of zeros as one streaming zstd frame (no content size) of about 32 KiB."""
    zeros = bytes(1 << 20)
    compressor = zstandard.ZstdCompressor(level=1).compressobj()
    parts = [compressor.compress(zeros) for _ in range(1024)]
    parts.append(compressor.flush())
    return b"".join(parts)

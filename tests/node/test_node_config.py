"""NodeConfig: the seed's knobs, their defaults and their validation."""

from __future__ import annotations

import dataclasses
import math

import pytest

from dcounter_node import ConfigError, NodeConfig


def test_defaults_follow_the_seed() -> None:
    config = NodeConfig()
    assert config.sync_interval == 1.0
    assert config.max_sync_peers == 3
    assert config.delta_gossip is True
    assert config.replica_id is None


def test_full_sync_interval_defaults_to_ten_sync_intervals() -> None:
    assert NodeConfig(sync_interval=0.5).effective_full_sync_interval == 5.0


def test_explicit_full_sync_interval_is_kept() -> None:
    assert NodeConfig(sync_interval=0.5, full_sync_interval=2).effective_full_sync_interval == 2


@pytest.mark.parametrize(("max_sync_peers", "expected"), [(1, 1), (2, 1), (3, 1), (5, 2), (8, 4)])
def test_full_sync_goes_to_half_the_sync_peers_but_at_least_one(
    max_sync_peers: int, expected: int
) -> None:
    assert NodeConfig(max_sync_peers=max_sync_peers).full_sync_peers == expected


def test_config_is_frozen() -> None:
    config = NodeConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.sync_interval = 2.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("sync_interval", 0, "sync_interval must be a positive, finite number"),
        ("sync_interval", -1.0, "sync_interval must be a positive, finite number"),
        ("sync_interval", math.inf, "sync_interval must be a positive, finite number"),
        ("sync_interval", math.nan, "sync_interval must be a positive, finite number"),
        ("sync_interval", "1s", "sync_interval must be a number of seconds"),
        ("sync_interval", True, "sync_interval must be a number of seconds"),
        ("full_sync_interval", 0.0, "full_sync_interval must be a positive"),
        ("max_sync_peers", 0, "max_sync_peers must be at least 1"),
        ("max_sync_peers", 2.5, "max_sync_peers must be an integer"),
        ("delta_gossip", "yes", "delta_gossip must be true or false"),
        ("delta_flush_interval", -0.01, "delta_flush_interval must be a positive"),
        ("delta_fanout", 0, "delta_fanout must be at least 1"),
        ("inbound_queue_size", 0, "inbound_queue_size must be at least 1"),
        ("outbound_queue_size", False, "outbound_queue_size must be an integer"),
        ("replica_id", "", "replica_id must be a non-empty string"),
        ("replica_id", "x" * 256, "replica_id must be at most 255 UTF-8 bytes"),
    ],
)
def test_invalid_setting_raises_config_error_naming_it(
    field: str, value: object, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        NodeConfig(**{field: value})  # type: ignore[arg-type]


def test_config_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="max_sync_peers"):
        NodeConfig(max_sync_peers=-3)


@pytest.mark.parametrize("value", [0, -1, 1.5, True])
def test_max_replicas_must_be_a_positive_integer(value: object) -> None:
    with pytest.raises(ConfigError, match="max_replicas"):
        NodeConfig(max_replicas=value)  # type: ignore[arg-type]

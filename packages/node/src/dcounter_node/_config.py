"""A node's gossip settings, validated once when they are made."""

from __future__ import annotations

import math
from dataclasses import dataclass

from dcounter_crdt import DEFAULT_MAX_KEY_LENGTH, DEFAULT_MAX_KEYS
from dcounter_node._errors import ConfigError

__all__ = ["NodeConfig", "check_count", "check_seconds"]

#: Longest replica id accepted: it travels as a msgpack map key and must stay well under the
#: frame limits of the reference (its own ids are addresses of at most 255 bytes).
_MAX_REPLICA_ID_BYTES = 255


@dataclass(frozen=True)
class NodeConfig:
    """How often and how widely a node gossips (the seed's knobs plus delta gossip).

    Every field is checked in ``__post_init__``; a bad value raises :class:`ConfigError`
    naming the field.
    """

    #: Seconds between digest pulls (the seed's SyncInterval).
    sync_interval: float = 1.0
    #: Seconds between full-state pushes; None means 10 x sync_interval (as in the seed).
    full_sync_interval: float | None = None
    #: Peers pulled per sync round (one while in agreement with a peer, with delta gossip);
    #: full syncs go to max(1, max_sync_peers // 2) peers.
    max_sync_peers: int = 3
    #: Eager push of changed entries (beyond the seed). False gives seed-exact gossip.
    delta_gossip: bool = True
    #: Seconds local updates are batched before their delta is pushed.
    delta_flush_interval: float = 0.01
    #: Peers each delta push goes to.
    delta_fanout: int = 3
    #: Received messages waiting to be processed; more are dropped and counted.
    inbound_queue_size: int = 1024
    #: Sends in flight at once; more are dropped and counted.
    outbound_queue_size: int = 1024
    #: Counter replica id; None means f"{address}#{random token}", new per incarnation.
    #: A fixed id continues as "id#2", "id#3", ... after unclean shutdowns (see
    #: _incarnation). Set it only if it is never reused by a node starting without its
    #: store (peers still holding its counts would swallow the new ones by max-merge).
    replica_id: str | None = None
    #: Most replica entries the state may hold; a push that would pass it is rejected whole.
    max_replicas: int = 10_000
    #: Most counter names the node holds (named counters, see :class:`Counters`); a write
    #: or push that would pass it is refused.
    max_keys: int = DEFAULT_MAX_KEYS
    #: Longest counter name, in UTF-8 bytes.
    max_key_length: int = DEFAULT_MAX_KEY_LENGTH

    def __post_init__(self) -> None:
        check_seconds("sync_interval", self.sync_interval)
        if self.full_sync_interval is not None:
            check_seconds("full_sync_interval", self.full_sync_interval)
        check_count("max_sync_peers", self.max_sync_peers)
        if not isinstance(self.delta_gossip, bool):
            raise ConfigError(f"delta_gossip must be true or false, got {self.delta_gossip!r}")
        check_seconds("delta_flush_interval", self.delta_flush_interval)
        check_count("delta_fanout", self.delta_fanout)
        check_count("inbound_queue_size", self.inbound_queue_size)
        check_count("outbound_queue_size", self.outbound_queue_size)
        check_count("max_replicas", self.max_replicas)
        check_count("max_keys", self.max_keys)
        check_count("max_key_length", self.max_key_length)
        if self.replica_id is not None:
            _check_replica_id(self.replica_id)

    @property
    def effective_full_sync_interval(self) -> float:
        """The full-sync interval in seconds, defaulted to 10 x sync_interval."""
        if self.full_sync_interval is None:
            return 10 * self.sync_interval
        return self.full_sync_interval

    @property
    def full_sync_peers(self) -> int:
        """How many peers a full-state push goes to: max(1, max_sync_peers // 2)."""
        return max(1, self.max_sync_peers // 2)


def check_seconds(name: str, value: object) -> None:
    """Raise ConfigError unless ``value`` is a positive, finite number of seconds."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name} must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be a positive, finite number of seconds, got {value!r}")


def check_count(name: str, value: object) -> None:
    """Raise ConfigError unless ``value`` is an int >= 1 (a bool is not one)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if value < 1:
        raise ConfigError(f"{name} must be at least 1, got {value!r}")


def _check_replica_id(value: object) -> None:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"replica_id must be a non-empty string, got {value!r}")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise ConfigError(f"replica_id must be valid UTF-8, got {value!r}") from None
    if size > _MAX_REPLICA_ID_BYTES:
        raise ConfigError(
            f"replica_id must be at most {_MAX_REPLICA_ID_BYTES} UTF-8 bytes, got {size}"
        )

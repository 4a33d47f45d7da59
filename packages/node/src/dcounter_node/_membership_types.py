"""Membership's vocabulary: member states, the messages and updates gossip carries, what
the state machine returns, and its settings. Pure data; the rules are in
:mod:`dcounter_node._membership`, the bytes in :mod:`dcounter_node._membership_wire`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from dcounter_node._errors import ConfigError

__all__ = [
    "MAX_UPDATES",
    "Member",
    "MemberState",
    "MembershipConfig",
    "MembershipMessage",
    "MessageKind",
    "Outgoing",
    "StateChange",
    "Update",
]


#: Most updates in one message (the wire's bound on what a hostile message can make a node
#: hold); a sync of more members is split.
MAX_UPDATES: Final = 1024


class MemberState(enum.Enum):
    """A member's state, as this node believes it."""

    ALIVE = "alive"
    SUSPECT = "suspect"
    DEAD = "dead"
    LEFT = "left"


class MessageKind(enum.IntEnum):
    """Membership message types (their wire codes)."""

    PING = 1
    ACK = 2
    PING_REQ = 3
    JOIN = 4
    SYNC = 5
    GOSSIP = 6


@dataclass(frozen=True, slots=True)
class Update:
    """One member's state at an incarnation: what gossip carries."""

    address: str
    replica: str
    state: MemberState
    incarnation: int


@dataclass(frozen=True, slots=True)
class MembershipMessage:
    """One membership message: ``sender`` is the sending node's own update (alive, or left)."""

    kind: MessageKind
    sender: Update
    seq: int = 0
    target: str = ""
    updates: tuple[Update, ...] = ()


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message to send to ``address``."""

    address: str
    message: MembershipMessage


@dataclass(slots=True)
class Member:
    """A known member: ``since`` is when (caller's clock) it entered its current state."""

    address: str
    replica: str
    state: MemberState
    incarnation: int
    since: float

    def update(self) -> Update:
        return Update(self.address, self.replica, self.state, self.incarnation)


@dataclass(frozen=True, slots=True)
class StateChange:
    """A member's state changed (``before`` None: newly known)."""

    address: str
    before: MemberState | None
    after: MemberState
    incarnation: int


@dataclass(frozen=True, slots=True)
class MembershipConfig:
    """Timings in seconds; see the module doc for what each one bounds."""

    probe_interval: float = 1.0
    probe_timeout: float = 0.5
    #: A suspicion's least length (in a cluster of up to 10 members; it grows with log10 n).
    suspect_timeout: float = 5.0
    #: An unconfirmed suspicion lasts this many times its least length (Lifeguard).
    suspect_max_factor: float = 6.0
    #: Confirmations by other members that bring a suspicion down to its least length.
    suspect_confirmations: int = 2
    #: Highest health score (Lifeguard): probe interval and timeout stretch up to 1 + this.
    awareness_limit: int = 7
    indirect_checks: int = 3
    retransmit_mult: int = 4
    dead_probe_rounds: int = 10
    max_piggyback: int = 32
    #: Most members known, this node included; updates about more are ignored (counted).
    max_members: int = 1024
    #: Seconds a dead or left member is kept before it is forgotten (None: kept forever).
    forget_after: float | None = 86400.0
    #: Seconds between joins to the seeds while this node knows no live member.
    rejoin_interval: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.probe_timeout <= self.probe_interval:
            raise ConfigError("probe_timeout must be > 0 and at most probe_interval")
        if self.suspect_timeout <= 0:
            raise ConfigError("suspect_timeout must be > 0")
        if self.suspect_max_factor < 1 or self.suspect_confirmations < 0:
            raise ConfigError("suspect_max_factor must be >= 1, suspect_confirmations >= 0")
        if self.awareness_limit < 0:
            raise ConfigError("awareness_limit must be >= 0")
        if self.indirect_checks < 0 or self.retransmit_mult < 1 or self.dead_probe_rounds < 1:
            raise ConfigError("indirect_checks >= 0, retransmit_mult >= 1, dead_probe_rounds >= 1")
        if self.max_members < 2:
            raise ConfigError("max_members must be at least 2 (this node and one other)")
        if self.forget_after is not None and self.forget_after <= 0:
            raise ConfigError("forget_after must be > 0 (or None: never)")
        if self.rejoin_interval <= 0:
            raise ConfigError("rejoin_interval must be > 0")

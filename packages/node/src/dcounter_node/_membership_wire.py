"""The membership messages' bytes, sans-IO (see "Membership" in the node README).

::

    payload = "DCM" version(01) body
    body    = msgpack array [kind, seq, target, sender, updates]
    kind    = 1 ping | 2 ack | 3 ping-req | 4 join | 5 sync | 6 gossip
    sender  = update (the sending node's own: alive, or left in its leave announcement)
    updates = array of update
    update  = [address ("host:port"), replica (str), state (0 alive | 1 suspect | 2 dead | 3 left),
               incarnation (uint64)]

The first byte, ``D`` (0x44), is neither of the seed envelope's flags (0x00, 0x80), so a
payload is told apart from a counter message by its first byte, and a node that does not
know membership rejects it as an invalid envelope rather than misreading it.
"""

from __future__ import annotations

from typing import Any, Final

import msgpack

from dcounter_node._errors import NodeError
from dcounter_node._membership import (
    MAX_UPDATES,
    MembershipMessage,
    MemberState,
    MessageKind,
    Update,
)
from dcounter_protocol import MalformedAddressError, parse_address

__all__ = [
    "MEMBERSHIP_MAGIC",
    "MembershipDecodeError",
    "decode_membership",
    "encode_membership",
    "is_membership",
]

MEMBERSHIP_MAGIC: Final = b"DCM\x01"
MAX_ADDRESS: Final = 255
MAX_REPLICA: Final = 255
_MAX_UINT64: Final = 2**64 - 1
_STATES: Final = (MemberState.ALIVE, MemberState.SUSPECT, MemberState.DEAD, MemberState.LEFT)
_STATE_CODES: Final = {state: code for code, state in enumerate(_STATES)}


class MembershipDecodeError(NodeError):
    """A membership payload that is not what the format allows (remote garbage)."""


def is_membership(payload: bytes) -> bool:
    """Whether ``payload`` claims to be a membership message (by its magic)."""
    return payload[:3] == MEMBERSHIP_MAGIC[:3]


def _update_array(update: Update) -> list[Any]:
    return [update.address, update.replica, _STATE_CODES[update.state], update.incarnation]


def encode_membership(message: MembershipMessage) -> bytes:
    """The payload of ``message``."""
    body = [
        int(message.kind),
        message.seq,
        message.target,
        _update_array(message.sender),
        [_update_array(u) for u in message.updates],
    ]
    return MEMBERSHIP_MAGIC + msgpack.packb(body, use_bin_type=True)


def _text(value: object, what: str, limit: int) -> str:
    if not isinstance(value, str) or not value or len(value.encode()) > limit:
        raise MembershipDecodeError(f"{what} must be a non-empty string of at most {limit} bytes")
    return value


def _address(value: object, what: str) -> str:
    """A dialable "host:port" (members are dialled and become gossip peers)."""
    text = _text(value, what, MAX_ADDRESS)
    try:
        parse_address(text, allow_port_zero=False)
    except MalformedAddressError as exc:
        raise MembershipDecodeError(f"{what}: {exc.reason}") from None
    return text


def _uint(value: object, what: str) -> int:
    if type(value) is not int or not 0 <= value <= _MAX_UINT64:
        raise MembershipDecodeError(f"{what} must be an unsigned 64-bit integer")
    return value


def _update(value: object) -> Update:
    if not isinstance(value, list) or len(value) != 4:
        raise MembershipDecodeError("an update must be an array of 4 items")
    address, replica, state, incarnation = value
    code = _uint(state, "state")
    if code >= len(_STATES):
        raise MembershipDecodeError(f"unknown member state {code}")
    return Update(
        _address(address, "address"),
        _text(replica, "replica", MAX_REPLICA),
        _STATES[code],
        _uint(incarnation, "incarnation"),
    )


def decode_membership(payload: bytes) -> MembershipMessage:
    """The message in ``payload``; :class:`MembershipDecodeError` for anything malformed."""
    if payload[: len(MEMBERSHIP_MAGIC)] != MEMBERSHIP_MAGIC:
        raise MembershipDecodeError("not a membership message of version 1")
    try:
        body = msgpack.unpackb(
            payload[len(MEMBERSHIP_MAGIC) :],
            raw=False,
            strict_map_key=True,
            max_array_len=MAX_UPDATES,
            max_map_len=0,
            max_bin_len=0,
            max_ext_len=0,
        )
    except (ValueError, msgpack.UnpackException) as exc:
        raise MembershipDecodeError(f"body is not msgpack: {exc}") from None
    if not isinstance(body, list) or len(body) != 5:
        raise MembershipDecodeError("body must be an array of 5 items")
    kind_code, seq, target, sender, updates = body
    try:
        kind = MessageKind(_uint(kind_code, "kind"))
    except ValueError:
        raise MembershipDecodeError(f"unknown message kind {kind_code}") from None
    if target != "":
        target = _address(target, "target")
    if not isinstance(updates, list):
        raise MembershipDecodeError("updates must be an array")
    origin = _update(sender)
    if origin.state not in (MemberState.ALIVE, MemberState.LEFT):
        raise MembershipDecodeError("the sender's own update must say alive or left")
    return MembershipMessage(
        kind, origin, _uint(seq, "seq"), target, tuple(_update(u) for u in updates)
    )

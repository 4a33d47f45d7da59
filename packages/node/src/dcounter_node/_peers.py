"""The set of peers a node gossips with."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from dcounter_node._errors import InvalidPeerAddressError
from dcounter_protocol import MalformedAddressError, parse_address

if TYPE_CHECKING:
    import random
    from collections.abc import Collection, Iterable

__all__ = ["PeerManager", "validate_peer_address"]


def validate_peer_address(address: object) -> str:
    """Return ``address`` if it is a "host:port" string a transport can dial, else raise.

    The rules are :func:`dcounter_protocol.parse_address`'s with port 0 refused, so a peer
    accepted here can always be dialled and framed. Raises :class:`InvalidPeerAddressError`
    (a ValueError) saying what is wrong.
    """
    if not isinstance(address, str) or not address:
        raise InvalidPeerAddressError(f"peer address must be a non-empty string, got {address!r}")
    try:
        parse_address(address, allow_port_zero=False)
    except MalformedAddressError as exc:
        raise InvalidPeerAddressError(f"bad peer address: {exc.reason}") from None
    return address


class PeerManager:
    """A thread-safe set of peer addresses that never contains the node's own address.

    Safe to call from the event loop and from other threads; every list it returns is a copy.
    """

    def __init__(self, self_address: str | None = None, peers: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._self_address = self_address
        self._peers: set[str] = set()
        for address in peers:
            self.add(address)

    @property
    def self_address(self) -> str | None:
        """The owning node's address, which is never a peer (None until known)."""
        with self._lock:
            return self._self_address

    def set_self_address(self, address: str) -> None:
        """Record the node's own (bound) address and forget it as a peer if it was one."""
        with self._lock:
            self._self_address = address
            self._peers.discard(address)

    def add(self, address: str) -> bool:
        """Add a peer; True if it was new, False if known already or the node itself.

        Raises :class:`InvalidPeerAddressError` for an address that is not "host:port".
        """
        validate_peer_address(address)
        with self._lock:
            if address == self._self_address or address in self._peers:
                return False
            self._peers.add(address)
            return True

    def remove(self, address: str) -> bool:
        """Remove a peer; True if it was there."""
        with self._lock:
            if address in self._peers:
                self._peers.remove(address)
                return True
            return False

    def peers(self) -> list[str]:
        """The peers, sorted (a new list)."""
        with self._lock:
            return sorted(self._peers)

    def sample(self, count: int, rng: random.Random, *, exclude: Collection[str] = ()) -> list[str]:
        """Up to ``count`` distinct peers, none in ``exclude``, chosen at random with ``rng``."""
        with self._lock:
            candidates = sorted(self._peers.difference(exclude))
        if count >= len(candidates):
            rng.shuffle(candidates)
            return candidates
        return rng.sample(candidates, count)

    def __contains__(self, address: object) -> bool:
        with self._lock:
            return address in self._peers

    def __len__(self) -> int:
        with self._lock:
            return len(self._peers)

    def __repr__(self) -> str:
        with self._lock:
            return f"PeerManager(self_address={self._self_address!r}, peers={sorted(self._peers)})"

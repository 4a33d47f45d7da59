"""The typed errors raised by :mod:`dcounter_crdt`."""

from __future__ import annotations

__all__ = [
    "CRDTError",
    "CountOverflowError",
    "InvalidAmountError",
    "InvalidReplicaIdError",
    "InvalidStateError",
]


class CRDTError(Exception):
    """Base class of every error this package raises."""


class InvalidAmountError(CRDTError, ValueError):
    """An increment or decrement amount that is not a positive integer."""


class InvalidReplicaIdError(CRDTError, ValueError):
    """A replica id that is not a non-empty string."""


class CountOverflowError(CRDTError, OverflowError):
    """A per-replica count that would leave the wire format's uint64 range."""


class InvalidStateError(CRDTError, ValueError):
    """A snapshot whose maps do not hold replica ids mapped to uint64 counts."""

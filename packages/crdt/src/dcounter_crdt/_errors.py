"""The typed errors raised by :mod:`dcounter_crdt`."""

from __future__ import annotations

__all__ = [
    "CRDTError",
    "CountOverflowError",
    "InvalidAmountError",
    "InvalidKeyError",
    "InvalidLimitError",
    "InvalidReplicaIdError",
    "InvalidStateError",
    "KeyLimitError",
    "KeyTooLongError",
    "TooManyKeysError",
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


class InvalidKeyError(CRDTError, ValueError):
    """A counter name that is not a non-empty string."""


class InvalidLimitError(CRDTError, ValueError):
    """A key limit given to :class:`~dcounter_crdt.PNCounterMap` that is not an int >= 1."""


class KeyLimitError(CRDTError):
    """A write or merge refused because it would pass one of the map's key limits.

    The map is left unchanged. Not a ValueError: the input is valid, this replica is
    configured not to hold it.
    """


class KeyTooLongError(KeyLimitError):
    """A counter name longer (in UTF-8 bytes) than the map's ``max_key_length``."""


class TooManyKeysError(KeyLimitError):
    """A new counter name that would take the map past its ``max_keys``."""

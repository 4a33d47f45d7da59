"""dcounter_crdt: a PN-counter CRDT as a plain value type, with merge, snapshots and deltas."""

from __future__ import annotations

from dcounter_crdt.__about__ import __version__ as __version__
from dcounter_crdt._errors import CountOverflowError as CountOverflowError
from dcounter_crdt._errors import CRDTError as CRDTError
from dcounter_crdt._errors import InvalidAmountError as InvalidAmountError
from dcounter_crdt._errors import InvalidReplicaIdError as InvalidReplicaIdError
from dcounter_crdt._errors import InvalidStateError as InvalidStateError
from dcounter_crdt._gcounter import GCounter as GCounter
from dcounter_crdt._pncounter import PNCounter as PNCounter
from dcounter_crdt._state import MAX_COUNT as MAX_COUNT
from dcounter_crdt._state import CounterState as CounterState

__all__ = [
    "MAX_COUNT",
    "CRDTError",
    "CountOverflowError",
    "CounterState",
    "GCounter",
    "InvalidAmountError",
    "InvalidReplicaIdError",
    "InvalidStateError",
    "PNCounter",
    "__version__",
]

"""dcounter_crdt: PN-counters (one, or a map of them by name) as plain value types.

Merge, snapshots and deltas; no I/O.
"""

from __future__ import annotations

from dcounter_crdt.__about__ import __version__ as __version__
from dcounter_crdt._errors import CountOverflowError as CountOverflowError
from dcounter_crdt._errors import CRDTError as CRDTError
from dcounter_crdt._errors import InvalidAmountError as InvalidAmountError
from dcounter_crdt._errors import InvalidKeyError as InvalidKeyError
from dcounter_crdt._errors import InvalidLimitError as InvalidLimitError
from dcounter_crdt._errors import InvalidReplicaIdError as InvalidReplicaIdError
from dcounter_crdt._errors import InvalidStateError as InvalidStateError
from dcounter_crdt._errors import KeyLimitError as KeyLimitError
from dcounter_crdt._errors import KeyTooLongError as KeyTooLongError
from dcounter_crdt._errors import TooManyKeysError as TooManyKeysError
from dcounter_crdt._gcounter import GCounter as GCounter
from dcounter_crdt._map_state import DEFAULT_KEY as DEFAULT_KEY
from dcounter_crdt._map_state import CounterMapState as CounterMapState
from dcounter_crdt._pncounter import PNCounter as PNCounter
from dcounter_crdt._pncounter_map import DEFAULT_MAX_KEY_LENGTH as DEFAULT_MAX_KEY_LENGTH
from dcounter_crdt._pncounter_map import DEFAULT_MAX_KEYS as DEFAULT_MAX_KEYS
from dcounter_crdt._pncounter_map import PNCounterMap as PNCounterMap
from dcounter_crdt._state import MAX_COUNT as MAX_COUNT
from dcounter_crdt._state import CounterState as CounterState

__all__ = [
    "DEFAULT_KEY",
    "DEFAULT_MAX_KEYS",
    "DEFAULT_MAX_KEY_LENGTH",
    "MAX_COUNT",
    "CRDTError",
    "CountOverflowError",
    "CounterMapState",
    "CounterState",
    "GCounter",
    "InvalidAmountError",
    "InvalidKeyError",
    "InvalidLimitError",
    "InvalidReplicaIdError",
    "InvalidStateError",
    "KeyLimitError",
    "KeyTooLongError",
    "PNCounter",
    "PNCounterMap",
    "TooManyKeysError",
    "__version__",
]

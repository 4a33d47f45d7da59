"""dcounter operator tools: the ``dcounter-cluster`` launcher and the ``dcounter-frames`` inspector.

The console scripts are the interface; :mod:`dcounter_tools.cluster` and
:mod:`dcounter_tools.frames` hold the pieces they are built from.
"""

from __future__ import annotations

from dcounter_tools.__about__ import __version__ as __version__
from dcounter_tools.errors import (
    ClusterError as ClusterError,
)
from dcounter_tools.errors import (
    ClusterStateError as ClusterStateError,
)
from dcounter_tools.errors import (
    InputError as InputError,
)
from dcounter_tools.errors import (
    NodeStartError as NodeStartError,
)
from dcounter_tools.errors import (
    ToolError as ToolError,
)
from dcounter_tools.errors import (
    UsageError as UsageError,
)

__all__ = [
    "ClusterError",
    "ClusterStateError",
    "InputError",
    "NodeStartError",
    "ToolError",
    "UsageError",
    "__version__",
]

"""dcounter_client: sync and async clients for dcounter nodes, with exact retries."""

from __future__ import annotations

from dcounter_client.__about__ import __version__ as __version__
from dcounter_client._async_client import AsyncClient as AsyncClient
from dcounter_client._client import Client as Client
from dcounter_client._errors import ClientError as ClientError
from dcounter_client._errors import IndeterminateError as IndeterminateError
from dcounter_client._errors import InvalidArgumentError as InvalidArgumentError
from dcounter_client._errors import RejectedError as RejectedError
from dcounter_client._errors import ResponseError as ResponseError
from dcounter_client._errors import UnavailableError as UnavailableError
from dcounter_client._policy import RetryPolicy as RetryPolicy
from dcounter_client._types import CounterPage as CounterPage
from dcounter_client._types import CounterSnapshot as CounterSnapshot
from dcounter_client._types import Member as Member
from dcounter_client._types import NodeHealth as NodeHealth

__all__ = [
    "AsyncClient",
    "Client",
    "ClientError",
    "CounterPage",
    "CounterSnapshot",
    "IndeterminateError",
    "InvalidArgumentError",
    "Member",
    "NodeHealth",
    "RejectedError",
    "ResponseError",
    "RetryPolicy",
    "UnavailableError",
    "__version__",
]

"""The typed errors raised by :mod:`dcounter_client`.

Local misuse (:class:`InvalidArgumentError`) is told apart from what the nodes did:
refused the request (:class:`RejectedError`), could not be reached
(:class:`UnavailableError`), left a write's fate open (:class:`IndeterminateError`) or
answered something the API does not promise (:class:`ResponseError`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "ClientError",
    "IndeterminateError",
    "InvalidArgumentError",
    "RejectedError",
    "ResponseError",
    "UnavailableError",
]


class ClientError(Exception):
    """Base class of every error this package raises."""


class InvalidArgumentError(ClientError, ValueError):
    """The caller passed something unusable (no URLs, an amount out of range...)."""


class RejectedError(ClientError):
    """A node refused the request with a 4xx status; nothing was applied.

    ``message`` is the node's own explanation (its ``{"error": ...}`` body).
    """

    def __init__(self, node: str, status: int, message: str) -> None:
        super().__init__(f"{node} rejected the request ({status}): {message}")
        self.node = node
        self.status = status
        self.message = message


class UnavailableError(ClientError):
    """No node answered; a write certainly was not applied.

    ``errors`` maps each node tried to the last failure seen on it.
    """

    def __init__(self, errors: Mapping[str, str]) -> None:
        detail = "; ".join(f"{node}: {reason}" for node, reason in errors.items())
        super().__init__(f"no dcounter node answered ({detail})")
        self.errors = dict(errors)


class IndeterminateError(ClientError):
    """A write may or may not have been applied, and retrying could not settle it.

    A request reached ``node`` (or may have) but no answer came back before the retries or
    the deadline ran out. Sending the same operation again with ``key`` to that same
    ``node`` (``Client([error.node]).increment(by, key=error.key)``) settles it without
    ever counting twice, as long as the node still remembers the key.
    """

    def __init__(self, node: str, key: str, operation: str, by: int, reason: str) -> None:
        super().__init__(
            f"{operation} by {by} on {node} may or may not have been applied "
            f"(Idempotency-Key {key}): {reason}"
        )
        self.node = node
        self.key = key
        self.operation = operation
        self.by = by
        self.reason = reason


class ResponseError(ClientError):
    """A node answered something the API does not promise (a malformed document)."""

"""What a node's answers mean: JSON documents read into the client's types, strictly.

Nothing here does I/O. Each ``parse_*`` function takes the node's URL, the HTTP status and
the body, and returns a value or raises :class:`~dcounter_client.ResponseError` for a
document that is not what the node's API promises (never a bare ``KeyError``).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final

from dcounter_client._errors import ResponseError
from dcounter_client._types import CounterPage, CounterSnapshot, Member, NodeHealth

if TYPE_CHECKING:
    import httpx

__all__ = [
    "describe",
    "error_message",
    "health_failed",
    "health_of",
    "parse_counter",
    "parse_members",
    "parse_page",
    "parse_peer_added",
    "parse_peer_removed",
    "parse_peers",
    "parse_value",
]

#: Longest error message kept from a node's answer.
_MAX_MESSAGE: Final = 500


def describe(exc: BaseException) -> str:
    """An exception as one line for an error message: its type and its text."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _document(node: str, content: bytes) -> Any:
    try:
        return json.loads(content)
    except (ValueError, RecursionError):
        raise ResponseError(f"{node} answered a body that is not JSON: {content[:80]!r}") from None


def error_message(content: bytes) -> str:
    try:
        message = json.loads(content)["error"]
    except (ValueError, RecursionError, KeyError, TypeError):
        message = None
    if not isinstance(message, str):
        message = content.decode("utf-8", "replace")
    return message[:_MAX_MESSAGE]


def _int(value: object) -> int:
    if type(value) is not int:
        raise TypeError(f"not an integer: {value!r}")
    return value


def parse_value(node: str, status: int, content: bytes) -> int:
    document = _document(node, content)
    try:
        return _int(document["value"])
    except (KeyError, TypeError) as exc:
        raise ResponseError(f"{node} answered an unexpected document: {exc}") from None


def _counts(value: object) -> dict[str, int]:
    if not isinstance(value, dict):
        raise TypeError(f"counts must be an object, got {value!r}")
    return {str(replica): _int(count) for replica, count in value.items()}


def parse_counter(node: str, status: int, content: bytes) -> CounterSnapshot:
    document = _document(node, content)
    try:
        return CounterSnapshot(
            _int(document["value"]),
            str(document["replica"]),
            _counts(document["increments"]),
            _counts(document["decrements"]),
            node,
        )
    except (KeyError, TypeError) as exc:
        raise ResponseError(f"{node} answered an unexpected counter: {exc!r}") from None


def parse_page(node: str, status: int, content: bytes) -> CounterPage:
    document = _document(node, content)
    try:
        entries = document["counters"]
        if not isinstance(entries, list):
            raise TypeError(f"counters must be a list, got {entries!r}")
        counters = {str(entry["name"]): _int(entry["value"]) for entry in entries}
        cursor = document["next"]
        if cursor is not None and not isinstance(cursor, str):
            raise TypeError(f"next must be a name or null, got {cursor!r}")
    except (KeyError, TypeError) as exc:
        raise ResponseError(f"{node} answered an unexpected counter list: {exc!r}") from None
    return CounterPage(counters, cursor, node)


def parse_peers(node: str, status: int, content: bytes) -> list[str]:
    document = _document(node, content)
    try:
        peers = document["peers"]
        if not isinstance(peers, list) or not all(isinstance(p, str) for p in peers):
            raise TypeError(f"not a list of addresses: {peers!r}")
    except (KeyError, TypeError) as exc:
        raise ResponseError(f"{node} answered an unexpected peer list: {exc!r}") from None
    return peers


_MEMBER_STATES = frozenset({"alive", "suspect", "dead", "left"})


def _member(item: object) -> Member:
    if not isinstance(item, dict):
        raise TypeError(f"not an object: {item!r}")
    address, replica, state = item["address"], item["replica"], item["state"]
    incarnation, since = item["incarnation"], item["since"]
    if not (isinstance(address, str) and isinstance(replica, str) and state in _MEMBER_STATES):
        raise TypeError(f"not a member: {item!r}")
    if type(incarnation) is not int or incarnation < 0:
        raise TypeError(f"not an incarnation: {incarnation!r}")
    if isinstance(since, bool) or not isinstance(since, int | float):
        raise TypeError(f"not a time: {since!r}")
    return Member(address, replica, state, incarnation, float(since))


def parse_members(node: str, status: int, content: bytes) -> list[Member]:
    document = _document(node, content)
    try:
        members = document["members"]
        if not isinstance(members, list):
            raise TypeError(f"not a list: {members!r}")
        return [_member(item) for item in members]
    except (KeyError, TypeError) as exc:
        raise ResponseError(f"{node} answered an unexpected member list: {exc!r}") from None


def parse_peer_added(node: str, status: int, content: bytes) -> bool:
    parse_peers(node, status, content)
    return status == 201


def parse_peer_removed(node: str, status: int, content: bytes) -> bool:
    return status == 200


def health_of(node: str, status: int | None, content: bytes, error: str = "") -> NodeHealth:
    """One node's health from its answer (``status`` None: it could not be asked)."""
    if status is None:
        return NodeHealth(node, False, error)
    try:
        text = json.loads(content)["status"]
    except (ValueError, RecursionError, KeyError, TypeError):
        text = None
    if not isinstance(text, str):
        text = f"HTTP {status}"
    return NodeHealth(node, status == 200 and text == "ok", text)


def health_failed(node: str, exc: httpx.TransportError) -> NodeHealth:
    return health_of(node, None, b"", describe(exc))

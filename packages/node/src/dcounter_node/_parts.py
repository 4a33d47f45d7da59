"""Pushes split into parts that fit what the receiver reads (pure code).

A full state can outgrow a message: the message size limit for everyone, and one 16 KiB
read for a peer on the seed framing (the Go reference reads one chunk and drops the rest).
A state that does not fit goes out as several pushes, each a slice of its replica ids:
pointwise-max merging makes the parts together exactly as good as the whole. Only an
unsplit full state carries the sender's digest (a part is not a full state).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from dcounter_protocol import (
    DEFAULT_MAX_MESSAGE_SIZE,
    OversizeMessageError,
    ProtocolError,
    Push,
    encode_message,
)

if TYPE_CHECKING:
    from dcounter_crdt import CounterState

__all__ = ["SEED_READ_SIZE", "PushEncoder", "encode_push_parts"]

#: What the reference reads from a connection in one go (its frames beyond it are cut).
SEED_READ_SIZE: Final = 16 * 1024


def encode_push_parts(
    node_id: str, state: CounterState, digest: int, limit: int
) -> tuple[bytes, ...]:
    """``state`` as encoded pushes of at most ``limit`` bytes each (one if it fits).

    Raises :class:`OversizeMessageError` when a single replica's entries do not fit, and
    :class:`~dcounter_protocol.EncodeError` for a state that cannot be encoded at all.
    """
    whole = _encode(Push.from_state(node_id, state, digest))
    if whole is not None and len(whole) <= limit:
        return (whole,)
    ids = sorted(state.replicas())
    inc, dec = state.increments, state.decrements
    # Start from equal slices sized by the whole encoding, then halve what still does not fit.
    slices = 2 if whole is None else -(-len(whole) // limit) + 1
    step = max(1, -(-len(ids) // slices))
    pending = [ids[i : i + step] for i in range(0, len(ids), step)]
    pending.reverse()
    parts: list[bytes] = []
    while pending:
        chunk = pending.pop()
        part = _encode(
            Push(
                node_id,
                {r: inc[r] for r in chunk if r in inc},
                {r: dec[r] for r in chunk if r in dec},
            )
        )
        if part is not None and len(part) <= limit:
            parts.append(part)
        elif len(chunk) == 1:
            shown = chunk[0] if len(chunk[0]) <= 64 else chunk[0][:64] + "..."
            raise OversizeMessageError(f"the entries of replica {shown!r} exceed {limit} bytes")
        else:
            middle = len(chunk) // 2
            pending.extend((chunk[middle:], chunk[:middle]))
    return tuple(parts)


def _encode(push: Push) -> bytes | None:
    """The push, or None when it is beyond any message's size."""
    try:
        return encode_message(push)
    except OversizeMessageError:
        return None


class PushEncoder:
    """Encodes pushes for the two kinds of receivers, caching our full state's parts.

    The full state is encoded at most once per kind of receiver between two changes of
    state (:meth:`changed`), failures included, so a state that cannot be encoded costs one
    attempt, not one per pull. A large state (over ``reuse_above`` entries, where one
    encoding takes milliseconds) is re-encoded at most once per ``reuse_for`` seconds even
    while it keeps changing: until then pulls get the previous encoding. That is safe (any
    earlier state is a valid push; merging is idempotent, and the changes since travel as
    deltas and with the next encoding) and keeps a busy node from spending its loop on
    encoding.
    """

    def __init__(
        self,
        node_id: str,
        *,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        reuse_above: int = 1000,
        reuse_for: float = 1.0,
    ) -> None:
        self._node_id = node_id
        #: Largest payload for a stream peer.
        self.stream_limit = max_message_size
        #: Largest payload for a seed peer: the frame (length byte, address, payload) must
        #: fit one read of the reference.
        self.seed_limit = min(max_message_size, SEED_READ_SIZE - 1 - len(node_id.encode()))
        self._reuse_above = reuse_above
        self._reuse_for = reuse_for
        #: limit -> (parts, when encoded, whether the state changed since).
        self._full: dict[int, tuple[tuple[bytes, ...], float, bool]] = {}
        self._failure: ProtocolError | None = None

    def changed(self) -> None:
        """The state changed: cached encodings are out of date."""
        self._full = {limit: (parts, at, True) for limit, (parts, at, _) in self._full.items()}

    def take_failure(self) -> ProtocolError | None:
        """The last encoding failure not reported yet (then forgotten)."""
        failure, self._failure = self._failure, None
        return failure

    def full(self, state: CounterState, digest: int, limit: int, now: float) -> tuple[bytes, ...]:
        """Our full state in parts of at most ``limit`` bytes; () if it cannot be encoded."""
        cached = self._full.get(limit)
        if cached is not None:
            parts, at, stale = cached
            if not stale:
                return parts
            entries = len(state.increments) + len(state.decrements)
            if entries > self._reuse_above and now - at < self._reuse_for:
                return parts
        parts = self.parts(state, digest, limit)
        self._full[limit] = (parts, now, False)
        return parts

    def parts(self, state: CounterState, digest: int, limit: int) -> tuple[bytes, ...]:
        """``state`` in parts of at most ``limit`` bytes; () (failure kept) if impossible."""
        try:
            return encode_push_parts(self._node_id, state, digest, limit)
        except ProtocolError as exc:
            self._failure = exc
            return ()

"""Compiled layouts of message bodies: one ``struct`` call packs a whole message.

The reference writes every count as ``cf`` + 8 bytes, so ``msgpack.packb`` cannot encode a
body; writing it piece by piece costs a Python step per map entry. But a node's messages
have few shapes: the same node id and, between two pushes, the same replica ids in the same
order; only the counts change. A layout is the :class:`struct.Struct` of one such shape, with
the constant bytes (envelope flag, field names, map headers, replica ids, ``cf`` markers)
passed as fixed-size ``s`` fields between the ``Q`` counts, so encoding a message of a known
shape is one C call. Layouts are keyed by the shape only (never by counts), so a changed
count still hits, as it does on a real node.

The ``Q`` fields check the range (0..2**64-1) and that each count is an integer; the exact-int
check (no bools, no int subclasses) stays with the caller.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Final

from dcounter_protocol._errors import EncodeError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["KEY_DEC", "KEY_DIG", "KEY_INC", "NIL", "LayoutCache", "encode_str", "map_header"]

_pack_u8: Final = struct.Struct(">BB").pack
_pack_u16: Final = struct.Struct(">BH").pack
_pack_u32: Final = struct.Struct(">BI").pack
KEY_INC: Final = b"\xa3inc"
KEY_DEC: Final = b"\xa3dec"
KEY_DIG: Final = b"\xa3dig"
NIL: Final = b"\xc0"
_U64: Final = b"\xcf"


def _str_header(size: int) -> bytes:
    if size < 32:
        return bytes((0xA0 | size,))
    if size < 0x100:
        return _pack_u8(0xD9, size)
    if size < 0x10000:
        return _pack_u16(0xDA, size)
    return _pack_u32(0xDB, size)


def map_header(size: int) -> bytes:
    """The msgpack header of a map of ``size`` entries."""
    if size < 16:
        return bytes((0x80 | size,))
    if size < 0x10000:
        return _pack_u16(0xDE, size)
    return _pack_u32(0xDF, size)


def encode_str(text: str, what: str) -> bytes:
    """``text`` as a msgpack str; EncodeError when it is not UTF-8 encodable."""
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise EncodeError(f"{what} is not encodable as UTF-8: {text!r}") from exc
    if len(raw) > 0xFFFFFFFF:
        raise EncodeError(f"{what} is longer than msgpack allows")
    return _str_header(len(raw)) + raw


def _replica_key(replica: object, what: str) -> bytes:
    if type(replica) is not str or not replica:
        raise EncodeError(f"{what}: replica ids must be non-empty str, got {replica!r}")
    return encode_str(replica, f"{what}: replica id")


#: A shape, flat so that building and hashing it is cheap: the head (flag, map header,
#: ``t``), the node id, the increments' replica ids, ``None``, the decrements' replica ids.
#: Only shapes of str ids are ever compiled, so the one ``None`` always marks the split.
Shape = tuple[bytes | str | None, ...]


class Layout:
    """The packer of one shape and its arguments, the counts' slots left empty.

    ``pack(*args)`` with a copy of ``args`` whose slots ``[1:counts_end:2]`` hold the counts
    (increments then decrements, in wire order) and ``[-2]`` the digest (if the head says a
    fifth field follows) is the envelope; ``struct.error`` for a count outside uint64 or not
    an integer. (The caller fills the slots itself: a method call would cost a tenth of the
    encoding.)
    """

    __slots__ = ("args", "counts_end", "fields", "pack")

    def __init__(self, shape: Shape, node_key: bytes) -> None:
        head = shape[0]
        if type(head) is not bytes:
            raise EncodeError(f"not a message head: {head!r}")
        split = shape.index(None, 2)
        # The body's map header says whether the fifth field, the digest, follows.
        has_digest = head[1] == 0x85
        # Constant runs and counts alternate: const, count, const, ..., count, const.
        consts: list[bytes] = []
        run = [head, node_key]
        for key, ids, what in (
            (KEY_INC, shape[2:split], "increments"),
            (KEY_DEC, shape[split + 1 :], "decrements"),
        ):
            run += (key, map_header(len(ids)))
            for replica in ids:
                run += (_replica_key(replica, what), _U64)
                consts.append(b"".join(run))
                run = []
        if has_digest:
            run += (KEY_DIG, _U64)
            consts.append(b"".join(run))
            run = []
        consts.append(b"".join(run))
        #: Number of uint64 fields (the counts and the digest).
        self.fields = len(consts) - 1
        self.counts_end = 2 * (len(shape) - 3)
        fmt = ">" + "Q".join(f"{len(const)}s" for const in consts)
        self.pack: Callable[..., bytes] = struct.Struct(fmt).pack
        args: list[object] = []
        for const in consts:
            args += (const, None)
        self.args = args[:-1]


class LayoutCache(dict[Shape, Layout]):
    """Layouts by shape, compiled on first use (EncodeError for a bad replica id) and
    bounded by the total number of uint64 fields they hold."""

    __slots__ = ("_fields", "_limit", "_node_key")

    def __init__(self, node_key: Callable[[str], bytes], limit: int) -> None:
        super().__init__()
        self._fields = 0
        self._limit = limit
        self._node_key = node_key

    def __missing__(self, shape: Shape) -> Layout:
        node_id = shape[1]
        if type(node_id) is not str or not node_id:
            raise EncodeError(f"node id must be a non-empty str, got {node_id!r}")
        layout = Layout(shape, self._node_key(node_id))
        if self._fields + layout.fields > self._limit:
            self.clear()
            self._fields = 0
        self[shape] = layout
        self._fields += layout.fields
        return layout

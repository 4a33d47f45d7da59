"""zstd for message envelopes: one set of contexts per thread, decompression bounded.

Both codecs use it: the encoder compresses a body past ``COMPRESSION_THRESHOLD`` at the
reference's level; the decoder decompresses what a peer sent without ever producing more
than the message size limit, whatever the frames declare (a zstd bomb costs one chunk).
"""

from __future__ import annotations

import threading
from typing import Final

import zstandard

from dcounter_protocol._errors import DecompressionError, MessageTooLargeError

__all__ = ["compressor", "decompress"]

#: zstd level of the reference's encoder (klauspost/compress SpeedDefault matches level 3).
_ZSTD_LEVEL: Final = 3
#: Decompressed bytes read per step while bounding the output.
_DECOMPRESS_CHUNK: Final = 128 * 1024
#: Windows up to this size are always allowed, whatever ``max_size`` (Python's streaming
#: frames at level 3 declare 2 MiB; klauspost's streams up to 8 MiB).
_MIN_WINDOW_LIMIT: Final = 8 * 1024 * 1024


# python-zstandard contexts must not be used by two threads at once; one set per thread.
_local = threading.local()


def compressor() -> zstandard.ZstdCompressor:
    cctx: zstandard.ZstdCompressor | None = getattr(_local, "cctx", None)
    if cctx is None:
        cctx = zstandard.ZstdCompressor(
            level=_ZSTD_LEVEL, write_checksum=True, write_content_size=True
        )
        _local.cctx = cctx
    return cctx


def _decompressor(window_limit: int) -> zstandard.ZstdDecompressor:
    cache: dict[int, zstandard.ZstdDecompressor] | None = getattr(_local, "dctx", None)
    if cache is None:
        cache = _local.dctx = {}
    dctx = cache.get(window_limit)
    if dctx is None:
        dctx = cache[window_limit] = zstandard.ZstdDecompressor(max_window_size=window_limit)
    return dctx


def decompress(data: memoryview, max_size: int) -> bytes:
    """Decompress one or more concatenated zstd frames, never producing more than max_size."""
    try:
        declared = zstandard.frame_content_size(data)
    except zstandard.ZstdError:
        declared = -1  # not even a frame header: the general path reports why
    if declared > max_size:
        raise MessageTooLargeError(f"zstd frame declares {declared} bytes, above {max_size}")
    dctx = _decompressor(max(_MIN_WINDOW_LIMIT, 1 << max(max_size - 1, 1).bit_length()))
    if declared >= 0:
        # What Go and python-zstandard send: one frame that declares its size. A one-shot
        # decompression allocates exactly that much and fails on truncation or on more data.
        try:
            result: bytes = dctx.decompress(data, allow_extra_data=False)
        except zstandard.ZstdError:
            pass  # several frames, or a bad one: the general path tells which
        else:
            return result
    return _decompress_frames(dctx, data, max_size)


def _decompress_frames(dctx: zstandard.ZstdDecompressor, data: memoryview, max_size: int) -> bytes:
    """The general case: frames without a content size, concatenated frames, bad input.

    Two passes. ``stream_reader(read_across_frames=True)`` handles every frame layout and
    lets us stop as soon as the output passes ``max_size`` (a bomb costs one chunk of
    memory), but it ends silently at the end of the input, so a truncated frame would pass.
    Once the output is known to be bounded, ``decompressobj`` (which reports ``eof`` per
    frame) decompresses frame by frame and proves that every frame is complete.
    """
    try:
        total = 0
        with dctx.stream_reader(data, read_across_frames=True, closefd=False) as reader:
            while chunk := reader.read(_DECOMPRESS_CHUNK):
                total += len(chunk)
                if total > max_size:
                    raise MessageTooLargeError(f"decompressed message exceeds {max_size} bytes")
        parts: list[bytes] = []
        rest: bytes | memoryview = data
        while rest:
            dobj = dctx.decompressobj()
            parts.append(dobj.decompress(rest))
            if not dobj.eof:
                raise DecompressionError("zstd data ends in the middle of a frame")
            rest = dobj.unused_data
    except zstandard.ZstdError as exc:
        raise DecompressionError(f"zstd data does not decompress: {exc}") from exc
    return b"".join(parts)

"""RESP on the wire, sans-IO: the request reader (hiredis behind a framing check), replies."""

from __future__ import annotations

import time
import tracemalloc
from typing import TYPE_CHECKING

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dcounter_node._resp_limits import RespLimits
from dcounter_node._resp_wire import Replies, RequestReader, RespProtocolError, error_line

from .conftest import pack

if TYPE_CHECKING:
    from collections.abc import Callable

INCR = b"*2\r\n$4\r\nINCR\r\n$3\r\nabc\r\n"


def _reader(**limits: int) -> RequestReader:
    return RequestReader(RespLimits(**limits))


def test_a_request_is_its_arguments() -> None:
    assert _reader().feed(INCR) == [[b"INCR", b"abc"]]


def test_a_request_split_at_every_byte_gives_the_same_request() -> None:
    wire = pack(b"INCRBY", b"page:\r\n*1", b"-12")
    for cut in range(1, len(wire)):
        reader = _reader()
        assert reader.feed(wire[:cut]) == []
        assert reader.in_request
        assert reader.feed(wire[cut:]) == [[b"INCRBY", b"page:\r\n*1", b"-12"]]
        assert not reader.in_request


def test_pipelined_requests_come_out_in_order() -> None:
    wire = b"".join(pack(b"INCR", str(i).encode()) for i in range(1000))
    requests = _reader().feed(wire)
    assert requests == [[b"INCR", str(i).encode()] for i in range(1000)]


def test_empty_requests_are_dropped_as_redis_does() -> None:
    assert _reader().feed(b"*0\r\n*-1\r\n" + INCR) == [[b"INCR", b"abc"]]


def test_inline_commands_are_read_as_telnet_sends_them() -> None:
    reader = _reader()
    assert reader.feed(b"PING\r\nINCRBY a  5\nGE") == [[b"PING"], [b"INCRBY", b"a", b"5"]]
    assert reader.in_request
    assert reader.feed(b"T a\r\n" + INCR) == [[b"GET", b"a"], [b"INCR", b"abc"]]


def test_blank_lines_between_requests_are_skipped_as_redis_does() -> None:
    # redis-cli --pipe ends with "\r\n" and an ECHO.
    assert _reader().feed(b"\r\n" + INCR + b"\r\n\n" + INCR) == [[b"INCR", b"abc"]] * 2


def test_an_endless_inline_line_is_refused() -> None:
    reader = _reader()
    reader.feed(b"x" * 60_000)
    with pytest.raises(RespProtocolError, match="too big inline request"):
        reader.feed(b"x" * 10_000)


def test_binary_arguments_pass_through() -> None:
    name = bytes(range(256))
    assert _reader().feed(pack(b"GET", name)) == [[b"GET", name]]


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        (b"*1\r\n:5\r\n", "expected '$', got ':'"),
        # A nested array: hiredis would allocate its 2**31 slots at once.
        (b"*1\r\n*2147483647\r\n", "expected '$', got '*'"),
        (b"*x\r\n", "invalid multibulk length"),
        (b"*1\r\n$-1\r\n", "invalid bulk length"),
        (b"*1\r\n$1x\r\n", "invalid bulk length"),
        (b"*" + b"9" * 40, "header line longer than 32 bytes"),
    ],
)
def test_malformed_requests_are_protocol_errors(wire: bytes, reason: str) -> None:
    with pytest.raises(RespProtocolError) as caught:
        _reader().feed(wire)
    assert str(caught.value) == reason


def test_a_huge_argument_count_is_refused_before_hiredis_allocates_for_it() -> None:
    started = time.perf_counter()
    with pytest.raises(RespProtocolError, match="invalid multibulk length"):
        _reader().feed(b"*2147483647\r\n")
    # Allocating (and freeing) 2**31 slots takes seconds; the check takes microseconds.
    assert time.perf_counter() - started < 0.5


def _peak_bytes(action: Callable[[], object]) -> int:
    """The most memory Python's allocators (hiredis's lists included) held during ``action``."""
    tracemalloc.start()
    try:
        action()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def _refusal(wire: bytes) -> str:
    try:
        _reader().feed(wire)
    except RespProtocolError as exc:
        return str(exc)
    return "accepted"


def test_an_array_header_behind_a_lying_bulk_length_never_reaches_hiredis() -> None:
    # "$1" covers "k" and two bytes for its CRLF, so hiredis would read "*2147483647" next,
    # as the third argument: a header inside what looks like an argument, not at a line start.
    wire = b"*3\r\n$3\r\nGET\r\n$1\r\nkXY*2147483647\r\n"
    reasons: list[str] = []
    assert _peak_bytes(lambda: reasons.append(_refusal(wire))) < 1_000_000
    assert reasons == ["expected '$', got '*'"]


def test_deeply_nested_small_arrays_are_refused() -> None:
    # Each header is tiny, but hiredis would nest them 10,000 deep, waiting for more.
    assert _refusal(b"*1\r\n" * 10_000) == "expected '$', got '*'"


def test_a_resp3_aggregate_header_after_a_request_never_reaches_hiredis() -> None:
    # Not a request start Redis knows: the line is an inline command, as Redis reads it.
    wire = pack(b"PING") + b"~2147483647\r\n"
    requests: list[list[list[bytes]]] = []
    assert _peak_bytes(lambda: requests.append(_reader().feed(wire))) < 1_000_000
    assert requests == [[[b"PING"], [b"~2147483647"]]]


@pytest.mark.parametrize(
    ("kind", "element"), [("+", b"+INCR"), ("(", b"(12"), ("=", b"=7\r\ntxt:abc")]
)
def test_only_bulk_strings_are_arguments_even_those_hiredis_reads_as_strings(
    kind: str, element: bytes
) -> None:
    wire = b"*2\r\n" + element + b"\r\n$1\r\na\r\n" + pack(b"PING")
    assert _refusal(wire) == f"expected '$', got '{kind}'"


def test_a_top_level_bulk_string_is_never_a_request() -> None:
    # The "*1" inside the first argument makes the '*' count match hiredis's two results,
    # and an empty string holds no argument to fail a check on: Redis reads "$0" as an
    # inline command.
    wire = b"*1\r\n$2\r\n*1\r\n$0\r\n\r\n"
    assert _reader().feed(wire) == [[b"*1"], [b"$0"]]


def test_arguments_that_look_like_headers_are_just_bytes() -> None:
    odd = [b"a*1\r\n", b"*9", b"x%y+z", b"$5\r\n", b"*2\r\n$4\r\nINCR\r\n"]
    wire = b"".join(pack(b"GET", arg) for arg in odd) + INCR
    assert _reader().feed(wire) == [[b"GET", arg] for arg in odd] + [[b"INCR", b"abc"]]


def test_a_read_that_ends_inside_a_request_keeps_the_whole_ones_before_it() -> None:
    reader = _reader()
    assert reader.feed(INCR * 3 + INCR[:9]) == [[b"INCR", b"abc"]] * 3
    assert reader.in_request
    assert reader.feed(INCR[9:] + INCR) == [[b"INCR", b"abc"]] * 2
    assert not reader.in_request


def test_arguments_over_the_limit_are_refused() -> None:
    reader = _reader(max_arguments=3)
    assert reader.feed(pack(b"MGET", b"a", b"b")) == [[b"MGET", b"a", b"b"]]
    with pytest.raises(RespProtocolError, match="invalid multibulk length"):
        reader.feed(pack(b"MGET", b"a", b"b", b"c"))


def test_a_declared_length_over_the_limit_is_refused_before_its_bytes_arrive() -> None:
    with pytest.raises(RespProtocolError, match="invalid bulk length"):
        _reader(max_request_bytes=1000).feed(b"*2\r\n$3\r\nGET\r\n$1001\r\n")


def test_a_request_over_the_size_limit_is_refused_once_a_header_declares_it() -> None:
    reader = _reader(max_request_bytes=100)
    wire = pack(b"MGET", *(b"k" * 30 for _ in range(3)))
    third = wire.index(b"$30", wire.index(b"$30", 20) + 1)  # its header ends 4 bytes later
    for byte in range(third + 4):  # byte by byte: 88 declared bytes so far, within 100
        reader.feed(wire[byte : byte + 1])
    with pytest.raises(RespProtocolError, match="request larger than 100 bytes"):
        reader.feed(wire[third + 4 : third + 5])  # 125 declared


def test_the_size_limit_is_per_request_not_per_pipeline() -> None:
    wire = INCR * 50
    assert len(_reader(max_request_bytes=len(INCR)).feed(wire)) == 50


@pytest.mark.parametrize(
    ("reply", "resp2", "resp3"),
    [
        (lambda r: r.null, b"$-1\r\n", b"_\r\n"),
        (lambda r: r.integer(-42), b":-42\r\n", b":-42\r\n"),
        (lambda r: r.bulk(b"12"), b"$2\r\n12\r\n", b"$2\r\n12\r\n"),
        (lambda r: r.simple("OK"), b"+OK\r\n", b"+OK\r\n"),
        (lambda r: r.array([r.integer(1), r.null]), b"*2\r\n:1\r\n$-1\r\n", b"*2\r\n:1\r\n_\r\n"),
        (
            lambda r: r.map([(r.text("proto"), r.integer(3))]),
            b"*2\r\n$5\r\nproto\r\n:3\r\n",
            b"%1\r\n$5\r\nproto\r\n:3\r\n",
        ),
    ],
)
def test_replies_in_each_protocol_version(reply: object, resp2: bytes, resp3: bytes) -> None:
    assert callable(reply)
    assert reply(Replies(2)) == resp2
    assert reply(Replies(3)) == resp3


def test_error_lines_keep_to_one_line() -> None:
    assert error_line("ERR bad\r\nthing") == b"-ERR bad  thing\r\n"


_PIECES = [
    b"*1\r\n", b"*2\r\n", b"*3\r\n", b"*0\r\n", b"*-1\r\n", b"*12\r\n", b"$0\r\n", b"$1\r\n",
    b"$2\r\n", b"$3\r\n", b"$-1\r\n", b"\r\n", b"a", b"*", b"$", b":1\r\n", b"+OK\r\n",
    b"%1\r\n", b"~1\r\n", b"(1\r\n", b"PING", b"INCR", b"\n", b"9",
]  # fmt: skip


def _outcome(reader: RequestReader, reads: list[bytes]) -> tuple[object, ...]:
    requests: list[list[bytes]] = []
    try:
        for read in reads:
            requests += reader.feed(read)
    except RespProtocolError as exc:
        return ("refused", str(exc))
    return ("read", requests, reader.in_request)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=24))
@example([b"*1\r\n", b"$2\r\n", b"*1\r\n", b"$0\r\n", b"\r\n"])  # an empty bulk string
@example([b"*0\r\n", b"$"])  # a type byte hiredis took and holds without data after it
def test_a_whole_read_gives_what_the_same_bytes_one_at_a_time_give(pieces: list[bytes]) -> None:
    # No single byte passes the fast way's scans (a '*' needs a digit and CRLF after it), so
    # one byte at a time is the exact way throughout.
    wire = b"".join(pieces)
    whole = _outcome(_reader(), [wire])
    assert whole == _outcome(_reader(), [wire[i : i + 1] for i in range(len(wire))])

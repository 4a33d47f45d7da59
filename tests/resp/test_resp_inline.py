"""Inline commands split as Redis splits them (quotes, escapes, unbalanced quotes)."""

from __future__ import annotations

import asyncio
import random
import socket
import subprocess
import time
from typing import TYPE_CHECKING

import hiredis
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from dcounter_node._resp_inline import split_inline
from dcounter_node._resp_limits import RespLimits
from dcounter_node._resp_wire import RequestReader, RespProtocolError

from .conftest import DEADLINE, redis_tool

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.conftest import SpawnNode

#: (line, its arguments) for lines Redis reads; every escape appears at least once.
SPLIT = [
    (b"", []),
    (b" \t ", []),
    (b"PING", [b"PING"]),
    (b"  INCRBY   a  5  ", [b"INCRBY", b"a", b"5"]),
    (b"GET\ta\r\tb", [b"GET", b"a", b"b"]),
    (b'GET "page views"', [b"GET", b"page views"]),
    (b"GET 'page views'", [b"GET", b"page views"]),
    (b'GET "" x', [b"GET", b"", b"x"]),
    (b"GET '' x", [b"GET", b"", b"x"]),
    (b'""', [b""]),
    (rb'"\n\r\t\b\a"', [b"\n\r\t\b\a"]),
    (rb'"a\\b\"c"', [b'a\\b"c']),
    (rb'"\x41\x7a\x00\xFF\xfe"', [b"Az\x00\xff\xfe"]),
    # \x without two hex digits, or any other escaped byte: the byte itself.
    (rb'"\xZZ" "\x4" "\q\ \'"', [b"xZZ", b"x4", b"q '"]),
    (rb"'a\'b' 'c\nd' 'e\\f'", [b"a'b", b"c\\nd", b"e\\\\f"]),
    (b'\'say "hi"\' "it\'s"', [b'say "hi"', b"it's"]),
    (b'"a b\tc\rd"', [b"a b\tc\rd"]),
    # A quote may start inside an argument; its closing quote ends the argument.
    (b'INCR a"b c" d', [b"INCR", b"ab c", b"d"]),
    (b"x'y z'\t\"w\"", [b"xy z", b"w"]),
    (b'"a"\x0bb', [b"a", b"b"]),
    # Vertical tab and form feed: blanks before an argument, kept inside one.
    (b"\x0b\x0cGET a\x0bb\x0c", [b"GET", b"a\x0bb\x0c"]),
    (b"\x0b'a'", [b"a"]),
    # A NUL byte is an ordinary byte here (Redis's C parser would stop at it).
    (b'a\x00b "c\x00d"', [b"a\x00b", b"c\x00d"]),
]

#: Lines whose quotes are unbalanced: never closed, or a closing quote not ending an argument.
UNBALANCED = [
    b'"abc',
    b"'abc",
    b'GET "a" "b',
    rb'"abc\"',
    b'"abc\\',
    rb"'abc\'",
    b'"a"b',
    b"'a'b",
    b'"a""b"',
    b"\"a\"'b'",
    b"a\"b\"c'd'",
    b'x "a"\x00',
]


@pytest.mark.parametrize(("line", "args"), SPLIT)
def test_a_line_is_split_as_redis_splits_it(line: bytes, args: list[bytes]) -> None:
    assert split_inline(line) == args


@pytest.mark.parametrize("line", UNBALANCED)
def test_unbalanced_quotes_are_found(line: bytes) -> None:
    assert split_inline(line) is None


def redis_cli_repr(arg: bytes) -> bytes:
    """``arg`` quoted as redis-cli prints a string (Redis's ``sdscatrepr``)."""
    named = {0x5C: b"\\\\", 0x22: b'\\"', 0x0A: b"\\n", 0x0D: b"\\r", 0x09: b"\\t"}
    named |= {0x07: b"\\a", 0x08: b"\\b"}
    out = [
        named.get(byte) or (bytes([byte]) if 0x20 <= byte < 0x7F else b"\\x%02x" % byte)
        for byte in arg
    ]
    return b'"' + b"".join(out) + b'"'


@given(st.lists(st.binary(max_size=20), max_size=8), st.sampled_from([b" ", b"  ", b"\t"]))
@example([b"", b"\\x41", b"'", b'"'], b" ")
def test_arguments_quoted_as_redis_cli_prints_them_read_back_the_same(
    args: list[bytes], separator: bytes
) -> None:
    assert split_inline(separator.join(map(redis_cli_repr, args))) == args


def _single_quotable(arg: bytes) -> bool:
    # A final backslash would escape the closing quote.
    return b"'" not in arg and not arg.endswith(b"\\")


@given(st.lists(st.binary(max_size=20).filter(_single_quotable), max_size=8))
def test_single_quoted_arguments_keep_every_byte(args: list[bytes]) -> None:
    assert split_inline(b" ".join(b"'" + arg + b"'" for arg in args)) == args


@given(st.binary(max_size=60))
@example(b"'\\'\\''")
def test_any_line_is_split_or_found_unbalanced(line: bytes) -> None:
    args = split_inline(line)
    assert args is None or all(isinstance(arg, bytes) for arg in args)
    if not any(quote in line for quote in (b'"', b"'")):
        assert args is not None  # only quotes unbalance a line


def _reader() -> RequestReader:
    return RequestReader(RespLimits())


def test_the_reader_reads_quoted_inline_commands() -> None:
    wire = b'INCRBY "page views" 5\r\nGET \'page views\'\nECHO "a\\r\\n"\r\n'
    assert _reader().feed(wire) == [
        [b"INCRBY", b"page views", b"5"],
        [b"GET", b"page views"],
        [b"ECHO", b"a\r\n"],
    ]


def test_a_quoted_empty_argument_reaches_the_command() -> None:
    assert _reader().feed(b'GET ""\r\n') == [[b"GET", b""]]


def test_only_the_line_ending_cr_is_dropped() -> None:
    # As Redis: the CR of CRLF is not part of the line, so a closing quote may precede it.
    assert _reader().feed(b"GET 'a'\r\n") == [[b"GET", b"a"]]


@pytest.mark.parametrize("line", [b'GET "a\r\n', b"GET 'a'b\r\n", b'GET "a\\"\n'])
def test_the_reader_refuses_unbalanced_quotes_with_redis_error(line: bytes) -> None:
    reader = _reader()
    assert reader.feed(b"PING\r\n") == [[b"PING"]]
    with pytest.raises(RespProtocolError, match=r"^unbalanced quotes in request$"):
        reader.feed(line)


def test_quoted_arguments_count_against_the_argument_limit() -> None:
    reader = RequestReader(RespLimits(max_arguments=3))
    assert reader.feed(b"MGET \"a b\" 'c'\r\n") == [[b"MGET", b"a b", b"c"]]
    with pytest.raises(RespProtocolError, match="invalid multibulk length"):
        reader.feed(b'MGET "a" "b" "c"\r\n')


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Path]:
    """A real ``redis-server`` on a Unix socket (no TCP port, no files), stopped after."""
    path = tmp_path / "redis.sock"
    options = ["--port", "0", "--unixsocket", str(path), "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(
        [redis_tool("redis-server"), *options, "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + DEADLINE
        while not path.exists():
            assert process.poll() is None, "redis-server exited"
            assert time.monotonic() < deadline, "redis-server did not open its socket"
            time.sleep(0.01)
        yield path
    finally:
        process.terminate()
        process.wait(DEADLINE)


def _ask_redis(path: Path, line: bytes) -> object:
    """Redis's reply to the inline command ``line`` (one connection each: an error closes it)."""
    reader = hiredis.Reader()
    with socket.socket(socket.AF_UNIX) as connection:
        connection.settimeout(DEADLINE)
        connection.connect(str(path))
        connection.sendall(line + b"\r\n")
        while (reply := reader.gets()) is False:
            data = connection.recv(65536)
            assert data, "redis-server closed the connection without a reply"
            reader.feed(data)
    return reply


def _random_lines(count: int) -> list[bytes]:
    """Short lines of the bytes that matter to splitting (seeded: the same every run)."""
    rng = random.Random(2026)
    alphabet = [b"a", b"f", b"x", b"4", b" ", b"\t", b"\r", b"\x0b", b'"', b"'", b"\\", b"\xff"]
    return [b"".join(rng.choices(alphabet, k=rng.randrange(1, 12))) for _ in range(count)]


def test_redis_server_splits_every_line_as_we_do(redis_server: Path) -> None:
    # EVAL answers the arguments after its script and key count: what Redis split them into.
    lines = [line for line, _ in SPLIT] + UNBALANCED + _random_lines(300)
    for line in lines:
        if b"\x00" in line:  # where we knowingly differ
            continue
        command = b'EVAL "return ARGV" 0 ' + line
        ours = split_inline(command)
        theirs = _ask_redis(redis_server, command)
        if ours is None:
            assert isinstance(theirs, hiredis.ReplyError), line
            assert str(theirs) == "ERR Protocol error: unbalanced quotes in request"
        else:
            assert theirs == ours[3:], line


@pytest.mark.slow
async def test_a_node_process_answers_a_quoted_inline_command(spawn_node: SpawnNode) -> None:
    redis_tool("redis-cli")
    node = await spawn_node(
        "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--in-memory", "--resp", "127.0.0.1:0"
    )
    await node.wait_ready()
    host, port = node.resp.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(b'INCRBY "page views" 5\r\nGET \'page views\'\r\nGET "page\\x20views"\r\n')
        expected = b":5\r\n$1\r\n5\r\n$1\r\n5\r\n"
        assert await asyncio.wait_for(reader.readexactly(len(expected)), DEADLINE) == expected
        writer.write(b'GET "page views\r\n')
        refusal = await asyncio.wait_for(reader.read(), DEADLINE)  # then the node closes
        assert refusal == b"-ERR Protocol error: unbalanced quotes in request\r\n"
    finally:
        writer.close()
        await writer.wait_closed()
    # redis-cli sends an array: the same key, named with its space.
    cli = await asyncio.create_subprocess_exec(
        redis_tool("redis-cli"),
        "-h",
        host,
        "-p",
        port,
        "GET",
        "page views",
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(cli.communicate(), DEADLINE)
    assert (cli.returncode, out) == (0, b"5\n")

"""The Redis commands, sans-IO: each request's exact reply, as Redis would phrase it."""

from __future__ import annotations

import pytest

from dcounter_crdt import MAX_COUNT
from dcounter_node._auth import Scope
from dcounter_node._resp_commands import RespSession
from dcounter_node._resp_scan import ScanCursors
from dcounter_node._resp_shared import RespBatch, RespShared

from .conftest import FakeCounters, parse_scan


def _session(
    counters: FakeCounters | None = None,
    *,
    tokens: dict[str, Scope] | None = None,
    health: str | None = None,
) -> RespSession:
    return RespSession(
        counters if counters is not None else FakeCounters(),
        RespShared(cursors=ScanCursors(first=1), port=6379),
        tokens=tokens.get if tokens is not None else None,
        health=(lambda: health) if health is not None else None,
    )


def _run(session: RespSession, *command: str | bytes) -> bytes:
    args = [part if isinstance(part, bytes) else part.encode() for part in command]
    batch = session.run([args])
    assert len(batch.replies) == 1
    return batch.replies[0]


def _counted(**values: int) -> FakeCounters:
    counters = FakeCounters()
    for name, value in values.items():
        if value > 0:
            counters.increment(name, value)
        else:
            counters.decrement(name, -value)
    return counters


@pytest.mark.parametrize(
    ("command", "reply"),
    [
        (("PING",), b"+PONG\r\n"),
        (("ping", "hi"), b"$2\r\nhi\r\n"),
        (("ECHO", "x"), b"$1\r\nx\r\n"),
        (("INCR", "a"), b":6\r\n"),
        (("INCR", "new"), b":1\r\n"),
        (("DECR", "a"), b":4\r\n"),
        (("INCRBY", "a", "10"), b":15\r\n"),
        (("INCRBY", "a", "-10"), b":-5\r\n"),
        (("DECRBY", "a", "7"), b":-2\r\n"),
        (("DECRBY", "a", "-7"), b":12\r\n"),
        (("INCRBY", "a", "0"), b":5\r\n"),
        (("GET", "a"), b"$1\r\n5\r\n"),
        (("GET", "minus"), b"$2\r\n-3\r\n"),
        (("GET", "nope"), b"$-1\r\n"),
        (("GET", b"\xff"), b"$-1\r\n"),
        (("MGET", "a", "nope", "minus"), b"*3\r\n$1\r\n5\r\n$-1\r\n$2\r\n-3\r\n"),
        (("EXISTS", "a", "nope", "a"), b":2\r\n"),
        (("TYPE", "a"), b"+string\r\n"),
        (("TYPE", "nope"), b"+none\r\n"),
        (("DBSIZE",), b":2\r\n"),
        (("SELECT", "0"), b"+OK\r\n"),
        (("SELECT", "1"), b"-ERR DB index is out of range\r\n"),
        (("QUIT",), b"+OK\r\n"),
        (("CLIENT", "SETNAME", "app"), b"+OK\r\n"),
        (("CLIENT", "SETINFO", "LIB-NAME", "redis-py"), b"+OK\r\n"),
        (("CLIENT", "SETINFO", "LIB-VER", "7.0"), b"+OK\r\n"),
        (("CLIENT", "GETNAME"), b"$-1\r\n"),
        (("COMMAND", "COUNT"), b":19\r\n"),
        (("COMMAND", "DOCS"), b"*0\r\n"),
        (("COMMAND", "INFO", "nope"), b"*1\r\n$-1\r\n"),
    ],
)
def test_command_replies(command: tuple[str | bytes, ...], reply: bytes) -> None:
    assert _run(_session(_counted(a=5, minus=-3)), *command) == reply


@pytest.mark.parametrize(
    ("command", "error"),
    [
        (("INCRBY", "a", "x"), "ERR value is not an integer or out of range"),
        (("INCRBY", "a", "+1"), "ERR value is not an integer or out of range"),
        (("INCRBY", "a", "01"), "ERR value is not an integer or out of range"),
        (("INCRBY", "a", " 1"), "ERR value is not an integer or out of range"),
        (("INCRBY", "a", str(2**63)), "ERR value is not an integer or out of range"),
        (("INCR",), "ERR wrong number of arguments for 'incr' command"),
        (("GET", "a", "b"), "ERR wrong number of arguments for 'get' command"),
        (("MGET",), "ERR wrong number of arguments for 'mget' command"),
        (("INCR", b"\xff"), "ERR counter names must be UTF-8 text"),
        (("FLUSHALL",), "ERR 'flushall' is not supported: dcounter counters are CRDTs"),
        (("HELLO", "4"), "NOPROTO unsupported protocol version"),
        (("AUTH", "secret"), "ERR AUTH <password> called without any password configured"),
        (("CLIENT", "SETNAME", "a b"), "ERR Client names cannot contain spaces"),
        (("CLIENT", "KILL", "x"), "ERR unknown subcommand or wrong number of arguments for 'KILL'"),
    ],
)
def test_command_errors(command: tuple[str | bytes, ...], error: str) -> None:
    reply = _run(_session(_counted(a=5)), *command)
    assert reply.startswith(b"-" + error.encode()), reply
    assert reply.endswith(b"\r\n")
    assert reply.count(b"\r\n") == 1


def test_set_and_del_explain_that_a_crdt_counter_cannot_be_overwritten() -> None:
    session = _session(_counted(a=5))
    for command in (("SET", "a", "1"), ("DEL", "a")):
        reply = _run(session, *command).decode()
        assert reply.startswith(f"-ERR '{command[0].lower()}' is not supported")
        assert "cannot be overwritten or deleted" in reply
    assert _run(session, "GET", "a") == b"$1\r\n5\r\n"


def test_an_unknown_command_is_named_with_its_first_arguments_as_redis_does() -> None:
    reply = _run(_session(), "FooBar", "x", "y\r\nz")
    assert reply == b"-ERR unknown command 'FooBar', with args beginning with: 'x' 'y  z' \r\n"


def test_values_beyond_signed_64_bits_answer_redis_overflow_error() -> None:
    counters = _counted(big=2**63 - 2)
    session = _session(counters)
    assert _run(session, "INCR", "big") == b":9223372036854775807\r\n"
    assert _run(session, "INCR", "big") == b"-ERR increment or decrement would overflow\r\n"
    assert _run(session, "DECRBY", "low", str(2**63 - 1)) == b":-9223372036854775807\r\n"
    assert _run(session, "DECRBY", "low", "2") == b"-ERR increment or decrement would overflow\r\n"
    assert counters.value("big") == 2**63 - 1
    assert counters.value("low") == -(2**63) + 1


def test_a_replica_count_past_its_uint64_limit_is_an_overflow_error() -> None:
    counters = _counted(worn=MAX_COUNT)
    counters.decrement("worn", MAX_COUNT)
    reply = _run(_session(counters), "INCR", "worn")
    assert reply.startswith(b"-ERR increment or decrement would overflow this replica's count")
    assert counters.value("worn") == 0


def test_writes_are_flagged_for_the_commit_and_reads_are_not() -> None:
    session = _session(_counted(a=1))
    batch = session.run(
        [[b"GET", b"a"], [b"INCR", b"a"], [b"INCRBY", b"a", b"x"], [b"DECR", b"b"], [b"PING"]]
    )
    assert batch == RespBatch(
        [
            b"$1\r\n1\r\n",
            b":2\r\n",
            b"-ERR value is not an integer or out of range\r\n",
            b":-1\r\n",
            b"+PONG\r\n",
        ],
        writes=[1, 3],
    )


def test_quit_ends_the_batch() -> None:
    batch = _session().run([[b"INCR", b"a"], [b"QUIT"], [b"INCR", b"a"]])
    assert batch == RespBatch([b":1\r\n", b"+OK\r\n"], writes=[0], quit=True)


def test_writes_are_refused_while_storage_fails() -> None:
    counters = _counted(a=1)
    session = _session(counters, health="disk full")
    assert _run(session, "INCR", "a") == b"-ERR not counted: storage is failing: disk full\r\n"
    assert _run(session, "GET", "a") == b"$1\r\n1\r\n"
    assert counters.value("a") == 1


def test_hello_3_switches_to_resp3() -> None:
    session = _session()
    reply = _run(session, "HELLO", "3")
    assert reply.startswith(b"%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n")
    assert b"$5\r\nproto\r\n:3\r\n" in reply
    assert _run(session, "GET", "nope") == b"_\r\n"
    assert _run(session, "HELLO", "2").startswith(b"*14\r\n")
    assert _run(session, "GET", "nope") == b"$-1\r\n"


def test_client_name_and_library_are_kept() -> None:
    session = _session()
    _run(session, "HELLO", "2", "SETNAME", "worker-1")
    _run(session, "CLIENT", "SETINFO", "LIB-NAME", "redis-py")
    assert _run(session, "CLIENT", "GETNAME") == b"$8\r\nworker-1\r\n"
    assert b"name=worker-1" in _run(session, "CLIENT", "INFO")
    assert b"lib-name=redis-py" in _run(session, "CLIENT", "INFO")


def test_info_reports_the_keyspace() -> None:
    reply = _run(_session(_counted(a=1, b=2)), "INFO", "keyspace")
    assert reply.endswith(b"# Keyspace\r\ndb0:keys=2,expires=0,avg_ttl=0\r\n\r\n")
    assert b"redis_version:" in _run(_session(), "INFO")


def test_command_info_describes_incr_for_clients() -> None:
    reply = _run(_session(), "COMMAND", "INFO", "incr")
    assert reply.startswith(b"*1\r\n*10\r\n$4\r\nincr\r\n:2\r\n*3\r\n+write\r\n")


# -- authentication with API tokens -------------------------------------------------------------

TOKENS = {"r-token": Scope.READ, "w-token": Scope.WRITE}


def test_commands_before_auth_get_noauth() -> None:
    session = _session(_counted(a=1), tokens=TOKENS)
    for command in (("GET", "a"), ("PING",), ("INCR", "a"), ("SCAN", "0")):
        assert _run(session, *command) == b"-NOAUTH Authentication required.\r\n"
    assert _run(session, "QUIT") == b"+OK\r\n"


def test_auth_takes_a_token_alone_or_with_the_default_user() -> None:
    for credentials in (("w-token",), ("default", "w-token")):
        session = _session(tokens=TOKENS)
        assert _run(session, "AUTH", *credentials) == b"+OK\r\n"
        assert _run(session, "INCR", "a") == b":1\r\n"


@pytest.mark.parametrize("credentials", [("nope",), ("bob", "w-token"), ("default", "")])
def test_a_wrong_token_is_wrongpass(credentials: tuple[str, ...]) -> None:
    session = _session(tokens=TOKENS)
    assert _run(session, "AUTH", *credentials) == (
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    )
    assert _run(session, "GET", "a").startswith(b"-NOAUTH")


def test_a_read_token_reads_but_may_not_count() -> None:
    session = _session(_counted(a=1), tokens=TOKENS)
    _run(session, "AUTH", "r-token")
    assert _run(session, "GET", "a") == b"$1\r\n1\r\n"
    assert _run(session, "INCR", "a") == (
        b"-NOPERM this API token may not run 'incr': it needs the write scope, and has read\r\n"
    )


def test_hello_authenticates_or_demands_auth() -> None:
    session = _session(tokens=TOKENS)
    assert _run(session, "HELLO", "3").startswith(b"-NOAUTH HELLO must be called")
    assert _run(session, "HELLO", "3", "AUTH", "default", "w-token").startswith(b"%7\r\n")
    assert _run(session, "INCR", "a") == b":1\r\n"


def test_a_revoked_token_stops_working_at_once() -> None:
    tokens = dict(TOKENS)
    session = _session(tokens=tokens)
    _run(session, "AUTH", "w-token")
    assert _run(session, "INCR", "a") == b":1\r\n"
    del tokens["w-token"]  # the token file reloaded without it (SIGHUP)
    assert _run(session, "INCR", "a") == b"-NOAUTH Authentication required.\r\n"


def test_auth_for_the_default_user_without_tokens_is_accepted_as_redis_does() -> None:
    assert _run(_session(), "AUTH", "default", "anything") == b"+OK\r\n"


# -- SCAN ----------------------------------------------------------------------------------------


def _scan_all(session: RespSession, *options: str) -> list[str]:
    """Follow the cursor from 0 back to 0; every name returned, in order."""
    cursor, names = "0", []
    for _ in range(1000):
        cursor, page = parse_scan(_run(session, "SCAN", cursor, *options))
        names += page
        if cursor == "0":
            return names
    raise AssertionError("SCAN never returned cursor 0")


def test_scan_visits_every_name_once_page_by_page() -> None:
    counters = _counted(**{f"k{i:03}": 1 for i in range(95)})
    assert _scan_all(_session(counters), "COUNT", "10") == sorted(counters.ups)


def test_scan_match_with_a_prefix_pattern() -> None:
    counters = _counted(**{f"page:{i}": 1 for i in range(30)}, other=1, pagination=1)
    names = _scan_all(_session(counters), "MATCH", "page:*", "COUNT", "7")
    assert names == sorted(f"page:{i}" for i in range(30))


def test_scan_match_with_a_glob_filters_names() -> None:
    counters = _counted(**{"a:views": 1, "b:views": 1, "b:clicks": 1, "c1": 1, "c2": 1})
    session = _session(counters)
    assert _scan_all(session, "MATCH", "*:views") == ["a:views", "b:views"]
    assert _scan_all(session, "MATCH", "c[2-9]") == ["c2"]


def test_scan_of_another_type_is_empty() -> None:
    assert _scan_all(_session(_counted(a=1)), "TYPE", "hash") == []


def test_scan_with_an_unknown_cursor_is_an_error() -> None:
    assert _run(_session(), "SCAN", "12345").startswith(b"-ERR invalid cursor")
    assert _run(_session(), "SCAN", "x") == b"-ERR invalid cursor\r\n"
    assert _run(_session(), "SCAN", "0", "COUNT", "0") == b"-ERR syntax error\r\n"

"""The Redis commands a node answers, sans-IO: requests in, encoded replies out.

:class:`RespSession` is one client connection's state (protocol version, authentication,
name) and runs its requests against a :class:`CounterBackend` (a node's
:class:`~dcounter_node._counters.Counters`). Counting is immediate; durability is the
caller's: :meth:`RespSession.run` says which replies acknowledge writes, and the server
sends them only once the node committed (one commit per batch of pipelined requests), or
replaces them with an error if it could not.

What Redis would answer is the guide: the same replies, error prefixes and wording where the
command exists here. Values are signed 64-bit integers to clients (Redis's overflow error
past that range); counter names are UTF-8 text.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Final

from dcounter_crdt import CountOverflowError, CRDTError
from dcounter_node._auth import Scope
from dcounter_node._errors import NodeError
from dcounter_node._resp_args import (
    INT64_MAX,
    INT64_MIN,
    CommandError,
    client_name,
    counter_name,
    parse_cursor,
    parse_integer,
)
from dcounter_node._resp_catalog import CRDT_REFUSED, RespCommand, command_info
from dcounter_node._resp_scan import compile_match
from dcounter_node._resp_shared import REDIS_VERSION, RespBatch, info_text
from dcounter_node._resp_wire import Replies, error_line

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from dcounter_node._resp_shared import CounterBackend, RespShared, TokenCheck

__all__ = ["RespSession"]

#: Largest page one SCAN call reads, whatever COUNT asks (COUNT is a hint in Redis too).
_MAX_SCAN_COUNT: Final = 10_000

_OVERFLOW: Final = "ERR increment or decrement would overflow"
_NOAUTH: Final = "NOAUTH Authentication required."
_WRONGPASS: Final = "WRONGPASS invalid username-password pair or user is disabled."
_CRDT: Final = (
    "ERR '{name}' is not supported: dcounter counters are CRDTs that only count, so a"
    " counter cannot be overwritten or deleted (use INCRBY and DECRBY)"
)
_OK: Final = b"+OK\r\n"


class RespSession:
    """One client connection: feed it requests with :meth:`run`, send what it returns.

    ``tokens`` (when the node has API tokens) turns authentication on: until ``AUTH`` or
    ``HELLO ... AUTH`` presents a token, commands get ``-NOAUTH``; a token's scope is checked
    again on every command, so a token removed from the file (SIGHUP) stops working at once.
    ``health`` says why writes must be refused (storage failing), or None.
    """

    def __init__(
        self,
        backend: CounterBackend,
        shared: RespShared,
        *,
        tokens: TokenCheck | None = None,
        health: Callable[[], str | None] | None = None,
        peer: str = "",
    ) -> None:
        self.backend = backend
        self._add_within = backend.add_within  # once: the INCR path's only backend call
        self.shared = shared
        self.replies = Replies(2)
        self.client_id = shared.client_id()
        self.name = ""
        self.peer = peer
        self.library = ("", "")
        self._tokens = tokens
        self._token: str | None = None
        self._health = health
        self._wrote = False

    @property
    def protocol(self) -> int:
        return 3 if self.replies.resp3 else 2

    def run(self, requests: Sequence[list[bytes]]) -> RespBatch:
        """Run ``requests`` in order (each a list of byte-string arguments)."""
        replies: list[bytes] = []
        writes: list[int] = []
        self.shared.commands_processed += len(requests)
        spellings = _SPELLINGS
        authenticating = self._tokens is not None
        for args in requests:
            # Clients send names in one case or the other: no lower() for those.
            command = spellings.get(args[0])
            try:
                if command is None:
                    name = args[0].lower()
                    command = _COMMANDS.get(name)
                    if command is None:
                        replies.append(self._unknown(name, args))
                        continue
                if authenticating:
                    self._authorize(command)
                arity = command.arity
                if len(args) != arity and (arity > 0 or len(args) < -arity):
                    raise CommandError(
                        f"ERR wrong number of arguments for '{command.name}' command"
                    )
                reply = command.handler(self, args)
            except CommandError as exc:
                replies.append(error_line(str(exc)))
                continue
            if self._wrote:
                self._wrote = False
                writes.append(len(replies))
            replies.append(reply)
            if command is _QUIT:
                return RespBatch(replies, writes, quit=True)
        return RespBatch(replies, writes)

    # -- dispatch helpers ------------------------------------------------------------------

    def _authorize(self, command: RespCommand) -> None:
        if command.name in ("auth", "hello", "quit"):
            return
        scope = self._scope()
        if scope is None:
            raise CommandError(_NOAUTH)
        needed = command.scope
        if needed is not None and scope < needed:
            raise CommandError(
                f"NOPERM this API token may not run '{command.name}': it needs the"
                f" {needed.label} scope, and has {scope.label}"
            )

    def _scope(self) -> Scope | None:
        if self._token is None or self._tokens is None:
            return None
        return self._tokens(self._token)

    def _unknown(self, name: bytes, args: list[bytes]) -> bytes:
        text = name.decode("utf-8", "replace")
        if text in CRDT_REFUSED:
            return error_line(_CRDT.format(name=text))
        shown = ""
        for arg in args[1:]:
            if len(shown) >= 128:
                break
            shown += "'" + arg.decode("utf-8", "replace")[: 128 - len(shown)] + "' "
        original = args[0].decode("utf-8", "replace")[:128]
        return error_line(f"ERR unknown command '{original}', with args beginning with: {shown}")

    # -- counting ----------------------------------------------------------------------------

    def _incr(self, args: list[bytes]) -> bytes:
        return self._add(args[1], 1)

    def _decr(self, args: list[bytes]) -> bytes:
        return self._add(args[1], -1)

    def _incrby(self, args: list[bytes]) -> bytes:
        return self._add(args[1], parse_integer(args[2]))

    def _decrby(self, args: list[bytes]) -> bytes:
        by = parse_integer(args[2])
        if by == INT64_MIN:
            raise CommandError("ERR decrement would overflow")
        return self._add(args[1], -by)

    def _add(self, key: bytes, delta: int) -> bytes:
        try:
            name = key.decode()
        except UnicodeDecodeError:
            name = counter_name(key)  # raises the error clients see
        if self._health is not None and (problem := self._health()) is not None:
            raise CommandError(f"ERR not counted: storage is failing: {problem}")
        try:
            value = self._add_within(name, delta, INT64_MIN, INT64_MAX)
        except CountOverflowError:
            raise CommandError(
                f"{_OVERFLOW} this replica's count (at most 2**64-1 per replica)"
            ) from None
        except CRDTError as exc:  # a name past the node's key limits
            raise CommandError(f"ERR {exc}") from None
        except NodeError as exc:  # closed, or not started yet
            raise CommandError(f"ERR node is not running: {exc}") from None
        if value is None:
            raise CommandError(_OVERFLOW)
        if delta:  # Redis answers INCRBY 0 with the value; nothing counted, no commit
            self._wrote = True
        return b":%d\r\n" % value

    # -- reading -----------------------------------------------------------------------------

    def _value_reply(self, key: bytes) -> bytes:
        try:
            name = key.decode()
        except UnicodeDecodeError:  # never counted: names are UTF-8
            return self.replies.null
        if name not in self.backend:
            return self.replies.null
        return Replies.bulk(b"%d" % self.backend.value(name))

    def _get(self, args: list[bytes]) -> bytes:
        return self._value_reply(args[1])

    def _mget(self, args: list[bytes]) -> bytes:
        return Replies.array([self._value_reply(key) for key in args[1:]])

    def _exists(self, args: list[bytes]) -> bytes:
        backend = self.backend
        found = 0
        for key in args[1:]:
            with contextlib.suppress(UnicodeDecodeError):  # never counted: names are UTF-8
                found += key.decode() in backend
        return Replies.integer(found)

    def _type(self, args: list[bytes]) -> bytes:
        try:
            held = args[1].decode() in self.backend
        except UnicodeDecodeError:
            held = False
        return b"+string\r\n" if held else b"+none\r\n"

    def _dbsize(self, args: list[bytes]) -> bytes:
        return Replies.integer(len(self.backend))

    def _scan(self, args: list[bytes]) -> bytes:
        cursor = parse_cursor(args[1])
        pattern, count, type_name = "*", 10, "string"
        options = args[2:]
        if len(options) % 2:
            raise CommandError("ERR syntax error")
        for option, value in zip(options[::2], options[1::2], strict=True):
            match option.lower():
                case b"match":
                    pattern = value.decode("utf-8", "replace")
                case b"count":
                    count = parse_integer(value)
                    if count < 1:
                        raise CommandError("ERR syntax error")
                case b"type":
                    type_name = value.decode("utf-8", "replace").lower()
                case _:
                    raise CommandError("ERR syntax error")
        after: str | None = None
        if cursor:
            after = self.shared.cursors.resume(cursor)
            if after is None:
                raise CommandError(
                    "ERR invalid cursor (unknown, or forgotten since: start the scan again at 0)"
                )
        if type_name != "string":  # every counter is a string to Redis clients
            return Replies.array([Replies.bulk(b"0"), Replies.array([])])
        prefix, regex = compile_match(pattern)
        limit = min(count, _MAX_SCAN_COUNT)
        page = self.backend.names(prefix, after=after, limit=limit)
        following = self.shared.cursors.save(page[-1]) if len(page) >= limit else 0
        if regex is not None:
            page = [name for name in page if regex.fullmatch(name)]
        return Replies.array(
            [Replies.bulk(b"%d" % following), Replies.array([Replies.text(n) for n in page])]
        )

    # -- connection ----------------------------------------------------------------------------

    def _ping(self, args: list[bytes]) -> bytes:
        if len(args) > 2:
            raise CommandError("ERR wrong number of arguments for 'ping' command")
        return Replies.bulk(args[1]) if len(args) == 2 else b"+PONG\r\n"

    def _echo(self, args: list[bytes]) -> bytes:
        return Replies.bulk(args[1])

    def _select(self, args: list[bytes]) -> bytes:
        try:
            index = parse_integer(args[1])
        except CommandError:
            raise CommandError("ERR invalid DB index") from None
        if index != 0:
            raise CommandError("ERR DB index is out of range")
        return _OK

    def _quit(self, args: list[bytes]) -> bytes:
        return _OK

    def _auth(self, args: list[bytes]) -> bytes:
        if len(args) > 3:
            raise CommandError("ERR syntax error")
        self._authenticate(args[1:])
        return _OK

    def _authenticate(self, credentials: list[bytes]) -> None:
        """AUTH's arguments: ``token``, or ``default token``; CommandError if refused."""
        user = credentials[0] if len(credentials) == 2 else b"default"
        token = credentials[-1].decode("utf-8", "replace")
        if self._tokens is None:
            if len(credentials) == 1:
                raise CommandError(
                    "ERR AUTH <password> called without any password configured for the"
                    " default user. Are you sure your configuration is correct?"
                )
            if user != b"default":
                raise CommandError(_WRONGPASS)
            return
        if user != b"default" or self._tokens(token) is None:
            raise CommandError(_WRONGPASS)
        self._token = token

    def _hello(self, args: list[bytes]) -> bytes:
        protocol = self.protocol
        options = args[1:]
        if options:
            try:
                protocol = parse_integer(options[0])
            except CommandError:
                raise CommandError(
                    "ERR Protocol version is not an integer or out of range"
                ) from None
            if protocol not in (2, 3):
                raise CommandError("NOPROTO unsupported protocol version")
            options = options[1:]
        name: str | None = None
        while options:
            option = options[0].lower()
            if option == b"auth" and len(options) >= 3:
                self._authenticate(options[1:3])
                options = options[3:]
            elif option == b"setname" and len(options) >= 2:
                name = client_name(options[1])
                options = options[2:]
            else:
                raise CommandError(
                    f"ERR Syntax error in HELLO option '{options[0].decode('utf-8', 'replace')}'"
                )
        if self._tokens is not None and self._scope() is None:
            raise CommandError(
                "NOAUTH HELLO must be called with the client already authenticated, otherwise"
                " the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the"
                " client and select the RESP protocol version at the same time"
            )
        if name is not None:
            self.name = name
        self.replies = Replies(protocol)
        text = Replies.text
        return self.replies.map(
            [
                (text("server"), text("redis")),
                (text("version"), text(REDIS_VERSION)),
                (text("proto"), Replies.integer(protocol)),
                (text("id"), Replies.integer(self.client_id)),
                (text("mode"), text("standalone")),
                (text("role"), text("master")),
                (text("modules"), Replies.array([])),
            ]
        )

    def _client(self, args: list[bytes]) -> bytes:
        sub = args[1].lower()
        if sub == b"setname" and len(args) == 3:
            self.name = client_name(args[2])
            return _OK
        if sub == b"getname" and len(args) == 2:
            return Replies.text(self.name) if self.name else self.replies.null
        if sub == b"id" and len(args) == 2:
            return Replies.integer(self.client_id)
        if sub == b"setinfo" and len(args) == 4:
            attribute = args[2].lower()
            value = args[3].decode("utf-8", "replace")
            if attribute == b"lib-name":
                self.library = (value, self.library[1])
            elif attribute == b"lib-ver":
                self.library = (self.library[0], value)
            else:
                shown = args[2].decode("utf-8", "replace")
                raise CommandError(f"ERR Unrecognized option '{shown}'")
            return _OK
        if sub == b"info" and len(args) == 2:
            return Replies.text(self.describe() + "\n")
        shown = args[1].decode("utf-8", "replace")[:128]
        raise CommandError(
            f"ERR unknown subcommand or wrong number of arguments for '{shown}'. Try CLIENT HELP."
        )

    def describe(self) -> str:
        """One line about this client, as ``CLIENT INFO`` shows it."""
        return (
            f"id={self.client_id} addr={self.peer} name={self.name} db=0"
            f" resp={self.protocol} lib-name={self.library[0]} lib-ver={self.library[1]}"
        )

    def _info(self, args: list[bytes]) -> bytes:
        wanted = {arg.decode("utf-8", "replace").lower() for arg in args[1:]}
        return Replies.text(info_text(self.shared, len(self.backend), wanted))

    def _command(self, args: list[bytes]) -> bytes:
        if len(args) == 1:
            return Replies.array([command_info(c) for c in _COMMANDS.values()])
        sub = args[1].lower()
        if sub == b"count" and len(args) == 2:
            return Replies.integer(len(_COMMANDS))
        if sub == b"list":
            return Replies.array([Replies.bulk(name) for name in _COMMANDS])
        if sub == b"info":
            found = [_COMMANDS.get(arg.lower()) for arg in args[2:]]
            null = self.replies.null
            return Replies.array([null if c is None else command_info(c) for c in found])
        if sub == b"docs":  # no documentation here: redis-cli then uses its own help
            return self.replies.map([])
        shown = args[1].decode("utf-8", "replace")[:128]
        raise CommandError(
            f"ERR unknown subcommand or wrong number of arguments for '{shown}'. Try COMMAND HELP."
        )


_R, _W = Scope.READ, Scope.WRITE
_WRITE = ("write", "denyoom", "fast")
_READ = ("readonly", "fast")
_CONN = ("noscript", "loading", "stale", "fast")
_S = RespSession
_COMMANDS: Final[dict[bytes, RespCommand]] = {
    c.name.encode(): c
    for c in (
        RespCommand("incr", 2, _S._incr, _WRITE, ("@write", "@string", "@fast"), (1, 1, 1), _W),
        RespCommand("decr", 2, _S._decr, _WRITE, ("@write", "@string", "@fast"), (1, 1, 1), _W),
        RespCommand("incrby", 3, _S._incrby, _WRITE, ("@write", "@string", "@fast"), (1, 1, 1), _W),
        RespCommand("decrby", 3, _S._decrby, _WRITE, ("@write", "@string", "@fast"), (1, 1, 1), _W),
        RespCommand("get", 2, _S._get, _READ, ("@read", "@string", "@fast"), (1, 1, 1), _R),
        RespCommand("mget", -2, _S._mget, _READ, ("@read", "@string", "@fast"), (1, -1, 1), _R),
        RespCommand(
            "exists", -2, _S._exists, _READ, ("@keyspace", "@read", "@fast"), (1, -1, 1), _R
        ),
        RespCommand("type", 2, _S._type, _READ, ("@keyspace", "@read", "@fast"), (1, 1, 1), _R),
        RespCommand("scan", -2, _S._scan, ("readonly",), ("@keyspace", "@read", "@slow"), scope=_R),
        RespCommand("dbsize", 1, _S._dbsize, _READ, ("@keyspace", "@read", "@fast"), scope=_R),
        RespCommand("info", -1, _S._info, ("loading", "stale"), ("@slow", "@dangerous"), scope=_R),
        RespCommand("ping", -1, _S._ping, ("fast",), ("@fast", "@connection")),
        RespCommand("echo", 2, _S._echo, ("fast",), ("@fast", "@connection")),
        RespCommand("select", 2, _S._select, _CONN, ("@keyspace", "@fast")),
        RespCommand("client", -2, _S._client, _CONN, ("@slow", "@connection")),
        RespCommand("command", -1, _S._command, ("loading", "stale"), ("@slow", "@connection")),
        RespCommand("hello", -1, _S._hello, _CONN, ("@fast", "@connection")),
        RespCommand("auth", -2, _S._auth, _CONN, ("@fast", "@connection")),
        RespCommand("quit", -1, _S._quit, _CONN, ("@fast", "@connection")),
    )
}

#: Every command by its lower- and upper-case name (what clients send), looked up first.
_SPELLINGS: Final = {
    spelling: c for name, c in _COMMANDS.items() for spelling in (name, name.upper())
}
_QUIT: Final = _COMMANDS[b"quit"]

"""API token policy as pure code: the token file, route scopes, decisions, exposure."""

from __future__ import annotations

import dataclasses
import logging
import tomllib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

from dcounter_node import ConfigError, Node, create_app
from dcounter_node._auth import (
    ROUTE_SCOPES,
    ApiTokens,
    Decision,
    RefusalLog,
    Scope,
    decide,
    parse_tokens,
    required_scope,
)
from dcounter_node._cli import settings_from_args
from dcounter_node._membership import MembershipConfig
from dcounter_node._membership_service import MembershipService
from dcounter_node._security import exposure_problems, https_files, is_loopback
from dcounter_node._settings import NodeSettings, parse_config
from dcounter_protocol._tcp import TCPTransport

if TYPE_CHECKING:
    from pathlib import Path

READ_TOKEN = "r-3f9a1c0d5e7b"
WRITE_TOKEN = "w-8b2e4d6f0a1c"
ADMIN_TOKEN = "a-1d3f5b7e9c0a"


# -- the token file ---------------------------------------------------------------------------


def test_token_file_lines_are_scope_then_token_with_comments_and_blanks() -> None:
    text = f"# ops tokens\n\nread {READ_TOKEN}\n  WRITE   {WRITE_TOKEN}  \nadmin {ADMIN_TOKEN}\n"
    assert parse_tokens(text) == [
        (Scope.READ, READ_TOKEN),
        (Scope.WRITE, WRITE_TOKEN),
        (Scope.ADMIN, ADMIN_TOKEN),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("read abc\nwrite\n", "line 2: expected SCOPE TOKEN"),
        ("read abc\nwrite a b\n", "line 2: expected SCOPE TOKEN"),
        ("\n# c\nowner abc\n", "line 3: unknown scope 'owner'"),
        ("read abc\nadmin abc\n", "line 2: the same token is already on line 1"),
        ("read ab\x7fc\n", "line 1: the token must be printable ASCII"),
        ("read tök\n", "line 1: the token must be printable ASCII"),
        ("# nothing\n\n", "no tokens"),
    ],
)
def test_a_bad_token_file_names_the_line_and_never_echoes_the_token(
    text: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        parse_tokens(text, source="tokens.txt")
    assert "tokens.txt" in str(caught.value)
    assert "abc" not in str(caught.value)


def test_a_token_file_others_may_read_is_loaded_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"read {READ_TOKEN}\n")
    path.chmod(0o600)
    with caplog.at_level(logging.WARNING, logger="dcounter_node._auth"):
        ApiTokens.load(path)
    assert caplog.records == []
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="dcounter_node._auth"):
        tokens = ApiTokens.load(path)
    assert "can be read by other users" in caplog.text
    assert tokens.scope_of(f"Bearer {READ_TOKEN}") is Scope.READ


def test_an_unreadable_token_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read token file"):
        ApiTokens.load(tmp_path / "missing")


# -- tokens -----------------------------------------------------------------------------------


@pytest.fixture
def tokens() -> ApiTokens:
    return ApiTokens(
        [(Scope.READ, READ_TOKEN), (Scope.WRITE, WRITE_TOKEN), (Scope.ADMIN, ADMIN_TOKEN)]
    )


@pytest.mark.parametrize(
    ("header", "scope"),
    [
        (f"Bearer {READ_TOKEN}", Scope.READ),
        (f"bearer {WRITE_TOKEN}", Scope.WRITE),
        (f"Bearer   {ADMIN_TOKEN} ", Scope.ADMIN),
        (None, None),
        ("", None),
        ("Bearer", None),
        ("Bearer ", None),
        (f"Basic {READ_TOKEN}", None),
        (READ_TOKEN, None),
        (f"Bearer {READ_TOKEN}x", None),
        (f"Bearer {READ_TOKEN[:-1]}", None),
    ],
)
def test_the_authorization_header_gives_the_token_scope(
    tokens: ApiTokens, header: str | None, scope: Scope | None
) -> None:
    assert tokens.scope_of(header) == scope


def test_reload_swaps_tokens_and_a_bad_file_keeps_the_old_ones(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"read {READ_TOKEN}\n")
    tokens = ApiTokens.load(path)
    path.write_text(f"write {WRITE_TOKEN}\n")
    assert tokens.reload()
    assert tokens.scope_of(f"Bearer {WRITE_TOKEN}") is Scope.WRITE
    assert tokens.scope_of(f"Bearer {READ_TOKEN}") is None

    path.write_text(f"write {WRITE_TOKEN}\nsuperuser {ADMIN_TOKEN}\n")
    with caplog.at_level(logging.INFO, logger="dcounter_node._auth"):
        assert not tokens.reload()
    assert tokens.scope_of(f"Bearer {WRITE_TOKEN}") is Scope.WRITE
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "line 2" in errors[0].getMessage()
    assert ADMIN_TOKEN not in caplog.text
    assert WRITE_TOKEN not in caplog.text


# -- scopes and decisions ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "route", "scope"),
    [
        ("GET", "/health", None),
        ("HEAD", "/health", None),
        ("GET", "/", None),
        ("GET", "/dashboard/{name}", None),
        ("GET", "/counter", Scope.READ),
        ("HEAD", "/counter", Scope.READ),
        ("GET", "/counter/watch", Scope.READ),
        ("GET", "/metrics", Scope.READ),
        ("GET", "/cluster", Scope.READ),
        ("GET", "/peers", Scope.READ),
        ("POST", "/increment", Scope.WRITE),
        ("POST", "/decrement", Scope.WRITE),
        ("POST", "/peers", Scope.ADMIN),
        ("DELETE", "/peers/{addr}", Scope.ADMIN),
        # Another method on a known route only earns a 405; an unknown path a 404.
        ("PUT", "/counter", Scope.READ),
        ("POST", "/health", Scope.READ),
        ("GET", "/{tail}", Scope.READ),
        # A route nobody gave a row: closed to all but admin.
        ("GET", "/debug/state", Scope.ADMIN),
    ],
)
def test_each_route_needs_its_scope(method: str, route: str, scope: Scope | None) -> None:
    assert required_scope(method, route) is scope


async def test_every_route_of_the_api_has_a_row_in_the_scope_table() -> None:
    node = Node(TCPTransport("127.0.0.1:0"))
    members = MembershipService(node, seeds=(), static_peers=(), config=MembershipConfig())
    app = create_app(node, members=members)
    routes = {resource.canonical for resource in app.router.resources()}
    assert routes == set(ROUTE_SCOPES)


@pytest.mark.parametrize(
    ("required", "presented", "decision"),
    [
        (None, None, Decision.ALLOW),
        (Scope.READ, None, Decision.UNAUTHENTICATED),
        (Scope.ADMIN, None, Decision.UNAUTHENTICATED),
        (Scope.READ, Scope.READ, Decision.ALLOW),
        (Scope.READ, Scope.ADMIN, Decision.ALLOW),
        (Scope.WRITE, Scope.READ, Decision.FORBIDDEN),
        (Scope.WRITE, Scope.WRITE, Decision.ALLOW),
        (Scope.ADMIN, Scope.WRITE, Decision.FORBIDDEN),
        (Scope.ADMIN, Scope.ADMIN, Decision.ALLOW),
    ],
)
def test_decision_from_required_and_presented_scope(
    required: Scope | None, presented: Scope | None, decision: Decision
) -> None:
    assert decide(required, presented) is decision


# -- exposure and HTTPS settings --------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.0.3", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("node-a.internal", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_loopback_listeners_are_not_exposed_whatever_protects_them() -> None:
    assert (
        exposure_problems(
            gossip="127.0.0.1:7001",
            gossip_tls=False,
            http="[::1]:8001",
            https=False,
            tokens=False,
        )
        == []
    )


def test_exposure_names_each_open_listener_and_what_it_lacks() -> None:
    problems = exposure_problems(
        gossip="0.0.0.0:7001", gossip_tls=False, http="10.0.0.5:8001", https=True, tokens=False
    )
    assert len(problems) == 2
    assert "gossip listens on 0.0.0.0:7001 without TLS" in problems[0]
    assert problems[1] == "the HTTP API listens on 10.0.0.5:8001 without API tokens"


def test_an_api_with_https_and_tokens_and_tls_gossip_is_not_exposed() -> None:
    assert (
        exposure_problems(
            gossip="0.0.0.0:7001", gossip_tls=True, http="0.0.0.0:8001", https=True, tokens=True
        )
        == []
    )


def test_https_files_need_both_cert_and_key() -> None:
    assert https_files(NodeSettings()) is None
    with pytest.raises(ConfigError, match="go together"):
        https_files(NodeSettings(http_tls_cert="c.pem"))
    with pytest.raises(ConfigError, match="--http-tls-ca needs HTTPS"):
        https_files(NodeSettings(http_tls_ca="ca.pem"))
    files = https_files(NodeSettings(http_tls_cert="c.pem", http_tls_key="k.pem"))
    assert files is not None
    assert (files.cert, files.key, files.client_ca) == ("c.pem", "k.pem", None)


@dataclass(frozen=True)
class _WithGossipTLS(NodeSettings):
    # The gossip TLS settings (issue 13's other half) as NodeSettings will carry them.
    tls_cert: str | None = None
    tls_key: str | None = None


def test_https_defaults_to_the_gossip_certificate_and_http_flags_win() -> None:
    gossip = _WithGossipTLS(tls_cert="gossip.pem", tls_key="gossip.key")
    files = https_files(gossip)
    assert files is not None
    assert (files.cert, files.key) == ("gossip.pem", "gossip.key")
    own = dataclasses.replace(gossip, http_tls_cert="web.pem", http_tls_key="web.key")
    files = https_files(own)
    assert files is not None
    assert (files.cert, files.key) == ("web.pem", "web.key")


def test_the_security_settings_come_from_toml_and_flags_alike() -> None:
    document = tomllib.loads(
        'api_tokens = "tokens.txt"\nrequire_auth = true\n'
        'http_tls_cert = "c.pem"\nhttp_tls_key = "k.pem"\nhttp_tls_ca = "ca.pem"\n'
    )
    settings = parse_config(document).settings()
    assert (settings.api_tokens, settings.require_auth) == ("tokens.txt", True)
    assert (settings.http_tls_cert, settings.http_tls_key, settings.http_tls_ca) == (
        "c.pem",
        "k.pem",
        "ca.pem",
    )
    assert settings_from_args(settings.to_argv()) == settings
    with pytest.raises(ConfigError, match="api_tokens: expected a file path"):
        parse_config({"api_tokens": ""})


def test_refusals_are_logged_at_most_once_a_minute_with_a_count_of_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    refusals = RefusalLog(interval=60.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="dcounter_node._auth"):
        refusals.record(Decision.UNAUTHENTICATED, "POST", "/increment", "10.0.0.7")
        for second in (1.0, 30.0, 59.0):
            now[0] = 100.0 + second
            refusals.record(Decision.FORBIDDEN, "DELETE", "/peers/x:1", "10.0.0.8")
        now[0] = 160.0
        refusals.record(Decision.FORBIDDEN, "POST", "/peers", None)
    assert [record.getMessage() for record in caplog.records] == [
        "refused POST /increment from 10.0.0.7 (401, no valid API token)",
        "refused POST /peers from unknown (403, token scope);"
        " 3 more refused since the last such line",
    ]

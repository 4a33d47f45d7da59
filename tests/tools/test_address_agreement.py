"""Every layer that takes an address applies the same rules (dcounter_protocol.parse_address).

Before there was one parser, ``PeerManager.add`` accepted ``"::1:80"`` and a 250-character
host that the node's settings and the transport rejected: a peer that could never be dialled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from dcounter_node import ConfigError, InvalidPeerAddressError, PeerManager
from dcounter_node._settings import parse_address as parse_setting
from dcounter_protocol import InvalidOptionError, TCPTransport, parse_address
from dcounter_tools._address import split_address
from dcounter_tools.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Callable

DISAGREED = [
    pytest.param("::1:80", id="unbracketed-ipv6"),
    pytest.param("a" * 250 + ":80", id="250-char-host"),
    pytest.param("[]:80", id="empty-brackets"),
    pytest.param("[x]:80", id="bracketed-name"),
    pytest.param("h ost:80", id="space-inside"),
    pytest.param("h:\uff18\uff10", id="non-ascii-port"),
]


def _protocol(text: str) -> None:
    parse_address(text)


def _settings(text: str) -> None:
    parse_setting(text)


def _peers(text: str) -> None:
    PeerManager().add(text)


def _tools(text: str) -> None:
    split_address(text)


def _transport(text: str) -> None:
    TCPTransport(text)


REJECTERS: list[tuple[Callable[[str], None], type[Exception]]] = [
    (_protocol, InvalidOptionError),
    (_transport, InvalidOptionError),
    (_settings, ConfigError),
    (_peers, InvalidPeerAddressError),
    (_tools, UsageError),
]


@pytest.mark.parametrize("text", DISAGREED)
@pytest.mark.parametrize(
    ("reject", "error"), REJECTERS, ids=["protocol", "transport", "settings", "peers", "tools"]
)
def test_every_layer_rejects_what_the_parser_rejects(
    text: str, reject: Callable[[str], None], error: type[Exception]
) -> None:
    with pytest.raises(error):
        reject(text)


@pytest.mark.parametrize("text", ["127.0.0.1:7946", "[::1]:7946", "node-2.local:80"])
def test_every_layer_accepts_a_dialable_address(text: str) -> None:
    parse_setting(text)
    assert text in PeerManager(peers=[text])
    assert split_address(text) == parse_address(text)
    TCPTransport(text)

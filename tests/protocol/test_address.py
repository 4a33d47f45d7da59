"""The one address parser: ``host:port`` or ``[v6]:port``, at most 255 UTF-8 bytes."""

from __future__ import annotations

import pytest

from dcounter_protocol import (
    FRAME_OVERHEAD,
    MAX_ADDRESS_LENGTH,
    InvalidOptionError,
    LocalProtocolError,
    MalformedAddressError,
    format_address,
    parse_address,
)

LONGEST_HOST = "a" * 59 + ("." + "a" * 61) * 3  # 245 characters of valid labels


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("127.0.0.1:7946", ("127.0.0.1", 7946), id="ipv4"),
        pytest.param("node-1.example.org:80", ("node-1.example.org", 80), id="dns-name"),
        pytest.param("under_score:1", ("under_score", 1), id="underscore"),
        pytest.param("[::1]:7946", ("::1", 7946), id="ipv6-bracketed"),
        pytest.param("[fe80::1%eth0]:80", ("fe80::1%eth0", 80), id="ipv6-scoped"),
        pytest.param("localhost:0", ("localhost", 0), id="port-zero"),
        pytest.param("h:65535", ("h", 65535), id="top-port"),
        pytest.param(f"{LONGEST_HOST}:65535", (LONGEST_HOST, 65535), id="251-bytes"),
    ],
)
def test_valid_addresses_split_into_host_and_port(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize(
    ("text", "why"),
    [
        pytest.param("", "HOST:PORT", id="empty"),
        pytest.param("no-port", "HOST:PORT", id="no-port"),
        pytest.param(":80", "HOST:PORT", id="no-host"),
        pytest.param("::1:80", "need brackets", id="unbracketed-ipv6"),
        pytest.param("[::1]80", r"\[IPV6\]:PORT", id="bracket-without-colon"),
        pytest.param("[]:80", "not an IPv6 address", id="empty-brackets"),
        pytest.param("[nothost]:80", "not an IPv6 address", id="bracketed-name"),
        pytest.param("h:99999", "0 to 65535", id="port-too-big"),
        pytest.param("h:-1", "0 to 65535", id="negative-port"),
        pytest.param("h:\uff18\uff10", "0 to 65535", id="non-ascii-digits"),
        pytest.param("h ost:80", "host name", id="space"),
        pytest.param(" h:80", "host name", id="leading-space"),
        pytest.param("a" * 250 + ":1", "host name", id="250-char-label"),
        pytest.param("a" * 254 + ":1", "at most 255", id="256-bytes"),
        pytest.param("\udc80:1", "UTF-8", id="lone-surrogate"),
    ],
)
def test_malformed_addresses_say_what_is_wrong(text: str, why: str) -> None:
    with pytest.raises(MalformedAddressError, match=why) as caught:
        parse_address(text)
    assert isinstance(caught.value, InvalidOptionError | ValueError | LocalProtocolError)


def test_port_zero_is_refused_for_an_address_to_dial() -> None:
    with pytest.raises(MalformedAddressError, match="port 0"):
        parse_address("127.0.0.1:0", allow_port_zero=False)


@pytest.mark.parametrize(
    ("host", "port", "text"),
    [("127.0.0.1", 1, "127.0.0.1:1"), ("::1", 2, "[::1]:2"), ("[::1]", 3, "[::1]:3")],
)
def test_format_brackets_ipv6_hosts_once(host: str, port: int, text: str) -> None:
    assert format_address(host, port) == text


@pytest.mark.parametrize("text", ["127.0.0.1:7946", "[::1]:80", "name:0"])
def test_format_undoes_parse(text: str) -> None:
    assert format_address(*parse_address(text)) == text


def test_frame_overhead_is_the_length_byte_and_the_longest_address() -> None:
    assert (MAX_ADDRESS_LENGTH, FRAME_OVERHEAD) == (255, 256)

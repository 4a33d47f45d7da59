"""Setting values: defaults, the parsers that check each kind of value, and the row type.

Every parser takes what a TOML file holds (``_x``) or what a flag's text is (``_x_text``) and
returns the checked value, or raises :class:`ConfigError` saying what was expected.
:class:`SettingSpec` ties one setting's key, flag, help and parsers together; the rows
themselves are :data:`dcounter_node._settings_table.SETTINGS`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dcounter_node._errors import ConfigError
from dcounter_node._host_policy import normalize_host
from dcounter_node._origin_policy import normalize_origin
from dcounter_protocol import MalformedAddressError, format_address
from dcounter_protocol import parse_address as _parse_address

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = [
    "DEFAULT_HTTP",
    "DEFAULT_LISTEN",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "LOOPS",
    "WIRE_MODES",
    "SettingSpec",
    "format_address",
    "parse_address",
]

#: Gossip (TCP) address used when none is configured.
DEFAULT_LISTEN = "127.0.0.1:7946"
#: HTTP API address used when none is configured.
DEFAULT_HTTP = "127.0.0.1:8080"
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
#: How a node sends gossip: "auto" (stream mode, falling back to the seed's framing per peer)
#: or "seed" (the seed's framing only). Receiving always accepts both.
WIRE_MODES = ("auto", "seed")
#: Event loop implementations; "uvloop" needs the ``dcounter-node[fast]`` extra.
LOOPS = ("asyncio", "uvloop")


def parse_address(text: str, *, allow_port_zero: bool = True) -> tuple[str, int]:
    """Split "host:port" (or "[ipv6]:port") into host and port, or raise ConfigError.

    The rules are :func:`dcounter_protocol.parse_address`'s (the one address parser); port 0
    (any free port) is accepted unless ``allow_port_zero`` is false.
    """
    try:
        return _parse_address(text, allow_port_zero=allow_port_zero)
    except MalformedAddressError as exc:
        raise ConfigError(exc.reason) from None


# -- value checkers: each takes a TOML (or Python) value and returns it validated ---------


def _address(value: object) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"expected a HOST:PORT string, got {value!r}")
    parse_address(value)
    return value


def _peer(value: object) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"expected a HOST:PORT string, got {value!r}")
    parse_address(value, allow_port_zero=False)
    return value


def _peers(value: object) -> tuple[str, ...]:
    if not isinstance(value, list | tuple):
        raise ConfigError(f"expected a list of HOST:PORT strings, got {value!r}")
    return tuple(dict.fromkeys(_peer(item) for item in value))


def _peers_text(text: str) -> tuple[str, ...]:
    if not text.strip():
        return ()  # `--peers ""`: no static peers (overrides a config file's)
    items = [item.strip() for item in text.split(",")]
    if "" in items:
        raise ConfigError(f"empty entry in {text!r}; expected HOST:PORT[,HOST:PORT...]")
    return _peers(items)


def _peer_http(value: object) -> tuple[tuple[str, str], ...]:
    """Gossip address -> HTTP address of peers: a table, or "GOSSIP=HTTP" strings."""
    if isinstance(value, dict):
        pairs = list(value.items())
    elif isinstance(value, list | tuple):
        pairs = []
        for item in value:
            if isinstance(item, str):
                gossip, sep, http = item.partition("=")
                if not sep:
                    raise ConfigError(f"expected GOSSIP=HTTP (two HOST:PORT), got {item!r}")
                pairs.append((gossip.strip(), http.strip()))
            elif isinstance(item, tuple) and len(item) == 2:
                pairs.append(item)
            else:
                raise ConfigError(f"expected GOSSIP=HTTP (two HOST:PORT), got {item!r}")
    else:
        raise ConfigError(f"expected a table of gossip address = HTTP address, got {value!r}")
    return tuple(sorted({_peer(gossip): _peer(http) for gossip, http in pairs}.items()))


def _peer_http_text(text: str) -> tuple[tuple[str, str], ...]:
    return _peer_http([item for item in text.split(",") if item.strip()])


def _peer_http_to_text(value: tuple[tuple[str, str], ...]) -> str:
    return ",".join(f"{gossip}={http}" for gossip, http in value)


def _seconds(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"expected a number of seconds, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"expected a number of seconds > 0, got {value!r}")
    return float(value)


def _seconds_text(text: str) -> float:
    try:
        return _seconds(float(text))
    except (ValueError, ConfigError):
        raise ConfigError(f"expected a number of seconds > 0, e.g. 0.5; got {text!r}") from None


def _seconds_or_off(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"expected a number of seconds (0: off), got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"expected a number of seconds >= 0 (0: off), got {value!r}")
    return float(value)


def _seconds_or_off_text(text: str) -> float:
    try:
        return _seconds_or_off(float(text))
    except (ValueError, ConfigError):
        raise ConfigError(f"expected a number of seconds >= 0 (0: off); got {text!r}") from None


def _positive_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"expected an integer >= 1, got {value!r}")
    if value < 1:
        raise ConfigError(f"expected an integer >= 1, got {value!r}")
    return value


def _positive_int_text(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"expected an integer >= 1, got {text!r}") from None
    return _positive_int(value)


def _member_count(value: object) -> int:
    """A member table's size: this node and at least one other."""
    count = _positive_int(value)
    if count < 2:
        raise ConfigError(f"expected an integer >= 2 (this node and another), got {count}")
    return count


def _member_count_text(text: str) -> int:
    return _member_count(_positive_int_text(text))


def _origins(value: object) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"expected a list of origins such as https://dash.example, got {value!r}")
    return tuple(dict.fromkeys(normalize_origin(item) for item in value))


def _origins_text(text: str) -> tuple[str, ...]:
    return _origins([item.strip() for item in text.split(",") if item.strip()])


def _hosts(value: object) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"expected a list of host names such as node1.example, got {value!r}")
    return tuple(dict.fromkeys(normalize_host(item) for item in value))


def _hosts_text(text: str) -> tuple[str, ...]:
    return _hosts([item.strip() for item in text.split(",") if item.strip()])


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"expected true or false, got {value!r}")
    return value


def _directory(value: object) -> str:
    if not isinstance(value, str) or not value.strip() or "\0" in value:
        raise ConfigError(f"expected a directory path, got {value!r}")
    return value


def _file(value: object) -> str:
    if not isinstance(value, str) or not value.strip() or "\0" in value:
        raise ConfigError(f"expected a file path, got {value!r}")
    return value


def _choice(choices: Sequence[str]) -> Callable[[object], str]:
    def check(value: object) -> str:
        if not isinstance(value, str) or value.lower() not in choices:
            raise ConfigError(f"expected one of {', '.join(choices)}; got {value!r}")
        return value.lower()

    return check


@dataclass(frozen=True, slots=True)
class SettingSpec:
    """One known setting: its TOML key (= :class:`NodeSettings` field), flag and checks."""

    key: str
    flag: str
    help: str
    #: Validate a value from the config file (or Python); raise ConfigError.
    check: Callable[[object], Any]
    #: Parse a flag argument; None makes a boolean ``--flag/--no-flag`` pair.
    parse_text: Callable[[str], Any] | None
    metavar: str | None = None
    #: How the default reads in --help when the field default does not say it well.
    default_text: str | None = None
    #: Render a value as one flag argument (for to_argv).
    to_text: Callable[[Any], str] = str


def _seconds_to_text(value: float) -> str:
    return repr(float(value))


#: Every key a config file may hold (besides ``name`` in [[nodes]] entries), in --help order.

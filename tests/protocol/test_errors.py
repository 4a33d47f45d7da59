"""The error tree: local misuse vs remote garbage under ProtocolError, with a plain reason."""

from __future__ import annotations

import inspect

import pytest

import dcounter_protocol
from dcounter_protocol import (
    BindError,
    ConnectError,
    EncodeError,
    FrameError,
    InvalidOptionError,
    LocalProtocolError,
    MalformedAddressError,
    MessageError,
    OversizeMessageError,
    ProtocolError,
    Push,
    RemoteProtocolError,
    TransportClosedError,
    TransportError,
    TransportTimeoutError,
    decode_message,
    encode_message,
)

ERRORS = [
    value
    for value in vars(dcounter_protocol).values()
    if inspect.isclass(value) and issubclass(value, Exception)
]
LOCAL = {
    BindError,
    EncodeError,
    InvalidOptionError,
    LocalProtocolError,
    MalformedAddressError,
    OversizeMessageError,
    TransportClosedError,
}
#: Network conditions, and the area bases: neither side's fault by themselves.
NEITHER = {ConnectError, MessageError, ProtocolError, TransportError, TransportTimeoutError}


def test_every_exported_error_is_a_protocol_error() -> None:
    assert ERRORS
    assert [error for error in ERRORS if not issubclass(error, ProtocolError)] == []


@pytest.mark.parametrize("error", ERRORS, ids=lambda error: error.__name__)
def test_each_error_is_local_or_remote_never_both(error: type[Exception]) -> None:
    local = issubclass(error, LocalProtocolError)
    remote = issubclass(error, RemoteProtocolError)
    if error in NEITHER:
        assert (local, remote) == (False, False)
    else:
        assert (local, remote) == (error in LOCAL, error not in LOCAL)


def test_frame_errors_are_remote() -> None:
    assert issubclass(FrameError, RemoteProtocolError)


def test_decode_errors_are_remote_and_encode_errors_local() -> None:
    with pytest.raises(RemoteProtocolError):
        decode_message(b"\x07garbage")
    with pytest.raises(LocalProtocolError):
        encode_message(Push("node", {"a": 1}, None), max_size=1)


def test_reason_is_the_cause_without_the_offset() -> None:
    error = FrameError("bad byte", offset=7)

    assert (error.reason, error.offset, str(error)) == ("bad byte", 7, "bad byte (at byte 7)")


def test_reason_of_an_error_without_offset_is_its_text() -> None:
    error = ConnectError("dial to h:1 failed: refused")

    assert error.reason == str(error) == "dial to h:1 failed: refused"

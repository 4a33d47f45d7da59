"""dcounter-frames decode: golden reference vectors, hostile input, the CLI's output."""

from __future__ import annotations

import io
import json
import sys
from typing import TYPE_CHECKING, Any

import pytest

from dcounter_protocol import Message, MessageType
from dcounter_tools.frames.cli import main
from dcounter_tools.frames.inspection import inspect_bytes

if TYPE_CHECKING:
    from pathlib import Path

FRAME_HEX = (
    "0e3132372e302e302e313a393030300084a174cc01a26964ae3132372e302e302e313a39303030a3696e6381"
    "ae3132372e302e302e313a39303030cf0000000000000005a364656381ae3132372e302e302e313a39303030"
    "cf0000000000000002"
)


def _assert_message(message: Message | None, expected: dict[str, Any]) -> None:
    assert message is not None
    assert message.type is MessageType(expected["type"])
    assert message.node_id == expected["node_id"]
    inc = None if message.increments is None else dict(message.increments)
    dec = None if message.decrements is None else dict(message.decrements)
    assert inc == expected["inc"]
    assert dec == expected["dec"]
    assert message.digest == int(expected["digest"], 16)


# -- golden vectors --------------------------------------------------------------------------


@pytest.mark.golden
def test_every_golden_tcp_frame_is_split_into_sender_and_payload(golden: dict[str, Any]) -> None:
    for vector in golden["tcp_frames"]:
        data = bytes.fromhex(vector["frame_hex"])
        inspection = inspect_bytes(data)
        assert inspection.kind == "frame", vector["name"]
        assert inspection.sender == vector["sender_addr"]
        assert inspection.size == len(data)
        assert inspection.payload_offset == 1 + len(vector["sender_addr"].encode())
        assert data[inspection.payload_offset :] == bytes.fromhex(vector["payload_hex"])
        assert inspection.payload_size == len(vector["payload_hex"]) // 2
        if vector.get("message") is not None:
            assert inspection.ok
            _assert_message(inspection.message, vector["message"])


@pytest.mark.golden
def test_golden_frames_from_a_reference_node_decode(golden: dict[str, Any]) -> None:
    frames = [v for v in golden["tcp_frames"] if v["name"].startswith("refnode_")]
    assert frames
    for vector in frames:
        inspection = inspect_bytes(bytes.fromhex(vector["frame_hex"]))
        assert inspection.ok, inspection.problems
        assert inspection.message is not None
        assert inspection.message.node_id == vector["sender_addr"]


@pytest.mark.golden
def test_golden_frame_with_a_non_message_payload_reports_the_payload_offset(
    golden: dict[str, Any],
) -> None:
    (vector,) = [v for v in golden["tcp_frames"] if v["name"] == "frame_raw_hello_world"]
    inspection = inspect_bytes(bytes.fromhex(vector["frame_hex"]))
    assert inspection.kind == "frame"
    assert inspection.message is None
    (problem,) = inspection.problems
    assert (problem.layer, problem.error, problem.offset) == ("message", "InvalidFlagError", 15)


@pytest.mark.golden
def test_every_golden_encoding_decodes_as_a_bare_message(golden: dict[str, Any]) -> None:
    for vector in golden["encode"]:
        inspection = inspect_bytes(bytes.fromhex(vector["hex"]))
        assert inspection.kind == "message", vector["name"]
        assert inspection.ok, (vector["name"], inspection.problems)
        assert inspection.compressed is vector["compressed"]
        _assert_message(inspection.message, vector["message"])


@pytest.mark.golden
def test_golden_frames_decode_through_the_cli_as_json(
    golden: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    hexes = [v["frame_hex"] for v in golden["tcp_frames"] if v.get("message")]
    assert main(["decode", "--json", *hexes]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["sender"] for line in lines] == ["127.0.0.1:9000"] * len(hexes)
    assert all(line["ok"] and line["kind"] == "frame" for line in lines)


# -- hostile input ---------------------------------------------------------------------------


def test_truncated_header_is_reported_with_its_offset() -> None:
    inspection = inspect_bytes(bytes.fromhex("0e3132372e30"), kind="frame")
    assert inspection.kind is None
    (problem,) = inspection.problems
    assert (problem.error, problem.offset) == ("TruncatedFrameError", 6)


def test_zero_length_address_is_reported_at_offset_0() -> None:
    inspection = inspect_bytes(bytes.fromhex("00414243"), kind="frame")
    (problem,) = inspection.problems
    assert (problem.error, problem.offset) == ("InvalidAddressLengthError", 0)


def test_non_utf8_address_is_reported_at_the_bad_byte() -> None:
    inspection = inspect_bytes(bytes.fromhex("0441c3284100"), kind="frame")
    (problem,) = inspection.problems
    assert (problem.error, problem.offset) == ("InvalidAddressError", 2)


def test_garbage_reports_both_readings() -> None:
    inspection = inspect_bytes(bytes.fromhex("ff" * 8))
    assert inspection.kind is None
    assert [(p.layer, p.error, p.offset) for p in inspection.problems] == [
        ("frame", "InvalidAddressError", 1),
        ("message", "InvalidFlagError", 0),
    ]


def test_frame_without_payload_is_truncated() -> None:
    inspection = inspect_bytes(b"\x03a:1", kind="frame")
    (problem,) = inspection.problems
    assert (problem.error, problem.offset) == ("TruncatedFrameError", 4)


@pytest.mark.parametrize("cut", range(16, len(FRAME_HEX) // 2))
def test_a_frame_cut_inside_its_message_is_reported_as_truncated(cut: int) -> None:
    inspection = inspect_bytes(bytes.fromhex(FRAME_HEX)[:cut])
    assert (inspection.kind, inspection.sender) == ("frame", "127.0.0.1:9000")
    (problem,) = inspection.problems
    assert (problem.layer, problem.error, problem.offset) == ("frame", "TruncatedFrameError", cut)
    assert "cut short" in problem.detail


def test_a_bare_message_cut_short_says_truncated() -> None:
    inspection = inspect_bytes(bytes.fromhex("0084a174cc"), kind="message")
    (problem,) = inspection.problems
    assert problem.detail.startswith("truncated: the 4-byte msgpack body ends inside")


def test_a_malformed_but_complete_body_keeps_the_codec_error() -> None:
    inspection = inspect_bytes(bytes.fromhex("0e3132372e302e302e313a3930303000c1"))
    (problem,) = inspection.problems
    assert (problem.layer, problem.error) == ("message", "MalformedMessageError")


def test_bad_input_is_reported_and_the_next_input_still_decoded(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["decode", "--json", "00ff", "zz", FRAME_HEX]) == 1
    first, second, third = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert first["ok"] is False
    assert first["problems"][0] == {
        "layer": "frame",
        "error": "InvalidAddressLengthError",
        "detail": "sender address length is 0",
        "offset": 0,
    }
    assert second == {"input": "zz", "ok": False, "input_error": "not hex: 'z' at character 0"}
    assert third["ok"] is True
    assert third["message"]["value"] == 3


# -- the CLI ---------------------------------------------------------------------------------


def test_table_shows_sender_type_counts_and_digest(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["decode", FRAME_HEX]) == 0
    out = capsys.readouterr().out
    for text in ("frame", "127.0.0.1:9000", "PUSH (1)", "0x00 (plain)", "none (0", "97 bytes"):
        assert text in out


def test_bad_frame_in_the_table_names_the_error_and_offset(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["decode", "--kind", "frame", "0e3132"]) == 1
    out = capsys.readouterr().out
    assert "TruncatedFrameError at byte 3" in " ".join(out.split())


def test_stdin_hex_is_decoded(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    stdin = io.TextIOWrapper(io.BytesIO(FRAME_HEX[:60].encode() + b"\n" + FRAME_HEX[60:].encode()))
    monkeypatch.setattr(sys, "stdin", stdin)
    assert main(["decode", "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["sender"] == "127.0.0.1:9000"


def test_raw_file_is_decoded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "frame.bin"
    path.write_bytes(bytes.fromhex(FRAME_HEX))
    assert main(["decode", "--json", "--file", str(path)]) == 0
    decoded = json.loads(capsys.readouterr().out)
    assert decoded["message"]["increments"] == {"127.0.0.1:9000": 5}


def test_missing_file_is_an_input_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["decode", "--file", str(tmp_path / "absent")]) == 1
    assert "cannot read" in capsys.readouterr().out


def test_decode_without_input_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["decode"]) == 2
    assert "at least one input" in capsys.readouterr().err

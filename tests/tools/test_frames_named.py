"""dcounter-frames decode reads named-counter messages ("DCN" 01), bare or in a frame."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from dcounter_crdt import CounterMapState, CounterState
from dcounter_protocol import (
    NamedBuckets,
    NamedKeys,
    NamedPull,
    NamedPush,
    NamedWant,
    encode_frame,
    encode_named,
)
from dcounter_tools.frames.cli import main
from dcounter_tools.frames.inspection import inspect_bytes

if TYPE_CHECKING:
    from dcounter_protocol import NamedMessage

PUSH = NamedPush(
    CounterMapState({"pages/home": CounterState.from_maps({"a:1#x": 5}, {"b:2#y": 2})}), full=True
)
MESSAGES: list[NamedMessage] = [
    PUSH,
    NamedPull(4096, 0x0123456789ABCDEF),
    NamedBuckets(2, (1, 0)),
    NamedKeys(4096, {7: (0x1122334455667788,)}),
    NamedWant((0x1122334455667788,)),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: m.kind.name)
def test_a_bare_named_payload_is_decoded(message: NamedMessage) -> None:
    inspection = inspect_bytes(encode_named(message))
    assert inspection.ok
    assert (inspection.kind, inspection.named, inspection.message) == ("message", message, None)


def test_a_named_payload_in_a_frame_names_its_sender() -> None:
    payload = encode_named(PUSH)
    inspection = inspect_bytes(encode_frame("127.0.0.1:9000", payload))
    assert (inspection.kind, inspection.sender, inspection.named) == (
        "frame",
        "127.0.0.1:9000",
        PUSH,
    )
    assert inspection.payload_size == len(payload)


def test_the_cli_prints_named_messages_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    hexes = [encode_named(m).hex() for m in MESSAGES]
    assert main(["decode", "--json", *hexes]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["named"]["type"] for line in lines] == [m.kind.name for m in MESSAGES]
    assert lines[0]["named"]["counters"] == {
        "pages/home": {"increments": {"a:1#x": 5}, "decrements": {"b:2#y": 2}, "value": 3}
    }
    assert lines[0]["named"]["full"] is True
    assert lines[1]["named"]["root_hex"] == "0x0123456789abcdef"
    assert lines[2]["named"]["digests_hex"] == ["0x0000000000000001", "0x0000000000000000"]
    assert lines[3]["named"]["keys"] == {"7": ["0x1122334455667788"]}
    assert lines[4]["named"]["hashes"] == ["0x1122334455667788"]


def test_the_cli_table_summarises_a_named_push(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["decode", encode_named(PUSH).hex()]) == 0
    out = capsys.readouterr().out
    assert "NAMED_PUSH (1)" in out
    assert "1 counters (full): pages/home=3" in out


def test_a_malformed_named_payload_is_a_typed_problem(capsys: pytest.CaptureFixture[str]) -> None:
    garbage = encode_named(NamedPull(4096, 1))[:-3]
    inspection = inspect_bytes(garbage)
    assert not inspection.ok
    assert [(p.layer, p.error) for p in inspection.problems] == [("message", "NamedMessageError")]
    assert main(["decode", "--json", garbage.hex()]) == 1
    line = json.loads(capsys.readouterr().out)
    assert line["problems"][0]["error"] == "NamedMessageError"

"""How inspections and frame events are shown: rich tables, one-line summaries, JSON."""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from dcounter_protocol import (
    MessageType,
    NamedBuckets,
    NamedKeys,
    NamedMessage,
    NamedPull,
    NamedPush,
    NamedWant,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from dcounter_protocol import Message
    from dcounter_tools.frames.inspection import Inspection, Problem
    from dcounter_tools.frames.listen import FrameEvent

__all__ = [
    "event_line",
    "event_to_json",
    "inspection_table",
    "inspection_to_json",
    "problem_text",
]


def _flag_text(inspection: Inspection) -> str:
    if inspection.flag is None:
        return "-"
    kind = "zstd-compressed" if inspection.compressed else "plain"
    return f"0x{inspection.flag:02x} ({kind})"


def _digest_text(digest: int) -> str:
    return f"0x{digest:016x}" if digest else "none (0, omitted on the wire)"


def _counts_json(counts: Mapping[str, int] | None) -> dict[str, int] | None:
    return None if counts is None else dict(counts)


def problem_text(problem: Problem) -> str:
    """``"frame error NameError at byte N: detail"`` (the offset only when known)."""
    if problem.offset is None:
        where = ""
    elif problem.layer == "frame":
        where = f" at byte {problem.offset}"
    else:
        where = f" in the message at byte {problem.offset}"
    return f"{problem.layer} error {problem.error}{where}: {problem.detail}"


def problem_to_json(problem: Problem) -> dict[str, Any]:
    """A problem as a JSON object."""
    return {
        "layer": problem.layer,
        "error": problem.error,
        "detail": problem.detail,
        "offset": problem.offset,
    }


def message_to_json(message: Message) -> dict[str, Any]:
    """A decoded message as a JSON object (``null`` maps are the wire's nil maps)."""
    state = message.state()
    return {
        "type": message.type.name,
        "type_code": int(message.type),
        "node_id": message.node_id,
        "increments": _counts_json(message.increments),
        "decrements": _counts_json(message.decrements),
        "digest": message.digest,
        "digest_hex": f"0x{message.digest:016x}",
        "value": state.value,
    }


def named_to_json(message: NamedMessage) -> dict[str, Any]:
    """A named-counter message as a JSON object (hashes and digests as hex strings)."""
    result: dict[str, Any] = {"type": message.kind.name, "type_code": message.kind.value}
    match message:
        case NamedPush():
            result["full"] = message.full
            result["counters"] = {
                name: {
                    "increments": dict(state.increments),
                    "decrements": dict(state.decrements),
                    "value": state.value,
                }
                for name, state in sorted(message.state.counters.items())
            }
        case NamedPull():
            result["buckets"] = message.buckets
            result["root_hex"] = f"0x{message.root:016x}"
        case NamedBuckets():
            result["buckets"] = message.buckets
            result["nonzero"] = sum(1 for d in message.digests if d)
            result["digests_hex"] = [f"0x{d:016x}" for d in message.digests]
        case NamedKeys():
            result["buckets"] = message.buckets
            keys = sorted(message.keys.items())
            result["keys"] = {str(b): [f"0x{h:016x}" for h in hashes] for b, hashes in keys}
        case NamedWant():
            result["hashes"] = [f"0x{h:016x}" for h in message.hashes]
    return result


def named_summary(message: NamedMessage) -> str:
    """One line about a named-counter message."""
    match message:
        case NamedPush():
            values = ", ".join(
                f"{name}={state.value}" for name, state in sorted(message.state.counters.items())
            )
            shown = values if len(values) <= 120 else values[:117] + "..."
            what = "full" if message.full else "delta"
            return f"{len(message.state)} counters ({what}): {shown}"
        case NamedPull():
            return f"root 0x{message.root:016x} over {message.buckets} buckets"
        case NamedBuckets():
            nonzero = sum(1 for d in message.digests if d)
            return f"{message.buckets} bucket digests, {nonzero} non-empty"
        case NamedKeys():
            count = sum(len(h) for h in message.keys.values())
            return f"{count} key hashes in {len(message.keys)} buckets of {message.buckets}"
        case NamedWant():
            return f"{len(message.hashes)} wanted key hashes"


def inspection_to_json(inspection: Inspection) -> dict[str, Any]:
    """An inspection as a JSON object; ``ok`` says whether a message was decoded cleanly."""
    return {
        "ok": inspection.ok,
        "kind": inspection.kind,
        "size": inspection.size,
        "sender": inspection.sender,
        "address_length": (
            len(inspection.sender.encode()) if inspection.sender is not None else None
        ),
        "payload_offset": inspection.payload_offset,
        "payload_size": inspection.payload_size,
        "flag": inspection.flag,
        "compressed": inspection.compressed if inspection.flag is not None else None,
        "message": message_to_json(inspection.message) if inspection.message else None,
        "named": named_to_json(inspection.named) if inspection.named else None,
        "problems": [problem_to_json(p) for p in inspection.problems],
    }


def _counts_table(message: Message) -> Table:
    table = Table(title="per-replica counts", title_justify="left", show_edge=False)
    table.add_column("replica")
    table.add_column("increments", justify="right")
    table.add_column("decrements", justify="right")
    table.add_column("inc - dec", justify="right")
    inc = message.increments or {}
    dec = message.decrements or {}
    for replica in sorted(set(inc) | set(dec)):
        # Show explicit zeros as sent (a key present with 0 changes the digest).
        i = inc.get(replica)
        d = dec.get(replica)
        table.add_row(
            replica,
            "-" if i is None else str(i),
            "-" if d is None else str(d),
            str((i or 0) - (d or 0)),
        )
    return table


def _map_summary(counts: Mapping[str, int] | None) -> str:
    if counts is None:
        return "nil"
    return f"{len(counts)} entr{'y' if len(counts) == 1 else 'ies'}"


def inspection_table(inspection: Inspection, *, title: str | None = None) -> RenderableType:
    """A readable table of everything known about one input."""
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("kind", inspection.kind or "undecodable")
    table.add_row("size", f"{inspection.size} bytes")
    if inspection.kind == "frame" and inspection.sender is not None:
        table.add_row("sender", inspection.sender)
        table.add_row("address length", f"{len(inspection.sender.encode())} bytes")
    if inspection.kind is not None:
        table.add_row(
            "payload",
            f"{inspection.payload_size} bytes at offset {inspection.payload_offset}",
        )
        table.add_row("flag", _flag_text(inspection))
    message = inspection.message
    parts: list[RenderableType] = [table]
    if inspection.named is not None:
        table.add_row("type", f"{inspection.named.kind.name} ({inspection.named.kind.value})")
        table.add_row("named", named_summary(inspection.named))
    if message is not None:
        table.add_row("type", f"{message.type.name} ({int(message.type)})")
        table.add_row("node id", message.node_id)
        table.add_row("digest", _digest_text(message.digest))
        if message.type is MessageType.PUSH:
            table.add_row(
                "maps",
                f"inc {_map_summary(message.increments)}, dec {_map_summary(message.decrements)}",
            )
            table.add_row("value", str(message.state().value))
            if message.increments or message.decrements:
                parts.append(_counts_table(message))
    for problem in inspection.problems:
        table.add_row(Text("error", style="bold red"), Text(problem_text(problem), style="red"))
    return Group(*parts)


def _counts_inline(counts: Mapping[str, int] | None) -> str:
    if counts is None:
        return "nil"
    return "{" + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) + "}"


def event_line(event: FrameEvent) -> str:
    """One human line per frame event, for ``listen`` and ``proxy``."""
    stamp = datetime.datetime.fromtimestamp(event.received_at).strftime("%H:%M:%S.%f")[:-3]
    head = f"{stamp} from {event.peer} ({event.size} B)"
    if event.problem is not None:
        return f"{head} BAD FRAME {problem_text(event.problem)}"
    inspection = event.inspection
    if inspection is None:  # pragma: no cover - events carry one or the other
        return head
    parts = [head, f"sender={inspection.sender}"]
    message = inspection.message
    if inspection.named is not None:
        parts.append(inspection.named.kind.name)
        parts.append(named_summary(inspection.named))
    if message is not None:
        parts.append(message.type.name)
        parts.append(f"id={message.node_id}")
        if message.type is MessageType.PUSH:
            parts.append(f"inc={_counts_inline(message.increments)}")
            parts.append(f"dec={_counts_inline(message.decrements)}")
            parts.append(f"value={message.state().value}")
        parts.append(f"digest={f'0x{message.digest:016x}' if message.digest else 'none'}")
        parts.append("zstd" if inspection.compressed else "plain")
    for problem in inspection.problems:
        parts.append(f"BAD MESSAGE {problem_text(problem)}")
    if event.forwarded_to is not None:
        if event.forward_error is None:
            parts.append(f"-> forwarded to {event.forwarded_to}")
        else:
            parts.append(f"-> NOT forwarded to {event.forwarded_to}: {event.forward_error}")
    return " ".join(parts)


def event_to_json(event: FrameEvent) -> dict[str, Any]:
    """A frame event as a JSON object."""
    return {
        "received_at": event.received_at,
        "peer": event.peer,
        "size": event.size,
        "ok": event.ok,
        "frame": inspection_to_json(event.inspection) if event.inspection else None,
        "problem": problem_to_json(event.problem) if event.problem else None,
        "forwarded_to": event.forwarded_to,
        "forward_error": event.forward_error,
    }

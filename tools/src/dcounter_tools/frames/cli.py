"""``dcounter-frames``: inspect the seed's TCP frames and messages.

decode   read frames or bare message payloads given as hex, on stdin or in files
listen   be a gossip endpoint and print every frame that arrives (never replies)
proxy    forward frames to a real node, printing each one on the way through
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import string
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from dcounter_protocol import DEFAULT_MAX_MESSAGE_SIZE
from dcounter_tools.__about__ import __version__
from dcounter_tools._address import split_address
from dcounter_tools.errors import InputError, UsageError
from dcounter_tools.frames.inspection import Kind, inspect_bytes
from dcounter_tools.frames.listen import FrameEvent, FrameListener
from dcounter_tools.frames.proxy import FrameProxy
from dcounter_tools.frames.render import (
    event_line,
    event_to_json,
    inspection_table,
    inspection_to_json,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["main", "run"]

_HEX_DIGITS = frozenset(string.hexdigits)
_EPILOG = """\
examples:
  dcounter-frames decode 0e3132372e302e302e313a39313031008...   a frame (or a bare payload)
  dcounter-frames decode --kind message 0084cc01...               force a bare message
  xxd -p capture.bin | dcounter-frames decode -                   hex on stdin
  dcounter-frames decode --file capture.bin --json                raw bytes from a file
  dcounter-frames listen --port 0                                 prints the bound address
  dcounter-frames proxy --listen 127.0.0.1:7000 --to 127.0.0.1:7946

exit status: 0 every input decoded, 1 some input did not, 2 usage error.
listen/proxy run until Ctrl-C (or --count frames) and exit 0; bad frames are
reported with their byte offset and the tool carries on.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dcounter-frames",
        description="Inspect dcounter gossip: seed TCP frames [len][sender][payload] and\n"
        "message payloads [flag][msgpack body] (zstd-compressed when the flag is 0x80).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    decode = commands.add_parser(
        "decode",
        help="decode frames or message payloads",
        description="Decode each input and show sender, message type, node id, per-replica "
        "counts, digest, compression and sizes. An input is HEX on the command line, '-' "
        "for stdin, or --file F; stdin and files may hold hex text or raw bytes.",
    )
    decode.add_argument("inputs", nargs="*", metavar="HEX|-", help="hex bytes, or - for stdin")
    decode.add_argument(
        "--file", action="append", default=[], metavar="F", type=Path, help="read F (repeatable)"
    )
    decode.add_argument(
        "--kind",
        choices=["auto", "frame", "message"],
        default="auto",
        help="what the bytes are (auto: a frame if it decodes as one, else a bare message)",
    )
    decode.add_argument(
        "--format",
        dest="input_format",
        choices=["auto", "hex", "raw"],
        default="auto",
        help="how stdin/files are read (auto: hex text if it is only hex digits, else raw)",
    )
    decode.add_argument("--json", action="store_true", help="one JSON object per input")
    _add_max_size(decode)

    for name, help_text in (
        ("listen", "print every frame sent to this endpoint (never replies)"),
        ("proxy", "forward frames to a node while printing them"),
    ):
        sub = commands.add_parser(name, help=help_text, description=help_text)
        if name == "listen":
            sub.add_argument("--host", default="127.0.0.1", help="bind host (127.0.0.1)")
            sub.add_argument(
                "--port", type=int, default=0, help="bind port (0: pick a free one and print it)"
            )
        else:
            sub.description = (
                "Forward each frame, byte for byte, to --to while printing it. The frame "
                "keeps its original sender address, so the node's replies go straight back "
                "to the sender and are not seen here; put a second proxy in front of the "
                "other node to watch both directions. Badly framed input is reported and "
                "not forwarded."
            )
            sub.add_argument(
                "--listen",
                default="127.0.0.1:0",
                metavar="HOST:PORT",
                help="where to accept frames (127.0.0.1:0 picks a free port and prints it)",
            )
            sub.add_argument(
                "--to", required=True, metavar="HOST:PORT", help="the node to forward to"
            )
        sub.add_argument("--json", action="store_true", help="JSON lines instead of text")
        sub.add_argument(
            "--count", type=int, default=None, metavar="N", help="exit after N connections"
        )
        sub.add_argument(
            "--read-timeout",
            type=float,
            default=10.0,
            metavar="S",
            help="drop a connection whose frame is not complete after S seconds (10)",
        )
        _add_max_size(sub)
    return parser


def _add_max_size(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-size",
        type=int,
        default=DEFAULT_MAX_MESSAGE_SIZE,
        metavar="BYTES",
        help=f"largest message accepted ({DEFAULT_MAX_MESSAGE_SIZE})",
    )


# -- decode ---------------------------------------------------------------------------------


def _hex_to_bytes(text: str) -> bytes:
    cleaned = "".join(text.split())
    if cleaned[:2].lower() == "0x":
        cleaned = cleaned[2:]
    if not cleaned:
        raise InputError("empty input")
    bad = next((i for i, c in enumerate(cleaned) if c not in _HEX_DIGITS), None)
    if bad is not None:
        raise InputError(f"not hex: {cleaned[bad]!r} at character {bad}")
    if len(cleaned) % 2:
        raise InputError(f"odd number of hex digits ({len(cleaned)})")
    return bytes.fromhex(cleaned)


def _content_to_bytes(content: bytes, input_format: str) -> bytes:
    if input_format == "raw":
        return content
    if input_format == "hex":
        try:
            return _hex_to_bytes(content.decode("ascii"))
        except UnicodeDecodeError as exc:
            raise InputError(f"not hex text: non-ASCII byte at offset {exc.start}") from exc
    try:
        return _hex_to_bytes(content.decode("ascii"))
    except (UnicodeDecodeError, InputError):
        return content


def _load_inputs(args: argparse.Namespace) -> list[tuple[str, bytes | InputError]]:
    loaded: list[tuple[str, bytes | InputError]] = []
    for text in args.inputs:
        try:
            if text == "-":
                loaded.append(
                    ("stdin", _content_to_bytes(sys.stdin.buffer.read(), args.input_format))
                )
            else:
                loaded.append((_label(text), _hex_to_bytes(text)))
        except InputError as exc:
            loaded.append((_label(text), exc))
    for path in args.file:
        try:
            loaded.append((str(path), _content_to_bytes(path.read_bytes(), args.input_format)))
        except OSError as exc:
            loaded.append((str(path), InputError(f"cannot read {path}: {exc.strerror or exc}")))
        except InputError as exc:
            loaded.append((str(path), exc))
    return loaded


def _label(text: str) -> str:
    return text if len(text) <= 40 else f"{text[:37]}..."


def _decode(args: argparse.Namespace) -> int:
    if not args.inputs and not args.file:
        raise UsageError("decode needs at least one input: HEX, - (stdin) or --file F")
    if args.inputs.count("-") > 1:
        raise UsageError("stdin ('-') can be given only once")
    console = Console(file=sys.stdout, highlight=False)
    kind: Kind = args.kind
    failures = 0
    for index, (label, data) in enumerate(_load_inputs(args), start=1):
        if isinstance(data, InputError):
            failures += 1
            if args.json:
                _print_json({"input": label, "ok": False, "input_error": str(data)})
            else:
                console.print(f"input {index} ({label}): cannot read input: {data}", markup=False)
            continue
        inspection = inspect_bytes(data, kind=kind, max_size=args.max_size)
        if not inspection.ok:
            failures += 1
        if args.json:
            _print_json({"input": label, **inspection_to_json(inspection)})
        else:
            console.print(inspection_table(inspection, title=f"input {index} ({label})"))
    return 1 if failures else 0


def _print_json(obj: dict[str, Any]) -> None:
    print(json.dumps(obj, sort_keys=False), flush=True)


# -- listen / proxy -------------------------------------------------------------------------


async def _serve(args: argparse.Namespace) -> int:
    done = asyncio.Event()
    seen = 0

    def on_frame(event: FrameEvent) -> None:
        nonlocal seen
        seen += 1
        if args.json:
            _print_json(event_to_json(event))
        else:
            print(event_line(event), flush=True)
        if args.count is not None and seen >= args.count:
            done.set()

    listener: FrameListener
    if args.command == "proxy":
        host, port = split_address(args.listen)
        listener = FrameProxy(
            args.to,
            on_frame,
            host=host,
            port=port,
            read_timeout=args.read_timeout,
            max_message_size=args.max_size,
        )
    else:
        listener = FrameListener(
            on_frame,
            host=args.host,
            port=args.port,
            read_timeout=args.read_timeout,
            max_message_size=args.max_size,
        )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, done.set)
    try:
        try:
            await listener.start()
        except OSError as exc:
            print(f"dcounter-frames: cannot listen: {exc}", file=sys.stderr)
            return 1
        target = f" forwarding to {args.to}" if args.command == "proxy" else ""
        if args.json:
            _print_json({"listening": listener.address, "forwarding_to": getattr(args, "to", None)})
        else:
            print(
                f"dcounter-frames {args.command}: listening on {listener.address}{target}",
                flush=True,
            )
        await done.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await listener.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``dcounter-frames`` with ``argv``; returns the exit status."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors (status 2)
        return exc.code if isinstance(exc.code, int) else 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "decode":
            return _decode(args)
        if args.count is not None and args.count < 1:
            raise UsageError("--count must be at least 1")
        if args.read_timeout <= 0:
            raise UsageError("--read-timeout must be positive")
        if args.command == "proxy":
            split_address(args.to)
        return asyncio.run(_serve(args))
    except UsageError as exc:
        parser.print_usage(sys.stderr)
        print(f"dcounter-frames: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def run() -> None:
    """Console-script entry point."""
    raise SystemExit(main())

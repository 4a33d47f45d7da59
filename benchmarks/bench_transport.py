"""Benchmark of the TCP transport's two wires against bare asyncio loops in the same run.

Run with ``hatch run python benchmarks/bench_transport.py`` (``--help`` for options;
``--loop uvloop`` for uvloop).

What is measured: messages per second delivered over loopback and CPU microseconds per
message (``time.process_time``, which counts both sides plus the kernel time spent on this
process's behalf). Sender and receiver run in the same process and event loop, so every
figure covers the whole round: for the seed's wire dial, write, close, accept, read to EOF,
hand over; for the stream mode queue, batch write, read, decode, hand over. The subjects are
measured in alternating rounds so that noise from other work on the (shared) machine hits
all of them alike; the rate shown is the best round (noise only ever slows a round down),
the CPU figure the median round:

* ``bare asyncio streams``: ``asyncio.start_server`` reading each connection to EOF, and a
  sender doing ``open_connection``, ``write``, ``close``, ``wait_closed`` with a prebuilt
  frame: the plain connect-write-close loop the issue names as the baseline;
* ``bare asyncio sockets``: the same exchange with the loop's low-level ``sock_*`` calls,
  the cheapest way asyncio offers (the floor of what a transport could cost);
* ``TCPTransport seed``: the real transport with ``wire="seed"``, ``listen`` + ``send``,
  framing every message, with its timeouts, connection cap and frame decoding;
* ``TCPTransport stream/4``: the real transport with ``wire="auto"`` between two of ours
  (so a persistent stream), at most as many messages in flight as there are sender loops
  (4 by default): each event-loop pass writes a handful of frames, about what gossip does;
* ``TCPTransport stream/256``: the same with up to 256 messages in flight, so writes and
  reads carry big batches (the throughput ceiling of the stream mode);
* ``TLS stream/4`` and ``TLS stream/256``: the same two inside mutual TLS 1.3
  (``TCPOptions.tls``; a throwaway CA and P-256 certificates made for the run), the
  connection set up once, so what is measured is the per-message cost of encryption.

Goals (issues 3, 8 and 13): the seed wire reaches at least 70% of the bare streams loop's
rate; the stream mode costs at most one third of the seed wire's CPU per message (checked on
``stream/4``, the conservative one); the stream mode inside TLS costs at most 1.5 times the
plaintext stream mode's CPU per message (checked on ``TLS stream/4`` against ``stream/4``).
The benchmark prints PASS or MISS, never fails on a MISS.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import platform
import socket
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from dcounter_protocol import __version__ as protocol_version
from dcounter_protocol._framing import encode_frame
from dcounter_protocol._tcp import TCPOptions, TCPTransport, TLSOptions
from dcounter_tools.cluster.certs import CA_FILE, write_cluster_certs

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from dcounter_protocol._tcp import WireMode

GOAL_RATIO = 0.70
#: Stream CPU per message at most this fraction of the seed wire's.
STREAM_CPU_GOAL = 1 / 3
#: TLS stream CPU per message at most this multiple of the plaintext stream's.
TLS_CPU_GOAL = 1.5
SENDER_ADDRESS = "127.0.0.1:9000"
#: In-flight bounds of the two stream subjects beyond the concurrency itself.
BATCH_WINDOW = 256


@dataclass(frozen=True, slots=True)
class Sample:
    """One timed run of one subject."""

    messages: int
    seconds: float
    cpu_seconds: float

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    @property
    def cpu_us_per_message(self) -> float:
        return self.cpu_seconds / self.messages * 1e6


class Counter:
    """Messages sent and received so far, with an event for 'all that were sent arrived'.

    With a ``window``, senders wait (:meth:`room`) before a burst would put more than
    ``window`` messages in flight, and are woken once half the window has drained: the stream
    mode never blocks a send, so without it a send loop would outrun the receiver and its
    queue would drop messages. One wake-up per burst keeps the harness's own cost small.
    """

    def __init__(self, window: int | None = None) -> None:
        self.sent = 0
        self.received = 0
        self.expected: int | None = None
        self.done = asyncio.Event()
        self.window = window
        self._room = asyncio.Event()

    def hit(self) -> None:
        self.received += 1
        window = self.window
        if window is not None and self.sent - self.received <= window // 2:
            self._room.set()
        if self.expected is not None and self.received >= self.expected:
            self.done.set()

    def expect(self, count: int) -> None:
        self.expected = count
        if self.received >= count:
            self.done.set()

    async def room(self, burst: int) -> None:
        """Return once ``burst`` more messages fit in the window."""
        window = self.window
        if window is None:
            return
        while self.sent - self.received + burst > window:
            self._room.clear()
            await self._room.wait()


Send: TypeAlias = "Callable[[], Awaitable[None]]"


async def _drive(
    send: Send, counter: Counter, *, duration: float, concurrency: int, burst: int = 1
) -> Sample:
    """Run ``concurrency`` send loops for ``duration`` s; time until every message arrived."""
    loop = asyncio.get_running_loop()

    async def sender(stop_at: float) -> None:
        while loop.time() < stop_at:
            await counter.room(burst)
            for _ in range(burst):
                await send()
                counter.sent += 1

    cpu_start = time.process_time()
    start = loop.time()
    await asyncio.gather(*(sender(start + duration) for _ in range(concurrency)))
    counter.expect(counter.sent)
    async with asyncio.timeout(30):
        await counter.done.wait()
    elapsed = loop.time() - start
    cpu = time.process_time() - cpu_start
    return Sample(messages=counter.sent, seconds=elapsed, cpu_seconds=cpu)


async def bare_streams(payload: bytes, *, duration: float, concurrency: int) -> Sample:
    frame = encode_frame(SENDER_ADDRESS, payload)
    counter = Counter()
    handlers: set[asyncio.Task[None]] = set()

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if await reader.read():
            counter.hit()
        writer.close()

    def track(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.get_running_loop().create_task(on_connection(reader, writer))
        handlers.add(task)
        task.add_done_callback(handlers.discard)

    server = await asyncio.start_server(track, "127.0.0.1", 0, backlog=128)
    host, port = server.sockets[0].getsockname()[:2]

    async def send() -> None:
        _, writer = await asyncio.open_connection(host, port)
        writer.write(frame)
        writer.close()
        await writer.wait_closed()

    try:
        return await _drive(send, counter, duration=duration, concurrency=concurrency)
    finally:
        server.close()
        await server.wait_closed()
        await asyncio.gather(*handlers, return_exceptions=True)


async def bare_sockets(payload: bytes, *, duration: float, concurrency: int) -> Sample:
    frame = encode_frame(SENDER_ADDRESS, payload)
    counter = Counter()
    loop = asyncio.get_running_loop()
    listener = socket.create_server(("127.0.0.1", 0), backlog=128)
    listener.setblocking(False)
    target = listener.getsockname()[:2]
    readers: set[asyncio.Task[None]] = set()

    async def read_to_eof(conn: socket.socket) -> None:
        with conn:
            received = 0
            while chunk := await loop.sock_recv(conn, 65536):
                received += len(chunk)
            if received:
                counter.hit()

    async def accept_forever() -> None:
        while True:
            conn, _ = await loop.sock_accept(listener)
            conn.setblocking(False)
            task = loop.create_task(read_to_eof(conn))
            readers.add(task)
            task.add_done_callback(readers.discard)

    async def send() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setblocking(False)
            await loop.sock_connect(sock, target)
            await loop.sock_sendall(sock, frame)

    acceptor = loop.create_task(accept_forever())
    try:
        return await _drive(send, counter, duration=duration, concurrency=concurrency)
    finally:
        acceptor.cancel()
        await asyncio.gather(acceptor, *readers, return_exceptions=True)
        listener.close()


async def _transport(
    payload: bytes,
    *,
    duration: float,
    concurrency: int,
    wire: WireMode,
    window: int | None,
    burst: int = 1,
    tls: TLSOptions | None = None,
) -> Sample:
    counter = Counter(window)

    async def handler(sender: str, data: bytes) -> None:
        counter.hit()

    receiver = TCPTransport("127.0.0.1:0", options=TCPOptions(tls=tls))
    sender = TCPTransport(SENDER_ADDRESS, options=TCPOptions(wire=wire, tls=tls))
    await receiver.listen(handler)
    target = receiver.address

    async def send() -> None:
        await sender.send(target, payload)

    try:
        sample = await _drive(
            send, counter, duration=duration, concurrency=concurrency, burst=burst
        )
    finally:
        await sender.close()
        await receiver.close()
    if sender.stats().queue_drops:  # pragma: no cover - the window prevents it
        raise RuntimeError(f"{sender.stats().queue_drops} messages dropped: window too large")
    return sample


async def transport_seed(payload: bytes, *, duration: float, concurrency: int) -> Sample:
    return await _transport(
        payload, duration=duration, concurrency=concurrency, wire="seed", window=None
    )


async def transport_stream(
    payload: bytes, *, duration: float, concurrency: int, tls: TLSOptions | None = None
) -> Sample:
    return await _transport(
        payload,
        duration=duration,
        concurrency=concurrency,
        wire="auto",
        window=concurrency,
        tls=tls,
    )


async def transport_stream_batched(
    payload: bytes, *, duration: float, concurrency: int, tls: TLSOptions | None = None
) -> Sample:
    return await _transport(
        payload,
        duration=duration,
        concurrency=concurrency,
        wire="auto",
        window=BATCH_WINDOW,
        burst=max(1, BATCH_WINDOW // concurrency // 2),
        tls=tls,
    )


def throwaway_tls(folder: Path) -> TLSOptions:
    """Mutual TLS between the benchmark's two transports, from a CA made for this run."""
    write_cluster_certs(folder, [("bench", "127.0.0.1")])
    return TLSOptions.from_files(folder / "bench.pem", folder / "bench.key", folder / CA_FILE)


SEED = "TCPTransport seed"
STREAM = "TCPTransport stream/4"
STREAM_BATCHED = f"TCPTransport stream/{BATCH_WINDOW}"
SUBJECTS: dict[str, Callable[..., Awaitable[Sample]]] = {  # name -> subject
    "bare asyncio streams": bare_streams,
    "bare asyncio sockets": bare_sockets,
    SEED: transport_seed,
    STREAM: transport_stream,
    STREAM_BATCHED: transport_stream_batched,
}
TLS_STREAM = "TLS stream/4"
TLS_STREAM_BATCHED = f"TLS stream/{BATCH_WINDOW}"


async def run(args: argparse.Namespace) -> dict[str, list[Sample]]:
    payload = bytes(range(256)) * (args.payload // 256) + bytes(args.payload % 256)
    with tempfile.TemporaryDirectory(prefix="bench-tls-") as folder:
        tls = throwaway_tls(Path(folder))
    subjects: dict[str, Callable[..., Awaitable[Sample]]] = {
        **SUBJECTS,
        TLS_STREAM: functools.partial(transport_stream, tls=tls),
        TLS_STREAM_BATCHED: functools.partial(transport_stream_batched, tls=tls),
    }
    samples: dict[str, list[Sample]] = {name: [] for name in subjects}
    # Warm-up: first connections pay for imports, caches and socket setup paths.
    for subject in subjects.values():
        await subject(payload, duration=0.2, concurrency=args.concurrency)
    for _ in range(args.rounds):
        for name, subject in subjects.items():
            samples[name].append(
                await subject(payload, duration=args.duration, concurrency=args.concurrency)
            )
    return samples


def _best(samples: list[Sample]) -> Sample:
    """The least disturbed run: the fastest (the machine is shared, noise only slows)."""
    return max(samples, key=lambda s: s.rate)


def _median_cpu(samples: list[Sample]) -> float:
    return statistics.median(s.cpu_us_per_message for s in samples)


def report(args: argparse.Namespace, samples: dict[str, list[Sample]]) -> str:
    streams = samples["bare asyncio streams"]
    sockets = samples["bare asyncio sockets"]
    seed = samples[SEED]
    lines = [
        f"TCP transport, seed framing (one connection per message) and stream mode, loopback; "
        f"python {platform.python_version()}, {args.loop} loop, "
        f"dcounter-protocol {protocol_version}",
        f"sender and receiver in one process and one event loop; payload {args.payload} B; "
        f"{args.concurrency} concurrent senders; {args.rounds} alternating rounds x "
        f"{args.duration:g} s; msgs/s = best round, CPU = median round",
        "",
        f"{'subject':<26}{'msgs/s':>9}{'vs streams':>12}{'vs sockets':>12}"
        f"{'CPU us/msg':>12}{'CPU vs seed':>13}  all rounds msgs/s",
    ]
    for name, runs in samples.items():
        best = _best(runs).rate
        lines.append(
            f"{name:<26}{best:>9,.0f}{best / _best(streams).rate:>12.0%}"
            f"{best / _best(sockets).rate:>12.0%}{_median_cpu(runs):>12.1f}"
            f"{_median_cpu(runs) / _median_cpu(seed):>13.2f}"
            f"  {' '.join(f'{s.rate:,.0f}' for s in runs)}"
        )
    ratio = _best(seed).rate / _best(streams).rate
    verdict = "PASS" if ratio >= GOAL_RATIO else "MISS"
    cpu_ratio = _median_cpu(streams) / _median_cpu(seed)
    stream_cpu = _median_cpu(samples[STREAM]) / _median_cpu(seed)
    stream_verdict = "PASS" if stream_cpu <= STREAM_CPU_GOAL else "MISS"
    batched_cpu = _median_cpu(samples[STREAM_BATCHED]) / _median_cpu(seed)
    lines += [
        "",
        f"goal: TCPTransport seed >= {GOAL_RATIO:.0%} of the bare asyncio streams loop's rate: "
        f"{ratio:.0%} {verdict}",
        f"same comparison by CPU per message (streams CPU / seed's, contention-proof): "
        f"{cpu_ratio:.0%}; overhead over bare sockets: "
        f"{_median_cpu(seed) - _median_cpu(sockets):+.1f} us/msg",
        f"goal: stream CPU per message <= 1/3 of seed's: stream/4 {stream_cpu:.3f} "
        f"(1/{1 / stream_cpu:.0f}) {stream_verdict}; stream/{BATCH_WINDOW} {batched_cpu:.3f} "
        f"(1/{1 / batched_cpu:.0f})",
    ]
    tls_cpu = _median_cpu(samples[TLS_STREAM]) / _median_cpu(samples[STREAM])
    tls_batched = _median_cpu(samples[TLS_STREAM_BATCHED]) / _median_cpu(samples[STREAM_BATCHED])
    tls_verdict = "PASS" if tls_cpu <= TLS_CPU_GOAL else "MISS"
    lines.append(
        f"goal: TLS stream CPU per message <= {TLS_CPU_GOAL:g}x the plaintext stream's: "
        f"stream/4 {tls_cpu:.2f}x {tls_verdict}; stream/{BATCH_WINDOW} {tls_batched:.2f}x"
    )
    if "MISS" in (verdict, stream_verdict, tls_verdict):
        lines.append(MISS_NOTE)
    return "\n".join(lines)


#: Printed under the goals when one is missed: misses are expected on a loaded or small
#: machine and some goals are still open, so a MISS is information for people, not a failure.
MISS_NOTE = (
    "MISS = a goal this run did not reach: a known open goal (see the README's benchmark "
    "section), not a failure; the benchmark exits 0 either way"
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Messages/s and CPU us/message of dcounter's TCP transport (seed framing) "
        "beside bare asyncio connect-write-close loops, all measured in this run.",
    )
    parser.add_argument(
        "--duration", type=float, default=1.5, help="seconds per timed run (default 1.5)"
    )
    parser.add_argument(
        "--rounds", type=int, default=5, help="alternating rounds per subject (default 5)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=4, help="concurrent sender loops (default 4)"
    )
    parser.add_argument(
        "--payload", type=int, default=100, help="payload bytes per message (default 100)"
    )
    parser.add_argument(
        "--loop", choices=("asyncio", "uvloop"), default="asyncio", help="event loop to use"
    )
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.rounds < 1 or args.concurrency < 1 or args.payload < 1:
        parser.error("--duration must be > 0; --rounds, --concurrency, --payload >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.loop == "uvloop":
        import uvloop

        samples = uvloop.run(run(args))
    else:
        samples = asyncio.run(run(args))
    print(report(args, samples))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

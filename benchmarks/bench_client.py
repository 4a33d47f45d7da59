"""dcounter-client increments per second against one node, relative to bare httpx.

Run: ``hatch run python benchmarks/bench_client.py [--slices 12] [--slice 0.5]``.

One ``dcounter-node --in-memory`` process serves every load. Each flavor's two loads take
turns in short alternating slices, so that a change in the machine's load hits both alike:

* sync baseline: one ``httpx.Client`` sending ``POST /increment`` one after another, with
  the same headers, body and a fresh Idempotency-Key each, reading the value from the JSON;
* sync client: :meth:`dcounter_client.Client.increment` in a loop;
* async baseline and async client: the same with ``httpx.AsyncClient`` /
  :class:`dcounter_client.AsyncClient`, ``--concurrency`` tasks sharing one client.

Each figure is a load's requests over its time, summed over its slices; the ratio client /
baseline shows what the client's bookkeeping (key, retry policy, parsing) costs over the
requests themselves (goal: at least ``GOAL``). Both pools are opened before timing starts.
Finally the node's value must equal the number of acknowledged increments.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from dcounter_client import AsyncClient, Client

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

GOAL = 0.80
_HEADERS = {"Accept": "application/json", "Content-Type": "application/json"}
_BODY = b'{"by": 1}'


def _bare_request_headers() -> dict[str, str]:
    return {**_HEADERS, "Idempotency-Key": uuid.uuid4().hex}


def _value(response: httpx.Response) -> int:
    response.raise_for_status()
    return int(response.json()["value"])


@dataclass
class Tally:
    """Requests completed and seconds spent by one load, summed over its slices."""

    done: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0


def _sync_slice(one: Callable[[], int], seconds: float, tally: Tally) -> None:
    start = time.monotonic()
    end = start + seconds
    done = 0
    while time.monotonic() < end:
        one()
        done += 1
    tally.done += done
    tally.seconds += time.monotonic() - start


def run_sync(url: str, slices: int, seconds: float) -> tuple[Tally, Tally]:
    """(baseline, client) over ``slices`` alternating slices of ``seconds`` each."""
    baseline, client_tally = Tally(), Tally()
    with httpx.Client(headers=_HEADERS) as http, Client(url) as client:

        def bare() -> int:
            headers = {"Idempotency-Key": uuid.uuid4().hex}
            return _value(http.post(url + "/increment", content=_BODY, headers=headers))

        for _ in range(slices):
            _sync_slice(bare, seconds, baseline)
            _sync_slice(client.increment, seconds, client_tally)
    return baseline, client_tally


async def _async_slice(
    one: Callable[[], Awaitable[int]], concurrency: int, seconds: float, tally: Tally
) -> None:
    start = time.monotonic()
    end = start + seconds
    done = 0

    async def worker() -> None:
        nonlocal done
        while time.monotonic() < end:
            await one()
            done += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    tally.done += done
    tally.seconds += time.monotonic() - start


async def run_async(url: str, slices: int, seconds: float, concurrency: int) -> tuple[Tally, Tally]:
    """(baseline, client), ``concurrency`` tasks each, in alternating slices."""
    baseline, client_tally = Tally(), Tally()
    # The client's pool: httpx's default limits, as in AsyncClient.
    async with httpx.AsyncClient(headers=_HEADERS) as http, AsyncClient(url) as client:

        async def bare() -> int:
            headers = {"Idempotency-Key": uuid.uuid4().hex}
            return _value(await http.post(url + "/increment", content=_BODY, headers=headers))

        for _ in range(slices):
            await _async_slice(bare, concurrency, seconds, baseline)
            await _async_slice(client.increment, concurrency, seconds, client_tally)
    return baseline, client_tally


def _start_node() -> tuple[subprocess.Popen[bytes], str]:
    command = [sys.executable, "-m", "dcounter_node", "--in-memory", "--log-level", "warning"]
    command += ["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    assert process.stdout is not None
    line = process.stdout.readline().decode()
    words = dict(w.split("=", 1) for w in line.split() if "=" in w)
    if "http" not in words:
        process.kill()
        raise SystemExit(f"the node did not start (printed {line!r})")
    return process, f"http://{words['http']}"


def _stop_node(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run the slices, print the figures; 1 if the value check fails."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--slices", type=int, default=12, help="slices per load and flavor")
    parser.add_argument("--slice", type=float, default=0.5, help="seconds per slice")
    parser.add_argument("--concurrency", type=int, default=32, help="async tasks")
    args = parser.parse_args(argv)
    if args.slices < 1 or args.slice <= 0 or args.concurrency < 1:
        parser.error("--slices, --slice and --concurrency must be positive")
    process, url = _start_node()
    try:
        warmup = sync_warmup(url)
        sync = run_sync(url, args.slices, args.slice)
        asynchronous = asyncio.run(run_async(url, args.slices, args.slice, args.concurrency))
        with Client(url) as client:
            value = client.value()
    finally:
        _stop_node(process)
    print(
        f"increments/s against one node ({args.slices} alternating slices of {args.slice:g} s"
        " per load)"
    )
    rows = [
        ("sync", "httpx.Client loop", "dcounter_client.Client", sync),
        (
            "async",
            f"httpx.AsyncClient, {args.concurrency} tasks",
            f"dcounter_client.AsyncClient, {args.concurrency} tasks",
            asynchronous,
        ),
    ]
    for flavor, bare_name, client_name, (baseline, mine) in rows:
        ratio = mine.rate / baseline.rate
        verdict = "meets" if ratio >= GOAL else "MISSES"
        print(f"  {bare_name:<44} {baseline.rate:9,.0f}")
        print(f"  {client_name:<44} {mine.rate:9,.0f}")
        print(f"  {flavor} client / baseline: {ratio:.0%} ({verdict} the {GOAL:.0%} goal)")
    total = warmup + sum(t.done for _, _, _, pair in rows for t in pair)
    ok = value == total
    print(f"node value {value}, acknowledged increments {total}: {'equal' if ok else 'DIFFER'}")
    return 0 if ok else 1


def sync_warmup(url: str, count: int = 200) -> int:
    """Warm the node up with ``count`` increments; returns ``count``."""
    with Client(url) as client:
        for _ in range(count):
            client.increment()
    return count


if __name__ == "__main__":
    raise SystemExit(main())

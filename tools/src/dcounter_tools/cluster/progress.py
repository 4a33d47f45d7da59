"""Progress display while a run is going: a rich bar on a terminal, plain lines otherwise.

Progress goes to stderr, so stdout carries only the report (text or ``--json``).
"""

from __future__ import annotations

import sys
import time
from typing import Protocol, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

__all__ = ["PlainProgress", "ProgressSink", "QuietProgress", "RichProgress", "make_progress"]


class ProgressSink(Protocol):
    """What the runner tells the user while it works."""

    def event(self, text: str) -> None:
        """Something happened (a node started, a fault began...)."""

    def writing(self, elapsed: float, duration: float, acked: int, failed: int) -> None:
        """The write phase advanced."""

    def phase(self, text: str) -> None:
        """A new phase began (writing, converging...)."""

    def close(self) -> None:
        """Stop displaying."""


class QuietProgress:
    """Shows nothing."""

    def event(self, text: str) -> None:
        pass

    def writing(self, elapsed: float, duration: float, acked: int, failed: int) -> None:
        pass

    def phase(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


class PlainProgress:
    """Timestamped lines, with write progress at most once a second."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._start = time.monotonic()
        self._last_write_line = -1.0

    def _line(self, text: str) -> None:
        print(f"[{time.monotonic() - self._start:7.2f}s] {text}", file=self._stream, flush=True)

    def event(self, text: str) -> None:
        self._line(text)

    def phase(self, text: str) -> None:
        self._line(text)

    def writing(self, elapsed: float, duration: float, acked: int, failed: int) -> None:
        finished = elapsed >= duration
        if self._last_write_line >= duration or (
            not finished and elapsed - self._last_write_line < 1.0
        ):
            return
        self._last_write_line = elapsed
        shown = min(elapsed, duration)
        self._line(f"writing {shown:.1f}/{duration:g} s: {acked} acknowledged, {failed} failed")

    def close(self) -> None:
        pass


class RichProgress:
    """A rich progress bar for the write phase, with events printed above it."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self._progress.start()
        self._task: TaskID | None = None

    def event(self, text: str) -> None:
        self._progress.console.print(text, markup=False, highlight=False)

    def phase(self, text: str) -> None:
        if self._task is not None:
            # An indeterminate (pulsing) bar for phases of unknown length.
            self._progress.reset(self._task, total=None, description=text, detail="")
        else:
            self._task = self._progress.add_task(text, total=None, detail="")

    def writing(self, elapsed: float, duration: float, acked: int, failed: int) -> None:
        if self._task is None:
            self._task = self._progress.add_task("writing", total=duration, detail="")
        self._progress.update(
            self._task,
            description="writing",
            total=duration,
            completed=min(elapsed, duration),
            detail=f"{acked} acked, {failed} failed",
        )

    def close(self) -> None:
        self._progress.stop()


def make_progress(*, quiet: bool = False, stream: TextIO | None = None) -> ProgressSink:
    """A rich bar when ``stream`` (stderr) is a terminal, plain lines otherwise."""
    out = sys.stderr if stream is None else stream
    if quiet:
        return QuietProgress()
    if out.isatty():
        return RichProgress(Console(file=out))
    return PlainProgress(out)

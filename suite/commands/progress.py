"""Progress display for long commands: a rich bar with ETA on a terminal, plain lines elsewhere."""
from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Iterator, Protocol


class Progress(Protocol):
    def step(self, description: str) -> None: ...

    def note(self, text: str) -> None: ...

    def advance(self) -> None: ...


class _PlainProgress:
    """One line per step on stderr (CI logs, pipes, no rich installed)."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.started = total, 0, time.monotonic()

    def step(self, description: str) -> None:
        print(f"[{self.done}/{self.total} {time.monotonic() - self.started:5.0f}s] {description}", file=sys.stderr, flush=True)

    def note(self, text: str) -> None:
        pass  # per-API chatter is only worth showing on a live bar

    def advance(self) -> None:
        self.done += 1


class _RichProgress:
    def __init__(self, bar, task) -> None:
        self.bar, self.task, self.stage = bar, task, ""

    def step(self, description: str) -> None:
        self.stage = description
        self.bar.update(self.task, description=description)

    def note(self, text: str) -> None:
        self.bar.update(self.task, description=f"{self.stage} · {text}"[:100])

    def advance(self) -> None:
        self.bar.advance(self.task)


@contextmanager
def progress_bar(total: int) -> Iterator[Progress]:
    """A bar over ``total`` steps; rich (with ETA) when stderr is a terminal and rich is installed."""
    try:
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
        from rich.progress import Progress as RichBar
    except ImportError:
        RichBar = None  # noqa: N806
    if RichBar is None or not sys.stderr.isatty():
        yield _PlainProgress(total)
        return
    from rich.console import Console

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("ETA"), TimeRemainingColumn())
    with RichBar(*columns, console=Console(stderr=True), transient=False) as bar:
        yield _RichProgress(bar, bar.add_task("starting", total=total))

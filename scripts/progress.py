"""Progress bars for long work (model training, load generation, the benches, `make run`'s phases), drawn with
rich on stderr and only when it is a terminal: piped or captured output (CI, tests, `> log`) stays as it was.

    with progress("training", total=150) as advance:
        for ...:
            advance()                 # or advance(10), or advance(completed=n) to set the position
"""
from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)


def is_terminal(stream=None) -> bool:
    stream = sys.stderr if stream is None else stream
    return hasattr(stream, "isatty") and stream.isatty()


@contextmanager
def progress(description: str, total: float | None, console: Console | None = None) -> Iterator[Callable[..., None]]:
    """A bar for ``total`` steps (None: unknown); yields ``advance(n=1, completed=None)``. ``console``: where to draw
    (default stderr; drawn only when it is a terminal)."""
    console = console or Console(stderr=True)
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TimeRemainingColumn(), console=console, disable=not console.is_terminal, transient=False)
    with bar:
        task = bar.add_task(description, total=total)

        def advance(n: float = 1, completed: float | None = None) -> None:
            if completed is not None:
                bar.update(task, completed=completed)
            else:
                bar.advance(task, n)

        yield advance


def tracked(items, description: str, total: int | None = None):
    """``items`` with a bar that advances as they are consumed (``for seed in tracked(range(n), "seeds")``)."""
    with progress(description, total if total is not None else len(items)) as advance:
        for item in items:
            yield item
            advance()

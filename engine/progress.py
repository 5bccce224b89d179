"""One console and progress bars for every long loop."""
from __future__ import annotations

from typing import Iterable, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)
T = TypeVar("T")


def progress(disable: bool = False) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False, disable=disable)


def track(items: Iterable[T], description: str, total: int | None = None, disable: bool = False) -> Iterable[T]:
    """Iterate with a progress bar (none with `disable`: the other processes of a run leave it to
    rank 0); each item also ticks the thread governor (`engine.threads`)."""
    from engine.threads import tick

    with progress(disable) as p:
        for item in p.track(items, total=total, description=description):
            tick()
            yield item

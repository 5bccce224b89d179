"""One console and progress bars for every long loop."""
from __future__ import annotations

from typing import Iterable, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)
T = TypeVar("T")


def progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False)


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterable[T]:
    """Iterate with a progress bar; each item also ticks the thread governor (`engine.threads`)."""
    from engine.threads import tick

    with progress() as p:
        for item in p.track(items, total=total, description=description):
            tick()
            yield item

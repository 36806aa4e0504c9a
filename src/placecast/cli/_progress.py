"""Progress bars on stderr for the library's ``progress(n_done, n_total)`` callbacks.

A bar is drawn only when stderr is a terminal and ``--quiet`` was not given: piped or
redirected output (scripts, CI logs) stays free of control sequences.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console

from placecast._progress import ProgressCallback

__all__ = ["is_quiet", "progress_bar", "set_quiet", "shows_progress"]

_STATE = {"quiet": False}


def set_quiet(quiet: bool) -> None:
    """Turn progress bars (and other optional chatter) off for this process."""
    _STATE["quiet"] = bool(quiet)


def is_quiet() -> bool:
    """Whether ``--quiet`` was given."""
    return _STATE["quiet"]


def _stderr_console() -> Console:
    # made at call time, so the terminal test sees the current stderr and environment
    return Console(stderr=True)


def shows_progress() -> bool:
    """True when a progress bar would be drawn (stderr is a terminal, not ``--quiet``)."""
    return not _STATE["quiet"] and _stderr_console().is_terminal


@contextmanager
def progress_bar(description: str) -> Iterator[ProgressCallback]:
    """A ``progress(n_done, n_total)`` callback drawing a bar on stderr while inside.

    The bar disappears when the block ends; it is not drawn at all when stderr is not a
    terminal or with ``--quiet`` (the callback then does nothing).
    """
    if not shows_progress():
        yield lambda n_done, n_total: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = _stderr_console()
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task(description, total=None)

        def update(n_done: int, n_total: int) -> None:
            bar.update(task, completed=n_done, total=n_total)

        yield update

"""Progress reporting for long computations, without any display dependency.

Long-running library functions (backtests, tuning, audits, the marked ETAS fit) accept
``progress: ProgressCallback | None``: a callable ``progress(n_done, n_total)`` called as
work finishes (``n_total`` may grow, e.g. when an iteration limit is replaced by early
convergence the last call has ``n_done == n_total``). The library never imports a
display library; the command line renders the calls as a progress bar on stderr
(``placecast.cli._progress``), the web service stores them as job progress.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["ProgressCallback", "report", "scaled"]

#: ``progress(n_done, n_total)``: called after each unit of work is finished.
ProgressCallback = Callable[[int, int], None]


def report(progress: ProgressCallback | None, n_done: int, n_total: int) -> None:
    """Call ``progress(n_done, n_total)`` when a callback is given.

    Examples
    --------
    >>> seen = []
    >>> report(lambda done, total: seen.append((done, total)), 1, 4)
    >>> report(None, 2, 4)
    >>> seen
    [(1, 4)]
    """
    if progress is not None:
        progress(int(n_done), int(n_total))


def scaled(progress: ProgressCallback | None, offset: int, n_total: int
           ) -> ProgressCallback | None:
    """A callback for one stage of a larger job: ``(done, _)`` -> ``(offset + done, n_total)``.

    Examples
    --------
    >>> seen = []
    >>> stage = scaled(lambda done, total: seen.append((done, total)), 10, 30)
    >>> stage(5, 10)
    >>> seen
    [(15, 30)]
    """
    if progress is None:
        return None

    def call(n_done: int, _n_stage: int) -> None:
        progress(offset + int(n_done), n_total)

    return call

"""Exposure audit: how often a policy flags each area unit, and how concentrated that is.

Everything here is about **area units** (cells, beats, districts), never persons. The
inputs are plain arrays so that any backtest (``placecast.evaluate.run_backtest`` or a
hand-made loop) can feed them: a boolean ``flags`` matrix of shape
``(n_periods, n_units)`` (unit flagged in that period) and the ``observed`` events per
unit per period of the same shape.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from placecast.exceptions import ParameterError

__all__ = [
    "ExposureResult",
    "check_flags",
    "exposure_audit",
    "gini",
    "persistence",
    "run_lengths",
    "top_share",
]

#: Fractions of units for the "share of flags held by the top units" summary.
TOP_FRACTIONS = (0.01, 0.05, 0.10)


def check_flags(flags: npt.ArrayLike, observed: npt.ArrayLike | None = None
                ) -> tuple[np.ndarray, np.ndarray | None]:
    """Validate a flags matrix (and observed counts of the same shape).

    Returns
    -------
    flags : ndarray of bool, shape (n_periods, n_units)
    observed : ndarray of float or None

    Raises
    ------
    ParameterError
        If ``flags`` is not 2-D, holds values other than 0/1, or ``observed`` has another
        shape or negative / non-finite values.
    """
    raw = np.asarray(flags)
    if raw.ndim != 2 or raw.shape[0] == 0 or raw.shape[1] == 0:
        raise ParameterError(f"`flags` must be a non-empty (n_periods, n_units) matrix, got "
                             f"shape {raw.shape}.", param="flags")
    if raw.dtype != bool:
        if not np.isin(raw, (0, 1)).all():
            raise ParameterError("`flags` must be boolean (or 0/1): a unit is flagged in a "
                                 "period or not.", param="flags")
        raw = raw.astype(bool)
    counts = None
    if observed is not None:
        counts = np.asarray(observed, dtype=float)
        if counts.shape != raw.shape:
            raise ParameterError(f"`observed` events have shape {counts.shape}; they must match "
                                 f"the flags, {raw.shape} (n_periods, n_units).",
                                 param=("observed", "flags"))
        if not np.isfinite(counts).all() or (counts < 0).any():
            raise ParameterError("`observed` event counts must be finite and non-negative.",
                                 param="observed")
    return raw, counts


def gini(values: npt.ArrayLike) -> float:
    r"""Gini coefficient of non-negative values (0 = equal, (n-1)/n = one holds all).

    .. math:: G = \frac{\sum_i \sum_j |x_i - x_j|}{2 n^2 \bar x}
              = \frac{2 \sum_{i=1}^n i\, x_{(i)}}{n \sum_i x_i} - \frac{n+1}{n}

    with :math:`x_{(i)}` sorted increasingly. O(n log n).

    Returns ``nan`` when all values are zero.

    Examples
    --------
    >>> gini([0, 0, 0, 4])
    0.75
    >>> gini([2, 2, 2])
    0.0
    """
    x = np.sort(np.asarray(values, dtype=float).ravel())
    if x.size == 0 or (x < 0).any():
        raise ParameterError("gini needs a non-empty array of non-negative `values`.",
                             param="values")
    total = x.sum()
    if total <= 0:
        return float("nan")
    n = x.size
    ranks = np.arange(1, n + 1)
    return float(round(2.0 * np.sum(ranks * x) / (n * total) - (n + 1) / n, 12))


def top_share(values: npt.ArrayLike, fraction: float) -> float:
    """Share of the total held by the top ``ceil(fraction * n)`` units.

    Examples
    --------
    >>> top_share([5, 3, 1, 1, 0, 0, 0, 0, 0, 0], 0.10)
    0.5
    >>> top_share([5, 3, 1, 1, 0, 0, 0, 0, 0, 0], 0.20)
    0.8
    """
    if not 0 < fraction <= 1:
        raise ParameterError(f"`fraction` must be in (0, 1], got {fraction}.",
                             param="fraction")
    x = np.sort(np.asarray(values, dtype=float).ravel())[::-1]
    total = x.sum()
    if total <= 0:
        return float("nan")
    k = max(1, math.ceil(round(fraction * x.size, 9)))
    return float(x[:k].sum() / total)


def run_lengths(flags: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Lengths of the runs of consecutive flagged periods, per unit.

    Parameters
    ----------
    flags : array of bool, shape (n_periods, n_units)

    Returns
    -------
    unit : ndarray of int
        Unit index of each run.
    length : ndarray of int
        Number of consecutive flagged periods in the run.

    Notes
    -----
    Vectorised: run starts and ends are where the padded column differences are +1 / -1.
    O(n_periods x n_units).

    Examples
    --------
    >>> unit, length = run_lengths([[1, 0], [1, 1], [0, 1], [1, 1]])
    >>> unit.tolist(), length.tolist()
    ([0, 0, 1], [2, 1, 3])
    """
    f, _ = check_flags(flags)
    padded = np.zeros((f.shape[0] + 2, f.shape[1]), dtype=np.int8)
    padded[1:-1] = f
    step = np.diff(padded, axis=0)  # (n_periods + 1, n_units)
    start_unit, start_t = np.nonzero(step.T == 1)
    _, end_t = np.nonzero(step.T == -1)
    # nonzero on the transpose yields runs sorted by unit, then by time: starts and ends pair
    return start_unit.astype(np.int64), (end_t - start_t).astype(np.int64)


def persistence(flags: npt.ArrayLike) -> float:
    """Probability that a unit flagged in one period is flagged again in the next.

    ``nan`` when nothing is flagged before the last period.
    """
    f, _ = check_flags(flags)
    before = f[:-1]
    n = before.sum()
    if n == 0:
        return float("nan")
    return float((before & f[1:]).sum() / n)


@dataclass(frozen=True, eq=False)
class ExposureResult:
    """How often a policy flagged each area unit over a backtest.

    Attributes
    ----------
    units : pandas.DataFrame
        One row per unit: ``unit_id``, ``n_flagged`` (periods flagged), ``flag_share``
        (its share of all unit-period flags), ``n_events``, ``event_share``,
        ``ratio = flag_share / event_share``, ``expected_flags`` (flags it would get if
        flags followed events: ``n_flags x event_share``), ``excess_flags``,
        ``longest_run`` and ``status`` (``"over"``, ``"under"`` or ``""``).
    summary : dict
        ``n_periods``, ``n_units``, ``n_flags``, ``n_units_ever_flagged``,
        ``top_1pct_share``, ``top_5pct_share``, ``top_10pct_share`` (of flags), the same of
        events, ``gini_flags``, ``gini_events``, ``mean_run_length``, ``max_run_length``,
        ``persistence``, ``n_over``, ``n_under``, ``factor``.
    runs : pandas.DataFrame
        Every run of consecutive flagged periods: ``unit_id``, ``length``.
    """

    units: pd.DataFrame
    summary: dict[str, Any]
    runs: pd.DataFrame = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The summary and the over/under-flagged units, JSON-ready."""
        table = self.units
        flagged = table[table["status"] != ""]
        return {"summary": dict(self.summary),
                "over_under": flagged.replace([np.inf], None).to_dict(orient="records")}

    def to_frame(self) -> pd.DataFrame:
        """The per-unit table (most flagged first)."""
        return self.units.copy()


def exposure_audit(
    flags: npt.ArrayLike,
    observed: npt.ArrayLike,
    *,
    unit_id: npt.ArrayLike | None = None,
    factor: float = 2.0,
    min_count: int = 2,
) -> ExposureResult:
    """Audit how a policy's flags fall on area units, against where the events were.

    Parameters
    ----------
    flags : array of bool, shape (n_periods, n_units)
        ``flags[t, u]``: unit ``u`` flagged for period ``t``.
    observed : array of float, shape (n_periods, n_units)
        Events recorded in unit ``u`` during period ``t``.
    unit_id : array, optional
        Unit ids for the table (default ``0 .. n_units-1``).
    factor : float
        A unit is *over-flagged* when ``flag_share >= factor x event_share`` and
        *under-flagged* when ``event_share >= factor x flag_share``.
    min_count : int
        ... and only when the larger of its flags or its expected flags
        (``n_flags x event_share``) is at least ``min_count``, so that one stray flag or
        one event does not label a unit.

    Returns
    -------
    ExposureResult

    Notes
    -----
    Concentration: ``top_k_share`` is the share of all flags held by the
    ``ceil(k x n_units)`` most-flagged units; Gini is over all units (never-flagged ones
    count as 0). Persistence is P(flagged at t+1 | flagged at t). O(n_periods x n_units).
    """
    f, counts = check_flags(flags, observed)
    assert counts is not None
    if not factor > 1:
        raise ParameterError(f"`factor` must be greater than 1, got {factor}.", param="factor")
    n_periods, n_units = f.shape
    ids = (np.arange(n_units) if unit_id is None else np.asarray(unit_id))
    if ids.shape != (n_units,):
        raise ParameterError(f"`unit_id` has {ids.size} entries for {n_units} units; pass "
                             "one per unit.", param="unit_id")
    n_flagged = f.sum(axis=0).astype(np.int64)
    n_events = counts.sum(axis=0)
    total_flags = int(n_flagged.sum())
    total_events = float(n_events.sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        flag_share = n_flagged / total_flags if total_flags else np.full(n_units, np.nan)
        event_share = n_events / total_events if total_events else np.full(n_units, np.nan)
        ratio = flag_share / event_share
    expected = total_flags * event_share
    run_unit, run_length = run_lengths(f)
    longest = np.zeros(n_units, dtype=np.int64)
    np.maximum.at(longest, run_unit, run_length)
    big_enough = np.maximum(n_flagged, expected) >= min_count
    over = big_enough & (flag_share >= factor * event_share) & (n_flagged > 0)
    under = big_enough & (event_share >= factor * flag_share) & (n_events > 0)
    status = np.where(over, "over", np.where(under, "under", ""))
    table = pd.DataFrame({
        "unit_id": ids, "n_flagged": n_flagged, "flag_share": flag_share,
        "n_events": n_events, "event_share": event_share, "ratio": ratio,
        "expected_flags": expected, "excess_flags": n_flagged - expected,
        "longest_run": longest, "status": status,
    }).sort_values(["n_flagged", "n_events"], ascending=False, kind="stable")
    summary: dict[str, Any] = {
        "n_periods": int(n_periods), "n_units": int(n_units), "n_flags": total_flags,
        "n_units_ever_flagged": int((n_flagged > 0).sum()),
        "n_events": total_events,
        "n_units_with_events": int((n_events > 0).sum()),
    }
    for fraction in TOP_FRACTIONS:
        pct = f"{round(fraction * 100):d}pct"
        summary[f"top_{pct}_share_flags"] = top_share(n_flagged, fraction)
        summary[f"top_{pct}_share_events"] = top_share(n_events, fraction)
    summary.update({
        "gini_flags": gini(n_flagged), "gini_events": gini(n_events),
        "mean_run_length": float(run_length.mean()) if run_length.size else float("nan"),
        "max_run_length": int(run_length.max()) if run_length.size else 0,
        "persistence": persistence(f),
        "share_flags_on_units_without_events": (
            float(n_flagged[n_events == 0].sum() / total_flags) if total_flags else float("nan")),
        "n_over": int(over.sum()), "n_under": int(under.sum()), "factor": float(factor),
    })
    runs = pd.DataFrame({"unit_id": ids[run_unit], "length": run_length})
    return ExposureResult(units=table.reset_index(drop=True), summary=summary, runs=runs)

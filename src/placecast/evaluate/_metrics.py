"""Forecast metrics: hit rate, PAI, PEI*, Poisson log score, calibration, hit-rate curve.

Every metric comes twice: on a ``Forecast`` and the events of its window (``pai(forecast,
events, area="0.25sqmi")``), and on plain arrays (``pai_from_counts(observed, flagged,
unit_area, region_area)``) so that other parts of placecast (audits, reports) reuse the
same arithmetic. All are pure functions.

Conventions
-----------
* ``N`` is the number (total weight) of events of the window that fall in a unit; events
  outside every unit are not counted.
* Units are flagged in rank order (highest intensity first) while their total area stays
  within the budget (``Forecast.top_units``). Ties in intensity are broken by unit order
  (``ties="first"``, the set an analyst would actually flag), or averaged over every
  random tie-break (``ties="mean"``: the tied group at the budget edge counts its mean
  events per unit times the number of its units that fit).
* A metric that is undefined (no events in the window, so ``N = 0``; ``n* = 0`` for PEI*)
  is ``nan`` with an ``UndefinedMetricWarning``, never a sentinel such as ``-1``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.special import gammaln

from placecast.events import Events
from placecast.exceptions import ParameterError, UndefinedMetricWarning
from placecast.forecast import Forecast
from placecast.quantities import AreaBudget, parse_area
from placecast.units import Units, aggregate

__all__ = [
    "Calibration",
    "ForecastScore",
    "HitRateCurve",
    "calibration",
    "flag_units",
    "hit_rate",
    "hit_rate_curve",
    "hit_rate_curve_from_counts",
    "hit_rate_from_counts",
    "log_score",
    "log_score_from_counts",
    "observed_counts",
    "pai",
    "pai_from_counts",
    "pei_star",
    "pei_star_from_counts",
    "SQUARE_MILE_M2",
    "resolve_area",
    "score_forecast",
    "top_units_by_area",
]

#: Intensity floor of the log score: a unit forecast at 0 that sees events scores as if
#: it had been forecast ``DEFAULT_FLOOR`` events (log(1e-6) = -13.8 per event).
DEFAULT_FLOOR = 1e-6
_TIES = ("first", "mean")


#: Square metres in one square mile (international mile, 1609.344 m): the one constant
#: every report, table and check of placecast converts with.
SQUARE_MILE_M2 = 1609.344**2


def _undefined(what: str, why: str) -> float:
    warnings.warn(f"{what} is undefined: {why}; returning nan.", UndefinedMetricWarning,
                  stacklevel=3)
    return float("nan")


# ---------------------------------------------------------------------- helpers
def resolve_area(area: str | float | AreaBudget, units: Units) -> float:
    """Return the flagged-area budget in square metres, checked against the units and region.

    Parameters
    ----------
    area : str, float or AreaBudget
        ``"0.25sqmi"``, ``"1%"`` of the region, or square metres.
    units : Units
        The area units (their smallest area and the region area bound the budget).

    Raises
    ------
    ParameterError
        If the budget is smaller than the smallest unit (nothing could be flagged) or
        larger than the region.
    """
    budget = area if isinstance(area, AreaBudget) else parse_area(area, name="area budget")
    square_metres = budget.resolve(units.region_area)
    smallest = float(np.min(units.area))
    if square_metres < smallest * (1 - 1e-9):
        raise ParameterError(
            f"area budget {budget.text} ({square_metres:,.0f} m²) is smaller than one unit "
            f"({smallest:,.0f} m²): no unit could be flagged. Pass a larger `area`, or use "
            "smaller units.", param="area"
        )
    if square_metres > units.region_area * (1 + 1e-9):
        raise ParameterError(
            f"area budget {budget.text} ({square_metres:,.0f} m²) is larger than the region "
            f"({units.region_area:,.0f} m²). Pass a smaller `area`, e.g. 1%.", param="area"
        )
    return float(square_metres)


def top_units_by_area(intensity: npt.ArrayLike, unit_area: npt.ArrayLike,
                      area: float) -> np.ndarray:
    """Return the highest-intensity units whose total area stays within ``area``.

    Same rule as ``Forecast.top_units``: a stable sort on decreasing intensity (ties by
    unit order), then the longest prefix whose cumulative area is <= ``area``.
    O(u log u).
    """
    values = np.asarray(intensity, dtype=float)
    order = np.argsort(-values, kind="stable")
    cumulative = np.cumsum(np.asarray(unit_area, dtype=float)[order])
    return order[cumulative <= area * (1 + 1e-9)]


def observed_counts(events: Events, units: Units, window: Any = None) -> np.ndarray:
    """Events (weights summed) per unit, optionally only those inside ``window``."""
    if window is not None:
        events = events.between(window.start, window.end)
    return aggregate(events, units)


def _counts_for(forecast: Forecast, events: Events | npt.ArrayLike) -> np.ndarray:
    if isinstance(events, Events):
        return observed_counts(events, forecast.units, forecast.window)
    counts = np.asarray(events, dtype=float)
    if counts.shape != (len(forecast.units),):
        raise ParameterError(f"observed counts have shape {counts.shape}; expected "
                             f"({len(forecast.units)},), one per unit.")
    return counts


def _flagged_hits(intensity: np.ndarray, observed: np.ndarray, flagged: np.ndarray,
                  ties: str) -> float:
    """Count events in the flagged units (``ties="mean"``: edge group averaged)."""
    if ties not in _TIES:
        raise ParameterError(f"ties={ties!r}; use 'first' or 'mean'.")
    hits = float(observed[flagged].sum())
    if ties == "first" or len(flagged) == 0 or len(flagged) == len(intensity):
        return hits
    edge = intensity[flagged].min()
    in_group = intensity == edge
    taken = np.zeros(len(intensity), dtype=bool)
    taken[flagged] = True
    n_taken = int((in_group & taken).sum())
    group_events = float(observed[in_group].sum())
    return hits - float(observed[in_group & taken].sum()) + group_events * (
        n_taken / int(in_group.sum()))


# ---------------------------------------------------------------------- array metrics
def hit_rate_from_counts(observed: npt.ArrayLike, flagged: npt.ArrayLike) -> float:
    """Share of the events that fell in the flagged units, ``n / N``.

    Parameters
    ----------
    observed : array of float, shape (n_units,)
        Events per unit in the window.
    flagged : array of int
        Indices of the flagged units.

    Returns
    -------
    float
        ``n / N``; ``nan`` with ``UndefinedMetricWarning`` when ``N = 0``.

    Examples
    --------
    >>> hit_rate_from_counts([3, 1, 0, 4], [0, 3])
    0.875
    """
    counts = np.asarray(observed, dtype=float)
    total = counts.sum()
    if total <= 0:
        return _undefined("hit rate", "no events in the window (N = 0)")
    return float(counts[np.asarray(flagged, dtype=np.int64)].sum() / total)


def pai_from_counts(observed: npt.ArrayLike, flagged: npt.ArrayLike, unit_area: npt.ArrayLike,
                    region_area: float) -> float:
    """Predictive accuracy index ``PAI = (n / N) / (a / A)``.

    ``n`` events of ``N`` fell in flagged units of total area ``a``, out of a region of
    area ``A`` (Chainey, Tompson & Uhlig 2008).

    Returns
    -------
    float
        ``nan`` with ``UndefinedMetricWarning`` when ``N = 0`` or nothing is flagged.

    Examples
    --------
    >>> pai_from_counts([3, 1, 0, 4], [0, 3], [1.0, 1.0, 1.0, 1.0], 4.0)
    1.75
    """
    counts = np.asarray(observed, dtype=float)
    index = np.asarray(flagged, dtype=np.int64)
    if counts.sum() <= 0:
        return _undefined("PAI", "no events in the window (N = 0)")
    flagged_area = float(np.asarray(unit_area, dtype=float)[index].sum())
    if flagged_area <= 0:
        return _undefined("PAI", "no unit is flagged (a = 0)")
    return float((counts[index].sum() / counts.sum()) / (flagged_area / region_area))


def pei_star_from_counts(observed: npt.ArrayLike, flagged: npt.ArrayLike) -> float:
    """Predictive efficiency index ``PEI* = n / n*``.

    ``n*`` is the most events any set of as many units as were flagged (``k``) could have
    captured: the sum of the ``k`` largest observed counts (Hunt 2016; the NIJ challenge's
    corrected PEI).

    Returns
    -------
    float
        In [0, 1]; ``nan`` with ``UndefinedMetricWarning`` when ``n* = 0``.

    Examples
    --------
    >>> pei_star_from_counts([3, 1, 0, 4], [0, 1])
    0.5714285714285714
    """
    counts = np.asarray(observed, dtype=float)
    index = np.asarray(flagged, dtype=np.int64)
    k = len(index)
    best = float(np.sort(counts)[::-1][:k].sum()) if k else 0.0
    if best <= 0:
        return _undefined("PEI*", "no events could have been captured (n* = 0)")
    return float(counts[index].sum() / best)


def log_score_from_counts(intensity: npt.ArrayLike, observed: npt.ArrayLike, *,
                          floor: float = DEFAULT_FLOOR) -> float:
    r"""Poisson predictive log-likelihood per event.

    .. math:: \frac{1}{N} \sum_u \left[ y_u \log \max(\lambda_u, f) - \lambda_u
              - \log y_u! \right]

    with forecast ``lambda_u``, observed ``y_u``, ``N = sum y_u`` and a floor ``f`` so
    that a unit forecast at 0 that saw events costs ``log f`` per event instead of
    ``-inf`` (units with ``y_u = 0`` and ``lambda_u = 0`` contribute 0). Higher is better.
    Non-integer ``y`` (weights) use ``log Gamma(y + 1)``.

    Returns
    -------
    float
        ``nan`` with ``UndefinedMetricWarning`` when ``N = 0`` (the total likelihood
        ``-sum lambda`` is still meaningful but "per event" is not).

    References
    ----------
    Gneiting, T. & Raftery, A. E. (2007). Strictly proper scoring rules, prediction and
    estimation. JASA 102(477), 359-378.

    Examples
    --------
    >>> round(log_score_from_counts([1.0, 1.0], [1, 0]), 6)
    -2.0
    """
    lam = np.asarray(intensity, dtype=float)
    y = np.asarray(observed, dtype=float)
    total = y.sum()
    if total <= 0:
        return _undefined("log score", "no events in the window (N = 0)")
    if not floor > 0:
        raise ParameterError(f"log score floor must be positive, got {floor}.")
    positive = y > 0
    loglik = float(np.sum(y[positive] * np.log(np.maximum(lam[positive], floor)))
                   - lam.sum() - np.sum(gammaln(y[positive] + 1.0)))
    return loglik / float(total)


@dataclass(frozen=True, slots=True)
class HitRateCurve:
    """Hit rate against the share of the region flagged.

    Attributes
    ----------
    coverage : ndarray
        Flagged area / region area after each unit in rank order, starting at 0.
    hit_rate : ndarray
        Share of events captured at each coverage, starting at 0.
    auc : float
        Area under the curve over coverage [0, c_max] divided by ``c_max`` (0.5: as good
        as random flagging when units cover the region; 1: perfect).
    """

    coverage: np.ndarray
    hit_rate: np.ndarray
    auc: float

    def at(self, coverage: float) -> float:
        """Hit rate at ``coverage`` (step function: whole units only)."""
        index = int(np.searchsorted(self.coverage, coverage * (1 + 1e-9), side="right")) - 1
        return float(self.hit_rate[max(index, 0)])

    def to_frame(self) -> pd.DataFrame:
        """Table of ``coverage, hit_rate``."""
        return pd.DataFrame({"coverage": self.coverage, "hit_rate": self.hit_rate})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"coverage": self.coverage.tolist(), "hit_rate": self.hit_rate.tolist(),
                "auc": self.auc}


def hit_rate_curve_from_counts(intensity: npt.ArrayLike, observed: npt.ArrayLike,
                               unit_area: npt.ArrayLike, region_area: float) -> HitRateCurve:
    """Hit rate as units are flagged one by one in rank order (ties by unit order).

    The AUC integrates the piecewise-linear curve by the trapezoid rule. O(u log u).
    Returns a curve of ``nan`` hit rates (and ``nan`` AUC, with a warning) when the window
    has no events.
    """
    lam = np.asarray(intensity, dtype=float)
    y = np.asarray(observed, dtype=float)
    order = np.argsort(-lam, kind="stable")
    coverage = np.concatenate([[0.0], np.cumsum(np.asarray(unit_area, dtype=float)[order])
                               / region_area])
    total = y.sum()
    if total <= 0:
        _undefined("hit-rate curve", "no events in the window (N = 0)")
        return HitRateCurve(coverage, np.full(len(coverage), np.nan), float("nan"))
    hits = np.concatenate([[0.0], np.cumsum(y[order]) / total])
    auc = float(np.trapezoid(hits, coverage) / coverage[-1]) if coverage[-1] > 0 else float(
        "nan")
    return HitRateCurve(coverage, hits, auc)


# ---------------------------------------------------------------------- forecast metrics
def flag_units(forecast: Forecast, area: str | float | AreaBudget) -> np.ndarray:
    """Return the units a forecast flags within an area budget (checked).

    Raises
    ------
    ParameterError
        If the budget is smaller than one unit or larger than the region.
    """
    return forecast.top_units(resolve_area(area, forecast.units))


def hit_rate(forecast: Forecast, events: Events | npt.ArrayLike, *,
             area: str | float | AreaBudget, ties: str = "first") -> float:
    """Share of the window's events in the units flagged within ``area``.

    Parameters
    ----------
    forecast : Forecast
        The forecast.
    events : Events or array
        Events (those inside ``forecast.window`` are used) or observed counts per unit.
    area : str, float or AreaBudget
        Flagged-area budget: ``"0.25sqmi"``, ``"1%"`` or square metres.
    ties : {"first", "mean"}
        How tied intensities at the budget edge are broken (see the module notes).

    Returns
    -------
    float
        ``n / N``; ``nan`` with ``UndefinedMetricWarning`` when the window has no event.

    References
    ----------
    Chainey, Tompson & Uhlig (2008), Security Journal 21, 4-28.
    """
    observed = _counts_for(forecast, events)
    flagged = flag_units(forecast, area)
    if observed.sum() <= 0:
        return _undefined("hit rate", "no events in the window (N = 0)")
    return _flagged_hits(forecast.intensity, observed, flagged, ties) / float(observed.sum())


def pai(forecast: Forecast, events: Events | npt.ArrayLike, *,
        area: str | float | AreaBudget, ties: str = "first") -> float:
    """Predictive accuracy index ``PAI = (n / N) / (a / A)``.

    ``a`` is the area of the flagged units (rank order, total within ``area``), ``A``
    ``forecast.units.region_area``. ``nan`` with ``UndefinedMetricWarning`` when ``N = 0``.

    References
    ----------
    Chainey, Tompson & Uhlig (2008), Security Journal 21, 4-28.
    """
    observed = _counts_for(forecast, events)
    flagged = flag_units(forecast, area)
    if observed.sum() <= 0:
        return _undefined("PAI", "no events in the window (N = 0)")
    hits = _flagged_hits(forecast.intensity, observed, flagged, ties)
    flagged_area = float(forecast.units.area[flagged].sum())
    return (hits / float(observed.sum())) / (flagged_area / forecast.units.region_area)


def pei_star(forecast: Forecast, events: Events | npt.ArrayLike, *,
             area: str | float | AreaBudget, ties: str = "first") -> float:
    """Predictive efficiency ``PEI* = n / n*`` (``n*``: best ``k`` units' observed events).

    ``nan`` with ``UndefinedMetricWarning`` when ``n* = 0``.

    References
    ----------
    Hunt, J. M. (2016). Do crime hot spots move? NIJ Journal 277; the NIJ Real-Time Crime
    Forecasting Challenge scoring (2017).
    """
    observed = _counts_for(forecast, events)
    flagged = flag_units(forecast, area)
    k = len(flagged)
    best = float(np.sort(observed)[::-1][:k].sum())
    if best <= 0:
        return _undefined("PEI*", "no events could have been captured (n* = 0)")
    return _flagged_hits(forecast.intensity, observed, flagged, ties) / best


def log_score(forecast: Forecast, events: Events | npt.ArrayLike, *,
              floor: float = DEFAULT_FLOOR) -> float:
    """Poisson predictive log-likelihood per event (see ``log_score_from_counts``)."""
    return log_score_from_counts(forecast.intensity, _counts_for(forecast, events),
                                 floor=floor)


def hit_rate_curve(forecast: Forecast, events: Events | npt.ArrayLike) -> HitRateCurve:
    """Hit rate over coverage for a forecast (see ``hit_rate_curve_from_counts``)."""
    return hit_rate_curve_from_counts(forecast.intensity, _counts_for(forecast, events),
                                      forecast.units.area, forecast.units.region_area)


@dataclass(frozen=True, slots=True)
class Calibration:
    """Predicted against observed event totals, overall and by forecast decile.

    Attributes
    ----------
    predicted_total, observed_total : float
        Sum of intensities and of observed events over all units.
    ratio : float
        ``observed_total / predicted_total`` (1 = calibrated in total; nan if nothing was
        predicted).
    by_decile : pandas.DataFrame
        ``decile`` (1 = highest-intensity tenth of units), ``n_units``, ``predicted``,
        ``observed``.
    """

    predicted_total: float
    observed_total: float
    ratio: float
    by_decile: pd.DataFrame

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"predicted_total": self.predicted_total,
                "observed_total": self.observed_total, "ratio": self.ratio,
                "by_decile": self.by_decile.to_dict(orient="records")}


def calibration(forecast: Forecast, events: Events | npt.ArrayLike) -> Calibration:
    """Calibration summary: totals and the ten intensity deciles (ties by unit order)."""
    observed = _counts_for(forecast, events)
    order = forecast.order
    groups = np.array_split(order, 10)
    frame = pd.DataFrame({
        "decile": np.arange(1, 11),
        "n_units": [len(g) for g in groups],
        "predicted": [float(forecast.intensity[g].sum()) for g in groups],
        "observed": [float(observed[g].sum()) for g in groups],
    })
    predicted = forecast.expected_total
    return Calibration(predicted, float(observed.sum()),
                       float(observed.sum() / predicted) if predicted > 0 else float("nan"),
                       frame)


@dataclass(frozen=True, slots=True)
class ForecastScore:
    """Every backtest metric of one forecast at one area budget.

    Attributes
    ----------
    n_events : float
        ``N``, events of the window in the units.
    n_flagged_units : int
        ``k``, units flagged.
    flagged_area, region_area : float
        ``a`` and ``A``, square metres.
    hits : float
        ``n``, events in flagged units.
    hit_rate, pai, pei_star, log_score : float
        The metrics (``nan`` when undefined).
    """

    n_events: float
    n_flagged_units: int
    flagged_area: float
    region_area: float
    hits: float
    hit_rate: float
    pai: float
    pei_star: float
    log_score: float

    def to_dict(self) -> dict[str, Any]:
        """Field name -> value."""
        return {name: getattr(self, name) for name in self.__slots__}


def score_forecast(forecast: Forecast, events: Events | npt.ArrayLike, *,
                   area: str | float | AreaBudget, ties: str = "first",
                   floor: float = DEFAULT_FLOOR) -> ForecastScore:
    """All metrics at once (flags once; warns once per undefined metric)."""
    observed = _counts_for(forecast, events)
    flagged = flag_units(forecast, area)
    return _score_arrays(forecast.intensity, observed, flagged, forecast.units.area,
                         forecast.units.region_area, ties=ties, floor=floor)


def _score_arrays(intensity: np.ndarray, observed: np.ndarray, flagged: np.ndarray,
                  unit_area: np.ndarray, region_area: float, *, ties: str = "first",
                  floor: float = DEFAULT_FLOOR) -> ForecastScore:
    total = float(observed.sum())
    hits = _flagged_hits(intensity, observed, flagged, ties)
    flagged_area = float(unit_area[flagged].sum())
    best = float(np.sort(observed)[::-1][:len(flagged)].sum())
    if total > 0:
        rate = hits / total
        pai_value = rate / (flagged_area / region_area) if flagged_area > 0 else float("nan")
        score = log_score_from_counts(intensity, observed, floor=floor)
    else:
        rate = pai_value = score = _undefined("hit rate, PAI and log score",
                                              "no events in the window (N = 0)")
    pei = hits / best if best > 0 else _undefined("PEI*", "no events could have been "
                                                  "captured (n* = 0)")
    return ForecastScore(total, int(len(flagged)), flagged_area, float(region_area), hits,
                         float(rate), float(pai_value), float(pei), float(score))

"""Honest evaluation: metrics (hit rate, PAI, PEI*, log score) and rolling backtests.

Metrics are pure functions on a ``Forecast`` and the events of its window, or on plain
arrays (``*_from_counts``). ``run_backtest`` refits every model at every origin on the
events strictly before it and scores each window; ``BacktestResult`` holds the table,
summaries, paired tests and which units were flagged at each origin.
"""

from placecast.evaluate._backtest import (
    COLUMNS,
    BacktestResult,
    PairedComparison,
    data_end,
    rolling_origins,
    run_backtest,
)
from placecast.evaluate._metrics import (
    DEFAULT_FLOOR,
    SQUARE_MILE_M2,
    Calibration,
    ForecastScore,
    HitRateCurve,
    calibration,
    flag_units,
    hit_rate,
    hit_rate_curve,
    hit_rate_curve_from_counts,
    hit_rate_from_counts,
    log_score,
    log_score_from_counts,
    observed_counts,
    pai,
    pai_from_counts,
    pei_star,
    pei_star_from_counts,
    resolve_area,
    score_forecast,
    top_units_by_area,
)
from placecast.evaluate._plots import plot_backtest
from placecast.evaluate._protocol import NIJ, NIJProtocol, nij_plan, nij_settings
from placecast.evaluate._tuning import TuningResult, tune

__all__ = [
    "COLUMNS",
    "DEFAULT_FLOOR",
    "NIJ",
    "SQUARE_MILE_M2",
    "BacktestResult",
    "Calibration",
    "ForecastScore",
    "HitRateCurve",
    "NIJProtocol",
    "PairedComparison",
    "TuningResult",
    "calibration",
    "data_end",
    "flag_units",
    "hit_rate",
    "hit_rate_curve",
    "hit_rate_curve_from_counts",
    "hit_rate_from_counts",
    "log_score",
    "log_score_from_counts",
    "nij_plan",
    "nij_settings",
    "observed_counts",
    "pai",
    "pai_from_counts",
    "pei_star",
    "pei_star_from_counts",
    "plot_backtest",
    "resolve_area",
    "rolling_origins",
    "run_backtest",
    "score_forecast",
    "top_units_by_area",
    "tune",
]

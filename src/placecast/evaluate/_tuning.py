"""Grid search over model parameters and cell size.

The search runs on a tuning period kept apart from the evaluation period.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from placecast._progress import scaled
from placecast.evaluate._backtest import BacktestResult, rolling_origins, run_backtest
from placecast.events import Events, to_datetime64
from placecast.exceptions import ParameterError, UndefinedMetricWarning
from placecast.forecast import TimeWindow
from placecast.models import make_model
from placecast.quantities import AreaBudget, parse_duration
from placecast.units import Units

__all__ = ["TuningResult", "tune"]


@dataclass(frozen=True, eq=False)
class TuningResult:
    """What a grid search tried, what it chose, and how the choice did afterwards.

    Attributes
    ----------
    model : str
        The tuned model.
    metric : str
        The metric maximised (mean over tuning origins).
    table : pandas.DataFrame
        One row per candidate: ``cell_size`` (m), the parameters, ``n_origins``,
        ``mean`` and ``median`` of the metric on the tuning period; best first.
    best_params : dict
        The chosen parameters.
    best_cell_size : float
        The chosen cell size, m.
    tuning_origins : ndarray of datetime64[ns]
        Origins of the tuning period (their windows end before the evaluation starts).
    evaluation : BacktestResult or None
        The chosen model (label ``"<model>-tuned"``), the model with default parameters
        and the baselines, scored on the evaluation period with the chosen cell size.
    best_placement : (float, float, float) or None
        With placements tuned: the chosen grid shift (x, y, as fractions of a cell) and
        rotation (degrees).
    """

    model: str
    metric: str
    table: pd.DataFrame
    best_params: dict[str, Any]
    best_cell_size: float
    tuning_origins: np.ndarray
    evaluation: BacktestResult | None = field(default=None, repr=False)
    best_placement: tuple[float, float, float] | None = None

    def to_frame(self) -> pd.DataFrame:
        """Return the candidate table (a copy)."""
        return self.table.copy()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {"model": self.model, "metric": self.metric, "best_params": self.best_params,
                "best_cell_size_m": self.best_cell_size,
                "tuning_origins": [str(o)[:10] for o in self.tuning_origins],
                "candidates": self.table.to_dict(orient="records"),
                "evaluation": None if self.evaluation is None else self.evaluation.to_dict()}


def tune(
    events: Events,
    make_units: Callable[[float], Units],
    *,
    model: str,
    grid: Mapping[str, Sequence[Any]],
    cell_sizes: Sequence[float],
    tuning_start: Any,
    tuning_end: Any,
    evaluation_start: Any,
    evaluation_end: Any | None = None,
    step: str = "7d",
    horizon: str = "7d",
    area: str | float | AreaBudget = "1%",
    metric: str = "pai",
    baselines: Sequence[str] = ("naive",),
    jobs: int = 1,
    dask: Any = None,
    progress: Callable[[int, int], None] | None = None,
    shifts: Sequence[tuple[float, float]] | None = None,
    rotations: Sequence[float] | None = None,
) -> TuningResult:
    """Choose model parameters and cell size on a tuning period, then evaluate after it.

    Every combination of ``grid`` values and ``cell_sizes`` is backtested on the origins
    ``tuning_start .. tuning_end`` whose windows end by ``evaluation_start`` (so no tuning
    window sees an event of the evaluation period); the combination with the highest mean
    ``metric`` wins (ties: the first in grid order). With ``evaluation_end`` the winner,
    the model's defaults and the ``baselines`` are then backtested on
    ``evaluation_start .. evaluation_end`` at the chosen cell size.

    Parameters
    ----------
    events : Events
        All events.
    make_units : callable
        ``make_units(cell_size_m) -> Units`` (e.g. a square grid over the region).
    model : str
        Model name.
    grid : mapping
        ``{parameter: [values]}``.
    cell_sizes : sequence of float
        Cell sizes to try, metres.
    metric : {"pai", "hit_rate", "pei_star", "log_score"}
        What to maximise.
    progress : callable, optional
        ``progress(n_done, n_total)`` counting backtested origins over every candidate and
        the evaluation period (see ``placecast._progress``).
    shifts, rotations : sequence, optional
        Grid placements to try as well (Mohler & Porter): shifts of the grid origin as
        ``(x, y)`` fractions of a cell and rotations in degrees. When given,
        ``make_units`` is called as ``make_units(cell_size, shift, rotation)``.

    Returns
    -------
    TuningResult

    Raises
    ------
    ParameterError
        If the tuning period overlaps the evaluation period, a parameter is unknown, or
        the grid is empty.

    Notes
    -----
    Cost: (number of candidates) x (tuning origins) fits, plus one evaluation backtest.
    Units are built once per cell size.
    """
    if metric not in ("pai", "hit_rate", "pei_star", "log_score"):
        raise ParameterError(f"`metric` {metric!r}: pass pai, hit_rate, pei_star or "
                             "log_score.", param="metric")
    if not cell_sizes:
        raise ParameterError("give at least one cell size to tune over.")
    names = list(grid)
    for values in grid.values():
        if len(values) == 0:
            raise ParameterError("every tuned parameter needs at least one value.")
    make_model(model, **{k: v[0] for k, v in grid.items()})  # names checked early
    eval_start = to_datetime64(evaluation_start, name="evaluation start")
    duration = parse_duration(horizon, name="horizon")
    origins = rolling_origins(tuning_start, tuning_end, step)
    ends = np.array([TimeWindow.starting(o, duration).end for o in origins])
    if len(origins) == 0 or ends[0] > eval_start:
        raise ParameterError(
            f"the tuning period {str(origins[0])[:10] if len(origins) else tuning_start}.."
            f" has no {duration.text} window ending before the evaluation starts "
            f"({str(eval_start)[:10]}); tune on an earlier period.")
    if ends[-1] > eval_start:
        raise ParameterError(
            f"tuning windows would run into the evaluation period: the last tuning origin "
            f"{str(origins[-1])[:10]} + {duration.text} ends {str(ends[-1])[:10]}, after "
            f"the evaluation start {str(eval_start)[:10]}. End tuning by "
            f"{str(duration.subtract_from(eval_start))[:10]}.")
    candidates = [dict(zip(names, values, strict=True))
                  for values in itertools.product(*(grid[n] for n in names))]
    n_evaluation = (len(rolling_origins(evaluation_start, evaluation_end, step))
                    if evaluation_end is not None else 0)
    tune_placement = shifts is not None or rotations is not None
    placements = [((float(fx), float(fy)), float(angle))
                  for fx, fy in (shifts or [(0.0, 0.0)]) for angle in (rotations or [0.0])]
    for (fx, fy), _ in placements:
        if not (0.0 <= fx < 1.0 and 0.0 <= fy < 1.0):
            raise ParameterError(f"grid shifts are fractions of a cell in [0, 1), got "
                                 f"{fx:g},{fy:g}.")
    total = (len(candidates) * len(cell_sizes) * len(placements) * len(origins)
             + n_evaluation)
    done_before = 0
    rows = []
    for cell_size, (shift, angle) in itertools.product(cell_sizes, placements):
        units = (make_units(float(cell_size), shift, angle) if tune_placement  # type: ignore[call-arg]
                 else make_units(float(cell_size)))
        placement = ({"shift_x": shift[0], "shift_y": shift[1], "rotation": angle}
                     if tune_placement else {})
        for params in candidates:
            def step_progress(n_done: int, _n_total: int, base: int = done_before) -> None:
                if progress is not None:
                    progress(base + n_done, total)

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UndefinedMetricWarning)
                result = run_backtest(events, units, models={model: model},
                                      model_params={model: params}, origins=origins,
                                      horizons=[horizon], area=area, jobs=jobs, dask=dask,
                                      progress=step_progress)
            scores = result.records[metric].to_numpy(dtype=float)
            scores = scores[np.isfinite(scores)]
            rows.append({"cell_size": float(cell_size), **placement, **params,
                         "n_origins": int(len(scores)),
                         "mean": float(scores.mean()) if len(scores) else np.nan,
                         "median": float(np.median(scores)) if len(scores) else np.nan})
            done_before += len(origins)
    table = pd.DataFrame(rows)
    order = np.argsort(-table["mean"].fillna(-np.inf).to_numpy(), kind="stable")
    table = table.iloc[order].reset_index(drop=True)
    best = table.iloc[0]
    best_params = {n: _plain(best[n]) for n in names}
    best_cell = float(best["cell_size"])
    best_placement = ((float(best["shift_x"]), float(best["shift_y"]), float(best["rotation"]))
                      if tune_placement else None)
    evaluation = None
    if evaluation_end is not None:
        units = (make_units(best_cell, best_placement[:2], best_placement[2])  # type: ignore[call-arg]
                 if best_placement is not None else make_units(best_cell))
        label = f"{model}-tuned"
        models: dict[str, str] = {label: model, model: model}
        for name in baselines:
            models.setdefault(name, name)
        evaluation = run_backtest(events, units, models=models,
                                  model_params={label: best_params},
                                  start=evaluation_start, end=evaluation_end, step=step,
                                  horizons=[horizon], area=area, jobs=jobs, dask=dask,
                                  progress=scaled(progress, done_before, total))
    return TuningResult(model, metric, table, best_params, best_cell, origins, evaluation,
                        best_placement)


def _plain(value: Any) -> Any:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value



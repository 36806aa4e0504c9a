"""Ensembles and automatic model choice, learned on past origins only.

Both run an internal backtest before the forecast origin ``t0``: for the window length
``W`` and the past origins ``t_k = t0 - W - k * step`` (so every validation window ends by
``t0``), each member model is fitted on the events before ``t_k`` and scored against the
events of ``[t_k, t_k + W)``. Nothing at or after ``t0`` is used.

* ``EnsembleForecast`` (``--model ensemble``) forecasts ``sum_m w_m * lambda_m`` with
  non-negative weights that maximise the Poisson log-likelihood of the validation
  windows (a concave problem, solved with L-BFGS-B and its analytic gradient).
* ``AutoForecast`` (``--model auto``) picks, among the members and their ensemble, the one
  with the best mean Poisson log score on the validation windows, and says which it
  picked and why (``Forecast.params``: ``chosen``, ``validation_scores``, ``weights``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Self

import numpy as np
from scipy import optimize
from scipy.special import gammaln

from placecast.events import Events
from placecast.exceptions import DataError, ParameterError
from placecast.forecast import Forecast, TimeWindow
from placecast.models._base import Forecaster, check_is_fitted, check_positive
from placecast.units import Units

__all__ = ["AutoForecast", "EnsembleForecast", "poisson_weights"]

_FLOOR = 1e-6


def poisson_weights(predictions: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Non-negative weights ``w`` maximising the Poisson log-likelihood of ``P @ w``.

    Parameters
    ----------
    predictions : ndarray, shape (n_cells, n_models)
        Each model's expected counts (all validation windows stacked).
    observed : ndarray, shape (n_cells,)
        Observed counts.

    Returns
    -------
    ndarray, shape (n_models,)

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> p = rng.gamma(1.0, 1.0, size=(5000, 2))
    >>> y = rng.poisson(0.7 * p[:, 0] + 0.2 * p[:, 1])
    >>> np.round(poisson_weights(p, y), 1)
    array([0.7, 0.2])
    """
    predictions = np.asarray(predictions, dtype=float)
    observed = np.asarray(observed, dtype=float)
    column_totals = predictions.sum(axis=0)

    def negative(w: np.ndarray) -> tuple[float, np.ndarray]:
        mean = np.maximum(predictions @ w, _FLOOR)
        value = -(observed @ np.log(mean) - mean.sum())
        gradient = -(predictions.T @ (observed / mean) - column_totals)
        return float(value), gradient

    n_models = predictions.shape[1]
    start = np.full(n_models, 1.0 / n_models)
    found = optimize.minimize(negative, start, jac=True, method="L-BFGS-B",
                              bounds=[(0.0, None)] * n_models)
    return np.asarray(found.x, dtype=float)


def _log_score(intensity: np.ndarray, observed: np.ndarray) -> float:
    """Mean Poisson log-likelihood per event of one window (as ``evaluate.log_score``)."""
    mean = np.maximum(intensity, _FLOOR)
    total = float((observed * np.log(mean) - mean - gammaln(observed + 1.0)).sum())
    return total / max(float(observed.sum()), 1.0)


class EnsembleForecast(Forecaster):
    """Weighted sum of member forecasts, weights learned on past origins only.

    Parameters
    ----------
    members : sequence of str
        Model names (``placecast.models.MODELS``).
    member_params : mapping, optional
        ``{name: {param: value}}`` for the members.
    n_origins : int
        Validation origins before the forecast origin.
    origin_step_days : float
        Days between validation origins.
    covariates : sequence
        Covariate layers handed to members that take them (boost).

    Notes
    -----
    Cost: ``(n_origins + 1) x len(members)`` fits per forecast.
    """

    name = "ensemble"

    def __init__(self, *, members: Sequence[str] | str = ("boost", "sepp", "etas"),
                 member_params: Mapping[str, Mapping[str, Any]] | None = None,
                 n_origins: int = 6, origin_step_days: float = 7.0,
                 covariates: Sequence[Any] = ()) -> None:
        self.members = members
        self.member_params = member_params
        self.n_origins = n_origins
        self.origin_step_days = origin_step_days
        self.covariates = covariates

    def fit(self, events: Events) -> Self:
        """Validate the parameters and keep the events; returns ``self``."""
        from placecast.models import MODELS

        names = ([m.strip().lower() for m in self.members.split(",") if m.strip()]
                 if isinstance(self.members, str) else [str(m).lower() for m in self.members])
        if not names:
            raise ParameterError("members needs at least one model, e.g. boost,sepp,etas.",
                                 param="members")
        allowed = sorted(set(MODELS) - {"ensemble", "auto"})
        for name in names:
            if name not in allowed:
                raise ParameterError(f"members: unknown or nested model {name!r}; choose "
                                     f"from {', '.join(allowed)}.", param="members")
        if isinstance(self.n_origins, bool) or not isinstance(self.n_origins, int) \
                or self.n_origins < 1:
            raise ParameterError(f"n_origins must be a positive whole number, got "
                                 f"{self.n_origins!r}.", param="n_origins")
        self.origin_step_days_ = float(check_positive(self.origin_step_days,
                                                      "origin_step_days") or 7.0)
        self.members_ = names
        self.events_ = events
        self.cache_: dict[Any, Any] = {}
        return self

    # ------------------------------------------------------------------ internals
    def _member(self, name: str) -> Forecaster:
        from placecast.models import MODELS

        params = dict((self.member_params or {}).get(name, {}))
        cls = MODELS[name]
        if self.covariates and "covariates" in cls._param_names():
            params.setdefault("covariates", list(self.covariates))
        return cls(**params)

    def _validation(self, units: Units, window: TimeWindow
                    ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """Member predictions and observations on the validation windows.

        Returns ``(predictions (n_cells, n_members), observed (n_cells,), windows)`` with
        the windows' cells stacked; ``windows`` splits the rows per validation window.
        """
        key = ("validation", id(units), window.start, round(window.days, 6))
        if key in self.cache_:
            return self.cache_[key]
        events: Events = self.events_
        history = events.before(window.start)
        if len(history) == 0:
            raise DataError(f"no events before {window}; the {self.name} model needs history.")
        unit_index = units.assign(history.x, history.y)
        width = np.timedelta64(int(round(window.days * 86400e9)), "ns")
        step = np.timedelta64(int(round(self.origin_step_days_ * 86400e9)), "ns")
        first = history.time.min() + np.timedelta64(28, "D")
        predictions: list[np.ndarray] = []
        observed: list[np.ndarray] = []
        splits: list[np.ndarray] = []
        for k in range(int(self.n_origins)):
            origin = window.start - width - k * step
            if origin <= first:
                break
            inner = TimeWindow(origin, origin + width)
            inside = ((history.time >= inner.start) & (history.time < inner.end)
                      & (unit_index >= 0))
            counts = np.bincount(unit_index[inside], weights=history.weights[inside],
                                 minlength=len(units))
            before = history.before(origin)
            row = [self._member(name).fit(before).predict(units, inner).intensity
                   for name in self.members_]
            predictions.append(np.column_stack(row))
            observed.append(counts)
            splits.append(np.arange(len(units)) + len(units) * len(splits))
        if not predictions:
            raise DataError(
                f"no validation window fits before {window}: the {self.name} model needs at "
                "least one window length plus 28 days of history before the forecast.")
        result = (np.vstack(predictions), np.concatenate(observed), splits)
        self.cache_ = {key: result}
        return result

    def _member_forecasts(self, units: Units, window: TimeWindow) -> np.ndarray:
        history = self.events_.before(window.start)
        return np.column_stack([self._member(name).fit(history).predict(units, window).intensity
                                for name in self.members_])

    def predict(self, units: Units, window: TimeWindow) -> Forecast:
        """The weighted sum of the members' forecasts for ``window``."""
        check_is_fitted(self)
        predictions, observed, _ = self._validation(units, window)
        weights = poisson_weights(predictions, observed)
        if not np.any(weights > 0):
            weights = np.full(len(self.members_), 1.0 / len(self.members_))
        intensity = self._member_forecasts(units, window) @ weights
        return self._make_forecast(
            units, window, intensity,
            weights=", ".join(f"{m}={w:.3g}" for m, w in zip(self.members_, weights,
                                                             strict=True)))


class AutoForecast(EnsembleForecast):
    """Pick the best of the members and their ensemble on past origins (log score).

    Parameters are those of ``EnsembleForecast``; the choice is made again at every
    forecast origin and window length, from validation windows that end by the origin.
    """

    name = "auto"

    def predict(self, units: Units, window: TimeWindow) -> Forecast:
        """The forecast of the candidate with the best validation log score."""
        check_is_fitted(self)
        predictions, observed, splits = self._validation(units, window)
        weights = poisson_weights(predictions, observed)
        candidates = {name: predictions[:, j] for j, name in enumerate(self.members_)}
        candidates["ensemble"] = predictions @ weights
        scores = {name: float(np.mean([_log_score(values[rows], observed[rows])
                                       for rows in splits]))
                  for name, values in candidates.items()}
        chosen = max(scores, key=lambda name: scores[name])
        members = self._member_forecasts(units, window)
        if chosen == "ensemble":
            intensity = members @ weights
        else:
            intensity = members[:, self.members_.index(chosen)]
        why = ", ".join(f"{name} {score:.3f}" for name, score in
                        sorted(scores.items(), key=lambda item: -item[1]))
        return self._make_forecast(
            units, window, intensity, chosen=chosen,
            validation=f"mean Poisson log score on {len(splits)} past windows: {why}",
            weights=", ".join(f"{m}={w:.3g}" for m, w in zip(self.members_, weights,
                                                             strict=True)))

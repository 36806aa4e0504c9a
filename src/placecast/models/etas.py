"""Grid ETAS (Mohler et al. 2015): a self-exciting Hawkes process in each grid cell.

The fitting functions work on plain arrays (``fit_grid_etas``, ``grid_etas_loglik``);
``GridETAS`` wraps them in the placecast model contract. Simulation lives in
``placecast.models.simulate``.
"""

from __future__ import annotations

import time as _time
import warnings
from dataclasses import replace
from typing import Any, Self

import numpy as np
import shapely

from placecast.events import Events
from placecast.exceptions import ConvergenceWarning, DataError, DataQualityWarning, ParameterError
from placecast.forecast import Forecast, TimeWindow
from placecast.models._base import Forecaster, check_is_fitted, check_positive
from placecast.models._hawkes import (
    HawkesFit,
    Horizons,
    solve_decay,
    squarem,
    window_integrals,
)
from placecast.models._hawkes_kernels import cell_time_sums
from placecast.units import Units, square_grid

__all__ = ["GridETAS", "fit_grid_etas", "grid_etas_loglik"]


def _sort_by_cell(time: np.ndarray, cell: np.ndarray, n_cells: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = np.lexsort((time, cell))
    counts = np.bincount(cell, minlength=n_cells)
    cell_start = np.zeros(n_cells + 1, dtype=np.int64)
    np.cumsum(counts, out=cell_start[1:])
    return order, cell_start, counts


def grid_etas_loglik(time: np.ndarray, cell: np.ndarray, mu: np.ndarray, theta: float,
                     omega: float, t_start: float, t_end: float) -> float:
    r"""Log-likelihood of grid ETAS on ``[t_start, t_end]``.

    .. math:: \ell = \sum_j \log \lambda_{n_j}(t_j) - (T_1 - T_0) \sum_n \mu_n
              - \theta \sum_j \left(1 - e^{-\omega (T_1 - t_j)}\right),
              \quad \lambda_n(t) = \mu_n + \sum_{i: t_i < t,\, n_i = n}
              \theta\omega e^{-\omega (t - t_i)}.

    Parameters
    ----------
    time : array of float
        Event times, days, within ``[t_start, t_end]``.
    cell : array of int
        Cell index of each event, ``0 <= cell < len(mu)``.
    mu : array of float
        Background rate of each cell, events per day.
    theta, omega : float
        Triggering amplitude (the branching ratio) and decay rate per day.
    t_start, t_end : float
        Observation period, days.

    Notes
    -----
    O(n_events) by the exponential recursion of ``cell_time_sums`` (exact, no cut-off).
    """
    time = np.asarray(time, dtype=float)
    cell = np.asarray(cell, dtype=np.int64)
    mu = np.asarray(mu, dtype=float)
    order, cell_start, _ = _sort_by_cell(time, cell, len(mu))
    t_sorted = time[order]
    s, _, _ = cell_time_sums(t_sorted, cell_start, float(omega))
    lam = mu[cell[order]] + theta * omega * s
    compensator = (t_end - t_start) * mu.sum() + theta * np.sum(
        -np.expm1(-omega * (t_end - time)))
    return float(np.sum(np.log(lam)) - compensator)


def fit_grid_etas(time: np.ndarray, cell: np.ndarray, n_cells: int, t_start: float,
                  t_end: float, *, theta_init: float = 0.5, omega_init: float = 0.1,
                  max_iter: int = 500, tol: float = 1e-6
                  ) -> tuple[HawkesFit, np.ndarray, np.ndarray]:
    r"""Maximum-likelihood fit of grid ETAS by expectation-maximisation.

    E-step: the probability that event ``j`` is background is
    :math:`p_j = \mu_{n_j}/\lambda_{n_j}(t_j)`. M-step (exact):
    :math:`\mu_n = \sum_{j \in n} p_j / (T_1 - T_0)`, ``omega`` maximises the profile
    complete-data likelihood (``solve_decay``, boundary term included) and
    :math:`\theta = S / \sum_j (1 - e^{-\omega (T_1 - t_j)})` with ``S`` the expected
    number of triggered events. Every M-step is exact, so the likelihood never decreases
    and the limit is a maximum-likelihood estimate.

    Parameters
    ----------
    time : array of float
        Event times, days.
    cell : array of int
        Cell of each event, ``0 <= cell < n_cells``.
    n_cells : int
        Number of cells.
    t_start, t_end : float
        Observation period, days.
    theta_init, omega_init : float
        Starting values.
    max_iter : int
        Iteration limit (EM steps); reaching it raises ``ConvergenceWarning``.
    tol : float
        Stop when the largest relative change of ``theta``, ``omega`` and every cell's
        background rate in one EM step falls below ``tol``.

    Returns
    -------
    fit : HawkesFit
        Estimates, log-likelihood, iterations and standard errors.
    mu : ndarray (n_cells,)
        Background rate per cell, events per day.
    p_background : ndarray (n_events,)
        Probability that each event (input order) is a background event.

    Notes
    -----
    EM is accelerated by SQUAREM (``squarem``), which keeps the monotone likelihood.
    When the data show no same-cell excitation the estimate sits on the boundary
    ``theta -> 0``, where ``omega`` is not identified (it drifts to a bound):
    ``details["triggering_vanished"]`` is then True and the standard errors are NaN.
    Each iteration is O(n_events). Standard errors come from the observed information of
    ``(theta, omega, mu)`` with the background block eliminated by its Schur complement
    (cells without events sit on the boundary ``mu = 0`` and are left out).

    References
    ----------
    Mohler, Short, Malinowski, Johnson, Tita, Bertozzi & Brantingham (2015), "Randomized
    controlled field trials of predictive policing", JASA 110(512), 1399-1411.
    """
    started = _time.perf_counter()
    time = np.asarray(time, dtype=float)
    cell = np.asarray(cell, dtype=np.int64)
    n = len(time)
    period = float(t_end - t_start)
    if n == 0:
        raise DataError("grid ETAS needs events to fit; none were given.")
    if not period > 0:
        raise DataError("grid ETAS needs events spread over time (the observation period is "
                        "empty); give events on more than one moment.")
    order, cell_start, counts = _sort_by_cell(time, cell, n_cells)
    t_sorted = time[order]
    c_sorted = cell[order]
    horizon = t_end - t_sorted
    horizons = Horizons(horizon)
    active = counts > 0
    n_active = int(active.sum())

    def step(q: np.ndarray) -> tuple[np.ndarray, float]:
        theta, omega = np.exp(q[0]), np.exp(q[1])
        mu = np.zeros(n_cells)
        mu[active] = np.exp(q[2:])
        s, b, _ = cell_time_sums(t_sorted, cell_start, omega)
        trig = theta * omega * s
        lam = np.maximum(mu[c_sorted] + trig, 1e-300)
        loglik = float(np.sum(np.log(lam)) - period * mu.sum()
                       - theta * horizons.sums(omega)[0])
        s_trig = float(np.sum(trig / lam))
        d_trig = float(np.sum(theta * omega * b / lam))
        new_mu = np.bincount(c_sorted, weights=mu[c_sorted] / lam, minlength=n_cells) / period
        new_omega = solve_decay(s_trig, d_trig, horizons, start=omega)
        new_theta = max(s_trig, 1e-300) / horizons.sums(new_omega)[0]
        q_next = np.empty(n_active + 2)
        q_next[0], q_next[1] = np.log(new_theta), np.log(new_omega)
        q_next[2:] = np.log(np.maximum(new_mu[active], 1e-300))
        return q_next, loglik

    theta0 = min(float(theta_init), 0.9)
    q_start = np.concatenate([[np.log(theta0), np.log(float(omega_init))],
                              np.log((1.0 - theta0) * counts[active] / period)])
    q, iterations, converged, change = squarem(step, q_start, max_iter=max_iter, tol=tol)
    if not converged:
        warnings.warn(
            f"grid ETAS EM stopped after {max_iter} iterations without converging (relative "
            f"change {change:.2g} > tol {tol:g}); raise max_iter or check that the data "
            "have enough repeat events per cell.", ConvergenceWarning, stacklevel=2)
    theta, omega = float(np.exp(q[0])), float(np.exp(q[1]))
    mu = np.zeros(n_cells)
    mu[active] = np.exp(q[2:])
    s, b, c2 = cell_time_sums(t_sorted, cell_start, omega)
    lam = mu[c_sorted] + theta * omega * s
    p_bg_sorted = mu[c_sorted] / lam
    loglik = float(np.sum(np.log(lam)) - period * mu.sum()
                   - theta * np.sum(-np.expm1(-omega * horizon)))
    if theta < 1e-8:  # on the boundary theta = 0: omega is not identified
        nan = float("nan")
        se = {"theta": nan, "branching_ratio": nan, "omega": nan}
    else:
        se = _grid_standard_errors(lam, s, b, c2, c_sorted, n_cells, theta, omega, horizon)
    p_background = np.empty(n)
    p_background[order] = p_bg_sorted
    n_background = float(p_background.sum())
    fit = HawkesFit(
        model="etas", theta=theta, branching_ratio=theta, omega=omega, sigma=None,
        background_rate=float(mu.sum()), n_events=n, n_background=n_background,
        fraction_triggered=1.0 - n_background / n, loglik=loglik, iterations=iterations,
        converged=converged, run_time_s=_time.perf_counter() - started,
        period_days=period, standard_errors=se,
        details={"n_cells": int(n_cells), "n_cells_with_events": int((counts > 0).sum()),
                 "triggering_vanished": bool(theta < 1e-8)},
    )
    return fit, mu, p_background


def _grid_standard_errors(lam: np.ndarray, s: np.ndarray, b: np.ndarray, c2: np.ndarray,
                          cell: np.ndarray, n_cells: int, theta: float, omega: float,
                          horizon: np.ndarray) -> dict[str, float]:
    """Observed-information standard errors of theta and omega (mu profiled out)."""
    d_theta = omega * s
    d_omega = theta * (s - omega * b)
    d_theta_omega = s - omega * b
    d_omega_omega = theta * (omega * c2 - 2.0 * b)
    e = np.exp(-omega * horizon)
    g1 = np.sum(horizon * e)
    g2 = -np.sum(horizon * horizon * e)
    inv2 = 1.0 / lam**2
    h = np.empty((2, 2))
    h[0, 0] = -np.sum(d_theta**2 * inv2)
    h[0, 1] = h[1, 0] = np.sum(d_theta_omega / lam - d_theta * d_omega * inv2) - g1
    h[1, 1] = np.sum(d_omega_omega / lam - d_omega**2 * inv2) - theta * g2
    h_mm = np.bincount(cell, weights=-inv2, minlength=n_cells)
    h_mt = np.bincount(cell, weights=-d_theta * inv2, minlength=n_cells)
    h_mo = np.bincount(cell, weights=-d_omega * inv2, minlength=n_cells)
    ok = h_mm < 0
    cross = np.vstack([h_mt[ok], h_mo[ok]])
    schur = h - (cross / h_mm[ok]) @ cross.T
    try:
        cov = np.linalg.inv(-schur)
        variances = np.diag(cov)
    except np.linalg.LinAlgError:
        variances = np.array([np.nan, np.nan])
    se = np.sqrt(np.where(variances > 0, variances, np.nan))
    return {"theta": float(se[0]), "branching_ratio": float(se[0]), "omega": float(se[1])}


def smooth_over_units(values: np.ndarray, units: Units, bandwidth: float) -> np.ndarray:
    """Spread each unit's value over neighbouring units, preserving the total.

    Weights are a Gaussian of unit-centroid distance (standard deviation ``bandwidth``
    metres, cut at 3 bandwidths). O(n_units x neighbours) with a k-d tree.
    """
    from scipy.spatial import cKDTree

    centroids = units.centroids
    tree = cKDTree(centroids)
    pairs = tree.sparse_distance_matrix(tree, 3.0 * bandwidth, output_type="coo_matrix")
    weights = np.exp(-0.5 * (pairs.data / bandwidth) ** 2)
    # the diagonal (distance 0) is not stored by the sparse matrix: add it
    rows = np.concatenate([pairs.row, np.arange(len(units))])
    cols = np.concatenate([pairs.col, np.arange(len(units))])
    weights = np.concatenate([weights, np.ones(len(units))])
    norm = np.bincount(rows, weights=weights, minlength=len(units))
    share = weights / norm[rows]
    return np.bincount(cols, weights=share * values[rows], minlength=len(units))


class GridETAS(Forecaster):
    r"""Grid ETAS: an independent Hawkes process in each cell sharing ``theta`` and ``omega``.

    The intensity of cell ``n`` at time ``t`` (days) is

    .. math:: \lambda_n(t) = \mu_n + \sum_{i: t_i < t,\, i \in n}
              \theta\,\omega\, e^{-\omega (t - t_i)},

    with a background rate :math:`\mu_n` per cell, branching ratio :math:`\theta` and
    mean triggering delay :math:`1/\omega` days; fitted by EM to the maximum-likelihood
    estimate (``fit_grid_etas``).

    Parameters
    ----------
    cell_size : float
        Side of the square cells, metres, of the grid ``fit`` uses when it is not given
        ``units``.
    background_smoothing : float, optional
        Standard deviation, metres, of a Gaussian that spreads the fitted background over
        neighbouring units at prediction time (total preserved), so cells without past
        events are not zero. None: no smoothing (the maximum-likelihood background).
    max_iter : int
        EM iteration limit (``ConvergenceWarning`` when reached).
    tol : float
        EM tolerance on the relative change of the parameters.
    theta_init, omega_init : float
        EM starting values (omega per day).
    random_state : int or numpy Generator, optional
        Seed for ``simulate``.

    Attributes
    ----------
    fit_ : HawkesFit
        Estimates, log-likelihood, iterations, standard errors.
    theta_, omega_ : float
        Branching ratio and decay rate per day.
    mu_ : ndarray
        Background rate of each unit of ``units_``, events per day.
    units_ : Units
        The cells fitted: the ``units`` given to ``fit`` or a square grid of ``cell_size``.
    events_ : Events
        The events fitted.

    Notes
    -----
    The cells are part of the model: ``theta``, ``omega`` and ``mu`` belong to a grid.
    ``predict(units, window)`` on the units given to ``fit`` uses the fitted estimates;
    on other units, or when fitted events reach into the window, it refits by EM on
    ``units`` with the events before the window only (cached for the last units and
    window), so no later event informs a forecast. Without ``units``, ``fit`` only checks
    the events: the default grid and its fit are made when first asked for (``units_``,
    ``fit_``, ``mu_``, ``theta_``, ``omega_``, ``simulate``), so a backtest or forecast
    that predicts on its own units fits once, on those units, and never builds the
    default grid. The forecast is the expected count

    .. math:: E\,N_n[s, s + D) = m_n(s) E_1 + \omega \mu_n E_2

    where :math:`m_n(s)` is the intensity at the window start and ``E1``, ``E2`` follow
    from the mean-intensity equation (``window_integrals``): events triggered inside the
    window, and their offspring, are counted. Fitting is O(n_events) per EM iteration.

    References
    ----------
    Mohler, Short, Malinowski, Johnson, Tita, Bertozzi & Brantingham (2015), "Randomized
    controlled field trials of predictive policing", JASA 110(512), 1399-1411.

    Examples
    --------
    >>> import shapely
    >>> from placecast.events import SpatialReference
    >>> from placecast.models.simulate import simulate_grid_etas
    >>> from placecast.units import square_grid
    >>> cells = square_grid(shapely.box(0, 0, 3000, 3000), 1000.0, SpatialReference("local:m"))
    >>> sim = simulate_grid_etas(mu=[0.5] * 9, units=cells, theta=0.5, omega=0.2,
    ...                          days=400, random_state=1)
    >>> model = GridETAS().fit(sim.to_events(), units=cells)
    >>> model.fit_.converged, round(model.theta_, 1)
    (True, 0.5)
    """

    name = "etas"

    def __init__(self, *, cell_size: float = 150.0, background_smoothing: float | None = None,
                 max_iter: int = 500, tol: float = 1e-6, theta_init: float = 0.5,
                 omega_init: float = 0.1, random_state: Any = None) -> None:
        self.cell_size = cell_size
        self.background_smoothing = background_smoothing
        self.max_iter = max_iter
        self.tol = tol
        self.theta_init = theta_init
        self.omega_init = omega_init
        self.random_state = random_state

    # ------------------------------------------------------------------ fitting
    def _validate(self) -> None:
        check_positive(self.cell_size, "cell_size")
        check_positive(self.background_smoothing, "background_smoothing", allow_none=True)
        check_positive(self.tol, "tol")
        check_positive(self.omega_init, "omega_init")
        if not isinstance(self.max_iter, int | np.integer) or self.max_iter < 1:
            raise ParameterError(f"max_iter must be a positive integer, got {self.max_iter!r}.",
                                 param="max_iter")
        theta = check_positive(self.theta_init, "theta_init")
        if theta is not None and theta >= 1:
            raise ParameterError(f"theta_init must be in (0, 1), got {self.theta_init!r}.",
                                 param="theta_init")

    def fit(self, events: Events, *, units: Units | None = None) -> Self:
        """Fit by EM on ``units`` (default: a square grid of ``cell_size`` over the events).

        Events outside every unit are left out with a ``DataQualityWarning``.

        Raises
        ------
        DataError
            With fewer than two distinct event times or no event inside the units.
        ParameterError
            For invalid parameters.
        """
        self._validate()
        if len(events) == 0:
            raise DataError("grid ETAS needs events to fit; none were given.")
        self.origin_ = events.start
        self.events_ = events
        self._refit: tuple[Units, Any, np.ndarray, float, float] | None = None
        self._units: Units | None = units
        self._fitted: tuple[HawkesFit, np.ndarray] | None = None
        if units is None:
            # The default grid and its EM fit are made when first asked for (``units_``,
            # ``fit_``, ...): a backtest or forecast predicts on its own units, where
            # ``predict`` fits afresh, so building a shapely grid of ``cell_size`` cells
            # and fitting on it would be thrown away. Check now what the fit would refuse.
            days = events.days_since(self.origin_)
            if not float(days.max()) - float(days.min()) > 0:
                raise DataError("grid ETAS needs events spread over time (the observation "
                                "period is empty); give events on more than one moment.")
            return self
        self._fitted = self._fit_on(events, units)
        return self

    def _default_units(self) -> Units:
        """The grid of ``cell_size`` cells over the fitted events' bounding box."""
        xmin, ymin, xmax, ymax = self.events_.bbox
        half = float(self.cell_size) / 2.0
        region = shapely.box(xmin - half, ymin - half, xmax + half, ymax + half)
        return square_grid(region, float(self.cell_size), self.events_.spatial_reference)

    def _fitted_on_units(self) -> tuple[HawkesFit, np.ndarray]:
        """The fit on ``units_`` (made now if ``fit`` deferred it)."""
        if "events_" not in vars(self):
            raise AttributeError("this GridETAS is not fitted yet; call fit(events).")
        if self._fitted is None:
            if self._units is None:
                self._units = self._default_units()
            self._fitted = self._fit_on(self.events_, self._units)
        return self._fitted

    @property
    def units_(self) -> Units:
        """The cells fitted (see the class's Attributes)."""
        self._fitted_on_units()
        assert self._units is not None
        return self._units

    @property
    def fit_(self) -> HawkesFit:
        """Estimates, log-likelihood, iterations, standard errors on ``units_``."""
        return self._fitted_on_units()[0]

    @property
    def mu_(self) -> np.ndarray:
        """Background rate of each unit of ``units_``, events per day."""
        return self._fitted_on_units()[1]

    @property
    def theta_(self) -> float:
        """Branching ratio."""
        return self.fit_.theta

    @property
    def omega_(self) -> float:
        """Decay rate per day."""
        return self.fit_.omega

    def _fit_on(self, events: Events, units: Units) -> tuple[HawkesFit, np.ndarray]:
        index = units.assign(events.x, events.y)
        outside = index < 0
        if outside.all():
            raise DataError("no event falls inside the units; check the CRS and the region.")
        if outside.any():
            warnings.warn(f"{int(outside.sum())} of {len(events)} events lie outside the units "
                          "and are left out of the grid ETAS fit.", DataQualityWarning,
                          stacklevel=3)
        days = events.days_since(self.origin_)[~outside]
        fit, mu = fit_grid_etas(days, index[~outside], len(units), float(days.min()),
                                float(days.max()), theta_init=float(self.theta_init),
                                omega_init=float(self.omega_init),
                                max_iter=int(self.max_iter), tol=float(self.tol))[:2]
        details = dict(fit.details, cell_size_m=units.typical_size,
                       n_outside=int(outside.sum()))
        return replace(fit, details=details), mu

    # ------------------------------------------------------------------ prediction
    def _estimates_for(self, units: Units, window: TimeWindow, history: Events
                       ) -> tuple[np.ndarray, float, float]:
        """Fitted ``(mu, theta, omega)`` for ``units``, refitting when needed.

        The fit is reused on the units it was made on when no fitted event is at or after
        the window start; otherwise EM runs again on ``units`` with the events before the
        window only (same starting values and period rule as ``fit``, so the result does
        not depend on what else was fitted). The last refit is cached.
        """
        if units is self._units and self.events_.end < window.start:
            return self.mu_, self.theta_, self.omega_
        cached = self._refit
        if cached is None or cached[0] is not units or cached[1] != window.start:
            fit, mu = self._fit_on(history, units)
            cached = (units, window.start, mu, fit.theta, fit.omega)
            self._refit = cached
        return cached[2], cached[3], cached[4]

    def predict(self, units: Units, window: TimeWindow) -> Forecast:
        """Expected events per unit over ``window`` (see Notes of the class)."""
        check_is_fitted(self)
        history = self._training_events(window)
        if len(history) == 0:
            raise DataError(f"no events before {window}; grid ETAS needs history.")
        start = float((window.start - self.origin_) / np.timedelta64(1, "D"))
        mu, theta, omega = self._estimates_for(units, window, history)
        if self.background_smoothing is not None:
            mu = smooth_over_units(mu, units, float(self.background_smoothing))
        index = units.assign(history.x, history.y)
        inside = index >= 0
        age = start - history.days_since(self.origin_)[inside]
        excitation = np.bincount(index[inside], weights=theta * np.exp(-omega * age),
                                 minlength=len(units))
        rate0 = mu + omega * excitation
        e1, e2 = window_integrals(omega, theta, window.days)
        intensity = np.maximum(rate0 * e1 + omega * mu * e2, 0.0)
        return self._make_forecast(units, window, intensity, theta=float(theta),
                                   omega=float(omega))

    def simulate(self, window: TimeWindow) -> Events:
        """Draw events over ``window`` from the fitted model.

        Fresh history, cells ``units_``, positions uniform within cells; seeded by
        ``random_state``.
        """
        check_is_fitted(self)
        from placecast.models.simulate import simulate_grid_etas

        sim = simulate_grid_etas(mu=self.mu_, units=self.units_, theta=self.theta_,
                                 omega=self.omega_, days=window.days,
                                 random_state=self.random_state)
        return sim.to_events(start=window.start,
                             spatial_reference=self.events_.spatial_reference)

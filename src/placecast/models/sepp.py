"""Continuous space-time self-exciting point process (Mohler et al. 2011 family).

The fitting functions work on plain arrays (``fit_sepp``, ``sepp_loglik``); ``SEPP`` wraps
them in the placecast model contract. Simulation lives in ``placecast.models.simulate``.
"""

from __future__ import annotations

import time as _time
import warnings
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
from scipy import ndimage

from placecast.events import Events
from placecast.exceptions import ConvergenceWarning, DataError, ParameterError
from placecast.forecast import Forecast, TimeWindow
from placecast.models._base import Forecaster, check_is_fitted, check_positive
from placecast.models._hawkes import (
    HawkesFit,
    Horizons,
    solve_decay,
    solve_spatial_scale,
    squarem,
    window_integrals,
)
from placecast.models._hawkes_kernels import near_pairs, sepp_estep
from placecast.units import Units

__all__ = ["SEPP", "BackgroundDensity", "fit_sepp", "sepp_loglik"]


@dataclass(frozen=True, slots=True)
class BackgroundDensity:
    """A spatial probability density on a raster (per m²), piecewise constant by pixel.

    Attributes
    ----------
    origin : (float, float)
        Lower-left corner, metres.
    pixel_size : float
        Pixel side, metres.
    values : ndarray (n_rows, n_cols)
        Density per m²; ``values.sum() * pixel_size**2 == 1``.
    bandwidth : float
        Gaussian kernel standard deviation used, metres.
    """

    origin: tuple[float, float]
    pixel_size: float
    values: np.ndarray
    bandwidth: float

    @classmethod
    def estimate(cls, x: np.ndarray, y: np.ndarray, weights: np.ndarray | None,
                 bandwidth: float, *, pixel_size: float | None = None,
                 bandwidths: np.ndarray | None = None) -> BackgroundDensity:
        """Weighted Gaussian kernel density of points, rasterised.

        Points are binned on pixels of ``bandwidth / 3`` (at most 1,500 per side) over
        their extent plus four (largest) bandwidths, then smoothed by a separable Gaussian
        filter: O(n_points + n_pixels x bandwidth / pixel).

        With per-point ``bandwidths`` (variable bandwidth; ``bandwidth`` is then their
        minimum), points are grouped into classes of bandwidths within a factor 1.2 of
        each other; each wide class is binned linearly on a raster coarsened to about a
        quarter of its bandwidth, smoothed there and interpolated back (mass-preserving)
        onto the fine raster, so the cost per class stays O(n_pixels).
        """
        w = np.ones(len(x)) if weights is None else np.asarray(weights, dtype=float)
        widest = bandwidth if bandwidths is None else float(np.max(bandwidths))
        margin = 4.0 * widest
        x0, y0 = float(x.min()) - margin, float(y.min()) - margin
        span = max(float(x.max()) + margin - x0, float(y.max()) + margin - y0)
        pixel = pixel_size or max(bandwidth / 3.0, span / 1500.0)
        n_cols = int((float(x.max()) + margin - x0) // pixel) + 1
        n_rows = int((float(y.max()) + margin - y0) // pixel) + 1
        col = ((x - x0) // pixel).astype(np.int64)
        row = ((y - y0) // pixel).astype(np.int64)
        if bandwidths is None:
            grid = np.bincount(row * n_cols + col, weights=w, minlength=n_rows * n_cols
                               ).reshape(n_rows, n_cols).astype(float)
            smooth = ndimage.gaussian_filter(grid, sigma=bandwidth / pixel, mode="constant",
                                             truncate=4.0)
        else:
            smooth = np.zeros((n_rows, n_cols))
            ratio = np.log(np.asarray(bandwidths, dtype=float) / bandwidth)
            group = np.floor(ratio / np.log(1.2)).astype(np.int64)
            for g in np.unique(group):
                members = group == g
                width = bandwidth * 1.2 ** (g + 0.5)
                factor = max(1, int(width / 4.0 / pixel))
                if factor == 1:
                    grid = np.bincount(row[members] * n_cols + col[members],
                                       weights=w[members], minlength=n_rows * n_cols
                                       ).reshape(n_rows, n_cols).astype(float)
                    smooth += ndimage.gaussian_filter(grid, sigma=width / pixel,
                                                      mode="constant", truncate=4.0)
                    continue
                # coarse raster: linear binning keeps each point's position, bilinear
                # zoom back to the fine raster, then the class mass is restored
                size = pixel * factor
                rows_c, cols_c = -(-n_rows // factor) + 1, -(-n_cols // factor) + 1
                coarse = _linear_bin((x[members] - x0) / size - 0.5,
                                     (y[members] - y0) / size - 0.5, w[members], rows_c,
                                     cols_c)
                coarse = ndimage.gaussian_filter(coarse, sigma=width / size, mode="constant",
                                                 truncate=4.0)
                fine = ndimage.zoom(coarse, factor, order=1, grid_mode=True,
                                    mode="grid-constant")[:n_rows, :n_cols]
                fine = np.maximum(fine, 0.0)
                if fine.sum() > 0:
                    smooth += fine * (w[members].sum() / fine.sum())
        smooth = np.maximum(smooth, 0.0)
        total = smooth.sum()
        if total <= 0:
            raise DataError("the background density is empty (all background weights zero).")
        return cls((x0, y0), float(pixel), smooth / (total * pixel * pixel), float(bandwidth))

    def __call__(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Density at points (0 off the raster)."""
        n_rows, n_cols = self.values.shape
        col = np.floor((np.asarray(x) - self.origin[0]) / self.pixel_size).astype(np.int64)
        row = np.floor((np.asarray(y) - self.origin[1]) / self.pixel_size).astype(np.int64)
        ok = (col >= 0) & (col < n_cols) & (row >= 0) & (row < n_rows)
        out = np.zeros(np.shape(x))
        out[ok] = self.values[row[ok], col[ok]]
        return out


def _linear_bin(u: np.ndarray, v: np.ndarray, weights: np.ndarray, n_rows: int,
                n_cols: int) -> np.ndarray:
    """Bilinear ("cloud in cell") binning of points at pixel coordinates ``(u, v)``."""
    i0 = np.floor(v).astype(np.int64)
    j0 = np.floor(u).astype(np.int64)
    fv, fu = v - i0, u - j0
    grid = np.zeros(n_rows * n_cols)
    for di, wi in ((0, 1.0 - fv), (1, fv)):
        for dj, wj in ((0, 1.0 - fu), (1, fu)):
            i = np.clip(i0 + di, 0, n_rows - 1)
            j = np.clip(j0 + dj, 0, n_cols - 1)
            grid += np.bincount(i * n_cols + j, weights=weights * wi * wj,
                                minlength=n_rows * n_cols)
    return grid.reshape(n_rows, n_cols)


def _kernel_masses(omega: float, sigma: float, time_cutoff: float, distance_cutoff: float,
                   horizon: Horizons) -> tuple[float, float]:
    """``G(omega) = sum_i (1 - exp(-omega c_i))`` and the spatial mass within the cut-off."""
    g = horizon.sums(omega)[0]
    m = 1.0 if not np.isfinite(distance_cutoff) else float(
        -np.expm1(-distance_cutoff**2 / (2.0 * sigma * sigma)))
    return g, m


def sepp_loglik(time: np.ndarray, x: np.ndarray, y: np.ndarray, background: np.ndarray,
                background_integral: float, theta: float, omega: float, sigma: float,
                t_start: float, t_end: float, *, time_cutoff: float = np.inf,
                distance_cutoff: float = np.inf) -> float:
    r"""Log-likelihood of the continuous self-exciting model.

    .. math:: \ell = \sum_j \log \lambda(t_j, x_j, y_j) - \int_{T_0}^{T_1}\!\!\int
              \mu - \theta\, m_\sigma \sum_i \left(1 - e^{-\omega \min(T_1 - t_i,
              \tau)}\right),

    .. math:: \lambda(t, x, y) = \mu(x, y) + \sum_{i: 0 < t - t_i \le \tau,\;
              r_i \le d} \theta\,\omega e^{-\omega (t - t_i)}
              \frac{e^{-r_i^2 / (2\sigma^2)}}{2\pi\sigma^2},

    with ``tau = time_cutoff``, ``d = distance_cutoff`` and
    :math:`m_\sigma = 1 - e^{-d^2/(2\sigma^2)}` the spatial kernel mass within ``d``
    (offspring are counted over the whole plane: no spatial edge correction).

    Parameters
    ----------
    time, x, y : array of float
        Event times (days) and coordinates (metres).
    background : array of float
        :math:`\mu(x_j, y_j)` at each event, events per day per m².
    background_integral : float
        :math:`\int\int \mu` over the period and the plane (expected background count).
    theta, omega, sigma : float
        Kernel amplitude, decay per day, Gaussian standard deviation in metres.
    t_start, t_end : float
        Observation period, days.
    time_cutoff, distance_cutoff : float
        Kernel truncation, days and metres (infinite: none).

    Notes
    -----
    Pairs within the cut-offs are found with a spatial hash over time-sorted events
    (``near_pairs``): O(n log n + n_pairs).
    """
    time = np.asarray(time, dtype=float)
    order = np.argsort(time, kind="stable")
    t = time[order]
    tc = float(time_cutoff)
    dc = float(distance_cutoff)
    search_t = tc if np.isfinite(tc) else float(t_end - t_start) + 1.0
    search_d = dc if np.isfinite(dc) else _span(x, y) + 1.0
    indptr, _, lag, dist2 = near_pairs(t, np.asarray(x, float)[order],
                                       np.asarray(y, float)[order], search_t, search_d)
    mu = np.asarray(background, dtype=float)[order]
    _, sumlog, _, _, _ = sepp_estep(indptr, lag, dist2, mu, theta, omega, sigma)
    g, m = _kernel_masses(omega, sigma, tc, dc, Horizons(np.minimum(t_end - t, tc)))
    return float(sumlog - background_integral - theta * m * g)


def _span(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.hypot(np.ptp(x), np.ptp(y))) if len(x) else 1.0


@dataclass(frozen=True, slots=True)
class _Fitted:
    background_rate: float
    density: BackgroundDensity
    p_background: np.ndarray


def fit_sepp(time: np.ndarray, x: np.ndarray, y: np.ndarray, t_start: float, t_end: float,
             *, time_cutoff: float = 90.0, distance_cutoff: float = 1000.0,
             background_bandwidth: float = 500.0, background_updates: int = 3,
             background_neighbours: int | None = None,
             sigma_min: float = 10.0, theta_init: float = 0.3, omega_init: float = 0.1,
             sigma_init: float = 100.0, max_iter: int = 500, tol: float = 1e-6
             ) -> tuple[HawkesFit, _Fitted]:
    r"""Fit the continuous model by EM with a declustered kernel-density background.

    The background is :math:`\mu(x, y) = \nu\, h(x, y)`: a rate ``nu`` (events per day)
    times a spatial density ``h``, a Gaussian kernel density of the events weighted by
    their background probabilities (stochastic declustering, Zhuang et al. 2002;
    Mohler et al. 2011). Given ``h``, ``(nu, theta, omega, sigma)`` are fitted to the
    maximum-likelihood estimate by EM with exact M-steps (``solve_decay``,
    ``solve_spatial_scale``; SQUAREM-accelerated). ``h`` starts as the density of all
    events and is re-estimated from the background probabilities ``background_updates``
    times, each followed by a new inner fit.

    Parameters
    ----------
    time, x, y : array of float
        Event times (days) and coordinates (metres).
    t_start, t_end : float
        Observation period, days.
    time_cutoff, distance_cutoff : float
        Kernel truncation, days and metres; part of the model (see ``sepp_loglik``).
    background_bandwidth : float
        Standard deviation of the background kernel, metres.
    background_updates : int
        Declustering passes re-estimating ``h`` (0: density of all events).
    background_neighbours : int, optional
        Variable bandwidth (Mohler et al. 2011): each event's background kernel has the
        distance to its k-th nearest neighbour as standard deviation, clipped to
        ``[background_bandwidth, 40 x background_bandwidth]``. None: the fixed
        ``background_bandwidth``.
    sigma_min : float
        Lower bound of ``sigma``, metres (0: none). Repeat events at identical coordinates
        make the likelihood unbounded as ``sigma -> 0``; the bound is the location
        precision you trust.
    theta_init, omega_init, sigma_init : float
        Starting values.
    max_iter : int
        EM step limit of each inner fit (``ConvergenceWarning`` when reached).
    tol : float
        Inner tolerance on the relative change of the parameters.

    Returns
    -------
    fit : HawkesFit
        Estimates and diagnostics; ``standard_errors`` from the observed information of
        ``(nu, theta, omega, sigma)`` given ``h`` (a numerical Hessian).
    state : _Fitted
        Background rate, density and each event's background probability (input order).

    Notes
    -----
    Pairs within the cut-offs are found once (O(n log n + n_pairs) time, O(n + n_pairs)
    memory); each EM step is O(n_pairs), near-linear in the events for fixed cut-offs.

    References
    ----------
    Mohler, Short, Brantingham, Schoenberg & Tita (2011), "Self-exciting point process
    modeling of crime", JASA 106(493), 100-108.
    Zhuang, Ogata & Vere-Jones (2002), "Stochastic declustering of space-time earthquake
    occurrences", JASA 97(458), 369-380.
    """
    started = _time.perf_counter()
    time = np.asarray(time, dtype=float)
    n = len(time)
    period = float(t_end - t_start)
    if n < 2:
        raise DataError(f"sepp needs at least two events to fit; got {n}.")
    if not period > 0:
        raise DataError("sepp needs events spread over time (the observation period is "
                        "empty).")
    order = np.argsort(time, kind="stable")
    t = time[order]
    xs = np.asarray(x, dtype=float)[order]
    ys = np.asarray(y, dtype=float)[order]
    tc, dc = float(time_cutoff), float(distance_cutoff)
    indptr, _, lag, dist2 = near_pairs(t, xs, ys, tc, dc)
    horizon = Horizons(np.minimum(t_end - t, tc))

    weights: np.ndarray | None = None
    q = np.log([n / period * (1 - theta_init), theta_init, omega_init, sigma_init])
    total_steps = 0
    converged = True
    outer_changes: list[float] = []
    bandwidths = None
    if background_neighbours is not None:
        from scipy.spatial import cKDTree

        k = min(int(background_neighbours), n - 1)
        distance = cKDTree(np.column_stack([xs, ys])).query(np.column_stack([xs, ys]),
                                                             k=k + 1)[0][:, k]
        bandwidths = np.clip(distance, background_bandwidth, 40.0 * background_bandwidth)
    density = BackgroundDensity.estimate(xs, ys, weights, background_bandwidth,
                                         bandwidths=bandwidths)
    h = density(xs, ys)
    for update in range(int(background_updates) + 1):
        if update > 0:
            density = BackgroundDensity.estimate(xs, ys, weights, background_bandwidth,
                                                 pixel_size=density.pixel_size,
                                                 bandwidths=bandwidths)
            h = density(xs, ys)
        step = _make_step(h, indptr, lag, dist2, horizon, period, tc, dc, sigma_min)
        q_old = q.copy()
        q, steps, inner_converged, change = squarem(step, q, max_iter=max_iter, tol=tol)
        total_steps += steps
        converged = inner_converged
        if not inner_converged:
            warnings.warn(
                f"sepp EM stopped after {max_iter} steps without converging (relative change "
                f"{change:.2g} > tol {tol:g}); raise max_iter, or check the cut-offs are "
                "wider than the triggering scales.", ConvergenceWarning, stacklevel=2)
        nu, theta, omega, sigma = np.exp(q)
        lam, _, _, _, _ = sepp_estep(indptr, lag, dist2, nu * h, theta, omega, sigma)
        weights = nu * h / lam
        outer_changes.append(float(np.max(np.abs(q - q_old))))

    nu, theta, omega, sigma = (float(v) for v in np.exp(q))
    final_step = _make_step(h, indptr, lag, dist2, horizon, period, tc, dc, sigma_min)
    loglik = final_step(q)[1]
    assert weights is not None
    at_bound = sigma <= sigma_min * (1 + 1e-9)
    if theta < 1e-8:  # on the boundary theta = 0: omega and sigma are not identified
        se = dict.fromkeys(("theta", "branching_ratio", "omega", "sigma"), float("nan"))
    else:
        se = _sepp_standard_errors(final_step, q, tc, dc, sigma_fixed=at_bound)
    g_unit, m = _kernel_masses(omega, sigma, tc, dc, Horizons(np.array([tc])))
    branching = theta * g_unit * m
    p_background = np.empty(n)
    p_background[order] = weights
    n_background = float(weights.sum())
    fit = HawkesFit(
        model="sepp", theta=theta, branching_ratio=branching, omega=omega, sigma=sigma,
        background_rate=nu, n_events=n, n_background=n_background,
        fraction_triggered=1.0 - n_background / n, loglik=loglik, iterations=total_steps,
        converged=converged, run_time_s=_time.perf_counter() - started, period_days=period,
        standard_errors=se,
        details={"time_cutoff_days": tc, "distance_cutoff_m": dc,
                 "background_bandwidth_m": float(background_bandwidth),
                 "background_updates": int(background_updates),
                 "background_neighbours": background_neighbours,
                 "background_update_changes": outer_changes,
                 "sigma_min_m": float(sigma_min), "sigma_at_bound": bool(at_bound),
                 "triggering_vanished": bool(theta < 1e-8),
                 "n_pairs": int(indptr[-1])},
    )
    return fit, _Fitted(nu, density, p_background)


def _make_step(h: np.ndarray, indptr: np.ndarray, lag: np.ndarray, dist2: np.ndarray,
               horizon: Horizons, period: float, tc: float, dc: float,
               sigma_min: float = 0.0) -> Any:
    """One EM step on ``log(nu, theta, omega, sigma)`` for a fixed background shape."""

    def step(q: np.ndarray, loglik_only: bool = False) -> tuple[np.ndarray, float]:
        nu, theta, omega, sigma = np.exp(q)
        mu = nu * h
        lam, sumlog, s_trig, d_trig, r_trig = sepp_estep(indptr, lag, dist2, mu, theta,
                                                         omega, sigma)
        g, m = _kernel_masses(omega, sigma, tc, dc, horizon)
        loglik = float(sumlog - nu * period - theta * m * g)
        if loglik_only:
            return q, loglik
        new_nu = float(np.sum(mu / lam)) / period
        if s_trig <= 1e-12:  # no triggering left: keep the kernel shape, theta -> 0
            return np.log([max(new_nu, 1e-300), 1e-300, omega, sigma]), loglik
        new_omega = solve_decay(s_trig, d_trig, horizon, start=omega)
        new_sigma = solve_spatial_scale(s_trig, r_trig, dc, sigma_min)
        g, m = _kernel_masses(new_omega, new_sigma, tc, dc, horizon)
        new_theta = s_trig / (g * m)
        return np.log([new_nu, new_theta, new_omega, new_sigma]), loglik

    return step


def _sepp_standard_errors(step: Any, q: np.ndarray, tc: float, dc: float, *,
                          sigma_fixed: bool = False) -> dict[str, float]:
    """Compute standard errors from the observed information.

    A central-difference Hessian of the log-likelihood in log parameters (background shape
    held fixed), with the delta method for the branching ratio.
    """
    def loglik(point: np.ndarray) -> float:
        return float(step(point, loglik_only=True)[1])

    k = len(q)
    eps = 1e-4
    f0 = loglik(q)
    hess = np.empty((k, k))
    for i in range(k):
        e_i = np.zeros(k)
        e_i[i] = eps
        hess[i, i] = (loglik(q + e_i) - 2 * f0 + loglik(q - e_i)) / eps**2
        for j in range(i):
            e_j = np.zeros(k)
            e_j[j] = eps
            hess[i, j] = hess[j, i] = (loglik(q + e_i + e_j) - loglik(q + e_i - e_j)
                                       - loglik(q - e_i + e_j) + loglik(q - e_i - e_j)
                                       ) / (4 * eps**2)
    nan = float("nan")
    free = [0, 1, 2] if sigma_fixed else [0, 1, 2, 3]  # sigma on its bound: not free
    cov = np.zeros((k, k))
    try:
        cov[np.ix_(free, free)] = np.linalg.inv(-hess[np.ix_(free, free)])
    except np.linalg.LinAlgError:
        return {"theta": nan, "branching_ratio": nan, "omega": nan, "sigma": nan}
    _, theta, omega, sigma = np.exp(q)
    grad = np.zeros(k)  # d log(branching) / d log(params)
    grad[1] = 1.0
    if np.isfinite(tc):
        grad[2] = omega * tc * np.exp(-omega * tc) / -np.expm1(-omega * tc)
    if np.isfinite(dc):
        a = dc * dc / (2 * sigma * sigma)
        grad[3] = -2.0 * a * np.exp(-a) / -np.expm1(-a)
    log_var = np.diag(cov)
    g_unit = -np.expm1(-omega * tc)
    m = 1.0 if not np.isfinite(dc) else -np.expm1(-dc * dc / (2 * sigma * sigma))
    branching = theta * g_unit * m
    var_branching = float(grad @ cov @ grad)

    def se(value: float, var: float) -> float:
        return float(value * np.sqrt(var)) if var > 0 else nan

    return {"theta": se(theta, log_var[1]), "branching_ratio": se(branching, var_branching),
            "omega": se(omega, log_var[2]),
            "sigma": nan if sigma_fixed else se(sigma, log_var[3]),
            "background_rate": se(float(np.exp(q[0])), log_var[0])}


class SEPP(Forecaster):
    r"""Continuous space-time self-exciting point process (Mohler et al. 2011 family).

    The intensity at time ``t`` (days) and place ``(x, y)`` (metres) is

    .. math:: \lambda(t, x, y) = \nu\, h(x, y) + \sum_{i: 0 < t - t_i \le \tau,\,
              r_i \le d} \theta\,\omega\, e^{-\omega (t - t_i)}
              \frac{e^{-r_i^2/(2\sigma^2)}}{2\pi\sigma^2},

    with background rate ``nu`` (events per day) spread by a declustered kernel density
    ``h``, exponential decay in time and a Gaussian kernel in space, truncated at the
    cut-offs ``tau`` (days) and ``d`` (metres). The branching ratio (expected direct
    offspring per event) is :math:`\theta(1 - e^{-\omega\tau})(1 - e^{-d^2/2\sigma^2})`.
    Fitting: ``fit_sepp``.

    Parameters
    ----------
    time_cutoff : float
        Longest triggering delay, days.
    distance_cutoff : float
        Longest triggering distance, metres.
    background_bandwidth : float
        Standard deviation of the background kernel density, metres.
    background_updates : int
        Declustering passes re-estimating the background density from the background
        probabilities.
    background_neighbours : int, optional
        Variable bandwidth: each event's background kernel has the distance to its k-th
        nearest neighbour as standard deviation, at least ``background_bandwidth`` (and
        at most 40 times it). None: fixed ``background_bandwidth``.
    sigma_min : float
        Lower bound of ``sigma``, metres: the location precision you trust (repeat events
        at identical coordinates would otherwise drive ``sigma`` to 0).
    max_iter : int
        EM step limit of each inner fit.
    tol : float
        EM tolerance on the relative change of the parameters.
    theta_init, omega_init, sigma_init : float
        Starting values (omega per day, sigma metres).
    random_state : int or numpy Generator, optional
        Seed for ``simulate``.

    Attributes
    ----------
    fit_ : HawkesFit
        Estimates, log-likelihood, iterations, standard errors.
    theta_, omega_, sigma_, branching_ratio_ : float
        Triggering estimates.
    background_rate_ : float
        ``nu``, background events per day.
    background_density_ : BackgroundDensity
        ``h``.
    p_background_ : ndarray
        Probability that each fitted event is a background event.
    events_ : Events
        The events fitted.

    Notes
    -----
    The forecast for a unit is its expected count
    :math:`m_u(s) E_1 + \omega M_u E_2` (``window_integrals``), with
    :math:`M_u = \nu \int_u h` and :math:`m_u(s)` the intensity integrated over the unit
    at the window start, where past events' Gaussian kernels are integrated over units on
    a raster. When fitted events reach into the window, ``predict`` refits on the events
    before it only. Offspring of events inside the window are counted in their parent's unit
    and the time cut-off is ignored there (both small approximations when ``sigma`` is
    below the unit size and ``1/omega`` well inside the cut-off).

    References
    ----------
    Mohler, Short, Brantingham, Schoenberg & Tita (2011), "Self-exciting point process
    modeling of crime", JASA 106(493), 100-108.

    Examples
    --------
    >>> from placecast.models.simulate import simulate_sepp
    >>> sim = simulate_sepp(background_rate=5.0, region=(0, 0, 10000, 10000), theta=0.5,
    ...                     omega=0.2, sigma=100.0, days=365, random_state=3)
    >>> model = SEPP().fit(sim.to_events())
    >>> bool(abs(model.branching_ratio_ - 0.5) < 3 * model.fit_.standard_errors[
    ...     "branching_ratio"])
    True
    """

    name = "sepp"

    def __init__(self, *, time_cutoff: float = 90.0, distance_cutoff: float = 1000.0,
                 background_bandwidth: float = 500.0, background_updates: int = 3,
                 background_neighbours: int | None = None,
                 sigma_min: float = 10.0, max_iter: int = 500, tol: float = 1e-6,
                 theta_init: float = 0.3,
                 omega_init: float = 0.1, sigma_init: float = 100.0,
                 random_state: Any = None) -> None:
        self.time_cutoff = time_cutoff
        self.distance_cutoff = distance_cutoff
        self.background_bandwidth = background_bandwidth
        self.background_updates = background_updates
        self.background_neighbours = background_neighbours
        self.sigma_min = sigma_min
        self.max_iter = max_iter
        self.tol = tol
        self.theta_init = theta_init
        self.omega_init = omega_init
        self.sigma_init = sigma_init
        self.random_state = random_state

    def _validate(self) -> None:
        for name in ("time_cutoff", "distance_cutoff", "background_bandwidth", "tol",
                     "omega_init", "sigma_init"):
            check_positive(getattr(self, name), name)
        for name in ("max_iter", "background_updates"):
            value = getattr(self, name)
            if not isinstance(value, int | np.integer) or value < (1 if name == "max_iter"
                                                                    else 0):
                raise ParameterError(f"{name} must be a {'positive' if name == 'max_iter' else 'non-negative'} integer, got {value!r}.", param=name)  # noqa: E501
        theta = check_positive(self.theta_init, "theta_init")
        if theta is not None and theta >= 1:
            raise ParameterError(f"theta_init must be in (0, 1), got {self.theta_init!r}.",
                                 param="theta_init")

    def fit(self, events: Events) -> Self:
        """Fit by EM over the events' span (first to last event).

        Raises
        ------
        DataError
            With fewer than two events or all events at one moment.
        ParameterError
            For invalid parameters.
        """
        self._validate()
        if isinstance(self.sigma_min, bool) or not isinstance(
                self.sigma_min, int | float | np.integer | np.floating) or self.sigma_min < 0:
            raise ParameterError(f"sigma_min must be a length >= 0 in metres, got "
                                 f"{self.sigma_min!r}.", param="sigma_min")
        k = self.background_neighbours
        if k is not None and (isinstance(k, bool) or not isinstance(k, int | np.integer)
                              or k < 1):
            raise ParameterError(f"background_neighbours must be a positive integer or None, "
                                 f"got {k!r}.", param="background_neighbours")
        if len(events) < 2:
            raise DataError(f"sepp needs at least two events to fit; got {len(events)}.")
        self.origin_ = events.start
        self._refit: tuple[Any, HawkesFit, _Fitted] | None = None
        fit, state = self._estimate(events)
        self.fit_ = fit
        self.theta_ = fit.theta
        self.omega_ = fit.omega
        self.sigma_ = float(fit.sigma or 0.0)
        self.branching_ratio_ = fit.branching_ratio
        self.background_rate_ = state.background_rate
        self.background_density_ = state.density
        self.p_background_ = state.p_background
        self.events_ = events
        return self

    def _estimate(self, events: Events) -> tuple[HawkesFit, _Fitted]:
        days = events.days_since(self.origin_)
        return fit_sepp(
            days, events.x, events.y, float(days.min()), float(days.max()),
            time_cutoff=float(self.time_cutoff), distance_cutoff=float(self.distance_cutoff),
            background_bandwidth=float(self.background_bandwidth),
            background_updates=int(self.background_updates),
            background_neighbours=(None if self.background_neighbours is None
                                   else int(self.background_neighbours)),
            sigma_min=float(self.sigma_min), theta_init=float(self.theta_init),
            omega_init=float(self.omega_init), sigma_init=float(self.sigma_init),
            max_iter=int(self.max_iter), tol=float(self.tol))

    def _estimates_for(self, window: TimeWindow, history: Events
                       ) -> tuple[HawkesFit, _Fitted]:
        """Return the fit, or a refit on the events before the window.

        The refit happens when fitted events reach into the window, so no later event
        informs a forecast; the last refit is cached.
        """
        if self.events_.end < window.start:
            return self.fit_, _Fitted(self.background_rate_, self.background_density_,
                                      self.p_background_)
        if self._refit is None or self._refit[0] != window.start:
            if len(history) < 2:
                raise DataError(f"sepp needs at least two events before {window}.")
            self._refit = (window.start, *self._estimate(history))
        return self._refit[1], self._refit[2]

    def predict(self, units: Units, window: TimeWindow) -> Forecast:
        """Expected events per unit over ``window`` (see Notes of the class)."""
        check_is_fitted(self)
        from placecast.models.kde import kernel_mass

        history = self._training_events(window)
        start = float((window.start - self.origin_) / np.timedelta64(1, "D"))
        fit, state = self._estimates_for(window, history)
        theta, omega = fit.theta, fit.omega
        sigma, branching = float(fit.sigma or 0.0), fit.branching_ratio
        density = state.density
        raster = units.raster(min(units.typical_size / 4.0, density.pixel_size))
        cx, cy = raster.centres()
        pixel_mass = density(cx, cy) * raster.pixel_size**2
        background = state.background_rate * raster.sum_by_unit(pixel_mass, len(units))
        age = start - history.days_since(self.origin_)
        recent = age <= float(self.time_cutoff)
        weights = theta * np.exp(-omega * age[recent])
        excitation = np.zeros(len(units))
        if recent.any():
            excitation = kernel_mass(units, history.x[recent], history.y[recent], weights,
                                     sigma)
        rate0 = background + omega * excitation
        e1, e2 = window_integrals(omega, branching, window.days)
        intensity = np.maximum(rate0 * e1 + omega * background * e2, 0.0)
        return self._make_forecast(units, window, intensity, theta=theta, omega=omega,
                                   sigma_m=sigma, branching_ratio=branching)

    def simulate(self, window: TimeWindow) -> Events:
        """Draw events over ``window`` from the fitted model.

        Fresh history, background from the fitted density; seeded by ``random_state``.
        """
        check_is_fitted(self)
        from placecast.models.simulate import simulate_sepp

        density = self.background_density_

        def background_xy(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
            p = density.values.ravel() * density.pixel_size**2
            pick = rng.choice(p.size, size=n, p=p / p.sum())
            row, col = np.divmod(pick, density.values.shape[1])
            x = density.origin[0] + (col + rng.uniform(size=n)) * density.pixel_size
            y = density.origin[1] + (row + rng.uniform(size=n)) * density.pixel_size
            return x, y

        sim = simulate_sepp(background_rate=self.background_rate_, region=None,
                            theta=self.theta_, omega=self.omega_, sigma=self.sigma_,
                            days=window.days, time_cutoff=float(self.time_cutoff),
                            distance_cutoff=float(self.distance_cutoff),
                            background_xy=background_xy, random_state=self.random_state)
        return sim.to_events(start=window.start,
                             spatial_reference=self.events_.spatial_reference)


"""Marked space-time ETAS for earthquake catalogs (Ogata 1998; Zhuang, Ogata & Vere-Jones 2002).

Conditional intensity (time in days, space in the catalog's flat projection)::

    lambda(t, x, y, m) = beta e^{-beta (m - m0)} [ mu u(x, y)
        + sum_{t_i < t} A e^{alpha (m_i - m0)} (p - 1)/c (1 + (t - t_i)/c)^{-p}
          (q - 1)/(pi sigma_i) (1 + r_i^2/sigma_i)^{-q} ],   sigma_i = D e^{gamma (m_i - m0)}.

Estimation follows the R package ETAS 0.7.2 (Jalilian 2019) step by step: the background
``u`` is a variable-bandwidth Gaussian kernel estimate weighted by the background
probabilities (stochastic declustering, Zhuang et al. 2002); outer iteration ``k`` runs
``12 - k`` smoothing passes and then maximises the log-likelihood

    logL = sum_{target j} log lambda_j - [ mu integ0 + sum_j kappa(m_j) (G_j) S_j ]

over ``theta = (mu, A, c, alpha, p, D, q, gamma)`` by quasi-Newton (BFGS on log(theta) with
log(p - 1), log(q - 1); analytic gradient; inverse Hessian carried over).
``beta`` is ``1 / mean(m - m0)``.

References
----------
Ogata, Y. (1998). Space-time point-process models for earthquake occurrences. Annals of
the Institute of Statistical Mathematics 50, 379-402.
Zhuang, J., Ogata, Y. & Vere-Jones, D. (2002). Stochastic declustering of space-time
earthquake occurrences. JASA 97, 369-380.
Jalilian, A. (2019). ETAS: an R package for fitting the space-time ETAS model to
earthquake data. Journal of Statistical Software 88(1), doi:10.18637/jss.v088.c01.
"""

from __future__ import annotations

import math
import time as _time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from placecast._progress import ProgressCallback, report
from placecast.exceptions import ParameterError
from placecast.seismic import _kernels as _k
from placecast.seismic._catalog import MarkedCatalog, point_in_polygon

__all__ = [
    "PARAM_NAMES",
    "MarkedETAS",
    "MarkedETASResult",
    "MarkedETASLikelihood",
    "fit_marked_etas",
    "simulate_marked_etas",
]

#: Parameter order of the reference (R package ETAS).
PARAM_NAMES: tuple[str, ...] = ("mu", "A", "c", "alpha", "p", "D", "q", "gamma")

#: Initial values used when none are given (those of the reference's Iran example).
DEFAULT_INITIAL: dict[str, float] = {
    "mu": 0.5, "A": 0.2, "c": 0.05, "alpha": 1.5, "p": 1.2, "D": 0.02, "q": 2.3,
    "gamma": 0.03,
}

FloatArray = npt.NDArray[np.float64]


def _interleave(idx: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Order [first, last, second, second last, ...]: balances triangular work per chunk."""
    n = idx.size
    out = np.empty(n, dtype=np.int64)
    out[0::2] = idx[: (n + 1) // 2]
    out[1::2] = idx[::-1][: n // 2]
    return out


class MarkedETASLikelihood:
    """Log-likelihood of marked ETAS on a catalog, with the background held fixed.

    Holds the per-catalog precomputations (bandwidths, the Gaussian masses inside the
    region, the compressed polygon rule of the ETAS kernel). ``loglik(theta, bk, integ0)``
    costs O(sum over targets of their index) pair terms plus O(n * 16 * panels).

    Parameters
    ----------
    catalog : MarkedCatalog
    bandwidth_min : float, optional
        Minimum background bandwidth ``bwm`` (default 0.05 degree or 5.56 km).
    n_neighbours : int
        Bandwidth is the distance to this nearest neighbour (default 5).
    ndiv : int
        Sub-segments per polygon edge (default 1000, the reference's rule).
    """

    def __init__(self, catalog: MarkedCatalog, *, bandwidth_min: float | None = None,
                 n_neighbours: int = 5, ndiv: int = 1000) -> None:
        from scipy.spatial import cKDTree

        self.catalog = catalog
        if bandwidth_min is None:
            bandwidth_min = 0.05 if catalog.distance_unit == "degree" else 5.56
        self.x = np.ascontiguousarray(catalog.x, dtype=float)
        self.y = np.ascontiguousarray(catalog.y, dtype=float)
        self.t = np.ascontiguousarray(catalog.t, dtype=float)
        self.m = np.ascontiguousarray(catalog.m, dtype=float)
        n = self.t.size
        k = min(n_neighbours, n - 1)
        if k >= 1:
            dist, _ = cKDTree(np.column_stack([self.x, self.y])).query(
                np.column_stack([self.x, self.y]), k=k + 1)
            nn = dist[:, k]
        else:
            nn = np.zeros(n)
        self.bandwidth = np.maximum(nn, bandwidth_min)
        self.targets = np.flatnonzero(catalog.flag == 1).astype(np.int64)
        self._targets_balanced = _interleave(self.targets)
        self._all_balanced = _interleave(np.arange(n, dtype=np.int64))
        px = np.ascontiguousarray(catalog.polygon[:, 0])
        py = np.ascontiguousarray(catalog.polygon[:, 1])
        self.px, self.py, self.ndiv = px, py, int(ndiv)
        d2 = ((self.x[:, None] - px[None, :]) ** 2 + (self.y[:, None] - py[None, :]) ** 2)
        v_hi = math.log(max(float(d2.max()), 1e-300)) + 0.5
        self.v_lo = v_hi - _k.N_PANELS * _k.PANEL_WIDTH
        xs, bw = _k.chebyshev_nodes()
        gl_z, gl_w = np.polynomial.legendre.leggauss(_k.N_GAUSS)
        self.gauss_integ, self.omega = _k.spatial_precompute(
            self.x, self.y, px, py, self.bandwidth, self.ndiv, self.v_lo, xs, bw, gl_z, gl_w,
            _k.BLOCK_RATIO)
        panels = np.arange(_k.N_PANELS)
        self.node_u = np.exp(self.v_lo + _k.PANEL_WIDTH * (panels[:, None]
                                                           + (xs[None, :] + 1.0) / 2.0)
                             ).ravel()
        used = np.abs(self.omega.reshape(n, _k.N_PANELS, _k.N_CHEB)).sum(axis=2) > 0
        any_used = used.any(axis=1)
        self.panel_lo = np.where(any_used, used.argmax(axis=1), 0).astype(np.int64)
        self.panel_hi = np.where(any_used, _k.N_PANELS - used[:, ::-1].argmax(axis=1),
                                 0).astype(np.int64)
        self.n_evaluations = 0
        self._kernel: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    # -- pieces -----------------------------------------------------------------------
    def background(self, pb: FloatArray) -> tuple[FloatArray, float]:
        """``bk`` at every event and ``integ0`` for background probabilities ``pb``."""
        cat = self.catalog
        if self._kernel is None:
            self._kernel = _k.gaussian_neighbours(self.x, self.y, self.bandwidth, 50.0)
        bk = _k.sparse_matvec(*self._kernel, pb, 1.0 / (cat.t_end - cat.t_start))
        return bk, float(np.dot(pb, self.gauss_integ))

    def triggering(self, theta: FloatArray) -> FloatArray:
        """Triggered intensity (without ``mu bk``) at every event. O(n^2 / 2)."""
        th = np.asarray(theta, dtype=float).copy()
        th[0] = 0.0
        out = _k.target_intensities(th, self.t, self.x, self.y, self.m, np.zeros_like(self.t),
                                    self._all_balanced, False)
        trig = np.empty_like(self.t)
        trig[self._all_balanced] = out[:, 0]
        return trig

    def spatial_integral(self, sigma: FloatArray, q: float) -> FloatArray:
        """Kernel mass inside the region for each event (compressed rule; for checks)."""
        out = np.empty_like(self.t)
        for j in range(self.t.size):
            w = self.omega[j]
            s = np.sum(w * (1.0 - (1.0 + self.node_u / sigma[j]) ** (1.0 - q)))
            out[j] = s / (2.0 * math.pi)
        return out

    def loglik(self, theta: FloatArray, bk: FloatArray, integ0: float,
               gradient: bool = True) -> tuple[float, FloatArray]:
        """Log-likelihood and its gradient in ``theta`` (reference conventions)."""
        theta = np.ascontiguousarray(theta, dtype=float)
        cat = self.catalog
        self.n_evaluations += 1
        lam = _k.target_intensities(theta, self.t, self.x, self.y, self.m, bk,
                                    self._targets_balanced, gradient)
        val = lam[:, 0]
        ok = val > 1e-25
        ll = float(np.sum(np.log(val[ok])) - 100.0 * np.count_nonzero(~ok))
        integ, dinteg = _k.integral_terms(theta, self.t, self.m, cat.t_start, cat.t_end,
                                          self.omega, self.node_u, self.panel_lo,
                                          self.panel_hi, gradient)
        ll -= theta[0] * integ0 + integ
        grad = np.zeros(8)
        if gradient:
            grad = (lam[ok, 1:] / val[ok, None]).sum(axis=0)
            grad[0] -= integ0
            grad -= dinteg
        return ll, grad


@dataclass(frozen=True)
class MarkedETASResult:
    """Fitted marked ETAS.

    Attributes
    ----------
    params : dict
        Estimates of ``mu, A, c, alpha, p, D, q, gamma``.
    std_errors : dict
        Standard errors from the observed information (numerical Hessian of the analytic
        gradient at the estimate, background held fixed). The reference prints SEs from
        its quasi-Newton inverse Hessian instead, which can differ a lot.
    beta, beta_se : float
        Gutenberg-Richter ``1/mean(m - m0)`` and ``beta / sqrt(n)``.
    loglik, aic : float
        Log-likelihood at the estimate; ``AIC = -2 logL + 2 * 8``.
    n_iterations : int
        Outer (smoothing + optimisation) iterations.
    n_evaluations : int
        Likelihood evaluations.
    converged : bool
        Whether the outer iteration met ``rel_tol``.
    run_time_s : float
    background_prob : ndarray
        Declustering probability that each event is a background event.
    background : ndarray
        ``bk``, the background density at each event (per day, per unit area).
    catalog : MarkedCatalog
    history : list of dict
        Estimates and log-likelihood after each outer iteration.
    """

    params: dict[str, float]
    std_errors: dict[str, float]
    beta: float
    beta_se: float
    loglik: float
    aic: float
    n_iterations: int
    n_evaluations: int
    converged: bool
    run_time_s: float
    background_prob: FloatArray = field(repr=False)
    background: FloatArray = field(repr=False)
    catalog: MarkedCatalog = field(repr=False)
    history: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready estimates (names as in the reference) and fit facts."""
        out: dict[str, Any] = {"model": "etas_marked", "beta": self.beta}
        out.update(self.params)
        out["std_errors"] = {"beta": self.beta_se, **self.std_errors}
        out.update(loglik=self.loglik, aic=self.aic, iterations=self.n_iterations,
                   evaluations=self.n_evaluations, converged=self.converged,
                   run_time_s=self.run_time_s, catalog=self.catalog.summary())
        return out

    def to_frame(self) -> Any:
        """One row per event: time, lon, lat, magnitude, flag, background probability."""
        import pandas as pd

        cat = self.catalog
        return pd.DataFrame({
            "time": cat.time, "lon": cat.lon, "lat": cat.lat, "mag": cat.magnitude,
            "target": cat.flag == 1, "flag": cat.flag,
            "background_prob": self.background_prob,
            "triggered_prob": 1.0 - self.background_prob,
            "background_density": self.background,
        })


def _theta_from(initial: dict[str, float] | None) -> FloatArray:
    values = dict(DEFAULT_INITIAL)
    for key, value in (initial or {}).items():
        if key not in PARAM_NAMES:
            raise ParameterError(f"initial value for unknown parameter {key!r} "
                                 f"(known: {', '.join(PARAM_NAMES)}).", param="initial")
        values[key] = float(value)
    theta = np.array([values[n] for n in PARAM_NAMES])
    if not np.all(np.isfinite(theta)) or np.any(theta <= 0):
        raise ParameterError("initial values must be positive numbers.", param="initial")
    if values["p"] <= 1 or values["q"] <= 1:
        raise ParameterError("initial p and q must be greater than 1.", param="initial")
    return theta


_SHIFT = np.array([0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0])


def _maximise(lik: MarkedETASLikelihood, theta0: FloatArray, bk: FloatArray,
              integ0: float, hess_inv: FloatArray | None,
              gtol: float) -> tuple[FloatArray, float, FloatArray]:
    """BFGS on ``z = log(theta - shift)`` (shift 1 for p and q, else 0).

    The reference runs DFP on sqrt(theta); this scale keeps every iterate valid
    (positive parameters, p > 1, q > 1) and reaches the same maximum. The inverse Hessian
    is carried over between outer iterations.
    """
    from scipy.optimize import minimize

    def fun(z: FloatArray) -> tuple[float, FloatArray]:
        scale = np.exp(z)
        theta = scale + _SHIFT
        ll, g = lik.loglik(theta, bk, integ0, True)
        if not np.isfinite(ll):
            return 1e300, np.zeros_like(z)
        return -ll, -g * scale

    options: dict[str, Any] = {"gtol": gtol, "maxiter": 400}
    if hess_inv is not None:
        hess_inv = 0.5 * (hess_inv + hess_inv.T)
        if np.all(np.isfinite(hess_inv)) and np.linalg.eigvalsh(hess_inv).min() > 0:
            options["hess_inv0"] = hess_inv
    res = minimize(fun, np.log(theta0 - _SHIFT), jac=True, method="BFGS", options=options)
    return np.exp(res.x) + _SHIFT, -float(res.fun), np.asarray(res.hess_inv)


def _observed_information_se(lik: MarkedETASLikelihood, theta: FloatArray, bk: FloatArray,
                             integ0: float) -> FloatArray:
    """Return standard errors: inverse of minus the Hessian of logL in theta.

    Forward differences of the analytic gradient, relative step 1e-6 (9 evaluations).
    """
    k = theta.size
    g0 = lik.loglik(theta, bk, integ0, True)[1]
    hess = np.zeros((k, k))
    for i in range(k):
        step = 1e-6 * theta[i]
        up = theta.copy()
        up[i] += step
        hess[:, i] = (lik.loglik(up, bk, integ0, True)[1] - g0) / step
    hess = 0.5 * (hess + hess.T)
    try:
        cov = np.linalg.inv(-hess)
    except np.linalg.LinAlgError:
        return np.full(k, np.nan)
    diag = np.diag(cov)
    return np.sqrt(np.where(diag > 0, diag, np.nan))


def fit_marked_etas(
    catalog: MarkedCatalog,
    *,
    initial: dict[str, float] | None = None,
    bandwidth_min: float | None = None,
    n_neighbours: int = 5,
    ndiv: int = 1000,
    max_iterations: int = 11,
    rel_tol: float = 1e-3,
    gtol: float = 1e-4,
    beta_events: str = "target",
    background: str = "smoothed",
    standard_errors: bool = True,
    verbose: bool = False,
    progress: ProgressCallback | None = None,
) -> MarkedETASResult:
    """Fit marked space-time ETAS as the R package ETAS does (see module docstring).

    Parameters
    ----------
    catalog : MarkedCatalog
        From ``placecast.seismic._catalog.build_catalog``.
    initial : dict, optional
        Initial ``mu, A, c, alpha, p, D, q, gamma`` (missing ones from ``DEFAULT_INITIAL``).
    bandwidth_min, n_neighbours, ndiv
        Background bandwidth floor, its nearest-neighbour order, polygon sub-segments.
    max_iterations : int
        Outer iterations at most; iteration ``k`` runs ``max_iterations + 1 - k`` smoothing
        passes (11, 10, 9, ... as in the reference).
    rel_tol : float
        Stop when the signed relative changes of every parameter, of logL and of the
        background are below it (the reference's rule).
    gtol : float
        Gradient tolerance of the quasi-Newton step (on the log scale).
    beta_events : {"target", "all"}
        Events used for the Gutenberg-Richter ``beta`` (the reference has used both).
    background : {"smoothed", "uniform"}
        ``"uniform"`` fixes ``u`` to 1/area (then ``mu`` is background events per day);
        used for simulate-then-fit checks.
    standard_errors : bool
        Compute the observed-information standard errors (9 extra gradient evaluations).
    verbose : bool
        Print the log-likelihood and estimates after each outer iteration.
    progress : callable, optional
        ``progress(n_done, n_total)`` after each outer iteration (of ``max_iterations``,
        plus one step for the standard errors); on early convergence it jumps to the end.

    Returns
    -------
    MarkedETASResult
    """
    started = _time.perf_counter()
    if beta_events not in ("target", "all"):
        raise ParameterError("beta_events must be 'target' or 'all'.", param="beta_events")
    if background not in ("smoothed", "uniform"):
        raise ParameterError("background must be 'smoothed' or 'uniform'.", param="background")
    if max_iterations < 1:
        raise ParameterError("max_iterations must be at least 1.", param="max_iterations")
    theta = _theta_from(initial)
    n_steps = max_iterations + int(bool(standard_errors))
    lik = MarkedETASLikelihood(catalog, bandwidth_min=bandwidth_min,
                               n_neighbours=n_neighbours, ndiv=ndiv)
    n = catalog.n_events
    pb = np.ones(n)
    history: list[dict[str, Any]] = []
    hess_inv: FloatArray | None = None
    bk_old: FloatArray | None = None
    ll_old: float | None = None
    converged = False
    ll = float("nan")
    bk = np.zeros(n)
    integ0 = 0.0
    k = 0
    if background == "uniform":
        poly = catalog.polygon
        area = 0.5 * abs(np.sum(poly[:-1, 0] * poly[1:, 1] - poly[1:, 0] * poly[:-1, 1]))
        bk = np.full(n, 1.0 / area)
        integ0 = catalog.t_end - catalog.t_start
    for k in range(1, max_iterations + 1):
        if background == "smoothed":
            trig = lik.triggering(theta)
            for _ in range(max_iterations + 1 - k):
                bk, integ0 = lik.background(pb)
                lam = theta[0] * bk + trig
                pb = np.where(lam > 0, theta[0] * bk / np.where(lam > 0, lam, 1.0), 1.0)
        theta_new, ll, hess_inv = _maximise(lik, theta, bk, integ0, hess_inv, gtol)
        rel_theta = (theta_new - theta) / theta
        rel_ll = np.inf if ll_old is None else (ll - ll_old) / abs(ll_old)
        rel_bk = (np.inf if bk_old is None
                  else float(np.max((bk - bk_old) / np.where(bk_old > 0, bk_old, 1.0))))
        history.append({"iteration": k, "loglik": ll,
                        **{nm: float(v) for nm, v in zip(PARAM_NAMES, theta_new, strict=True)},
                        "rel_change_max": float(np.max(np.abs(rel_theta)))})
        if verbose:
            print(f"iteration {k}: logL={ll:.4f} theta={np.round(theta_new, 6)}")
        theta = theta_new
        bk_old, ll_old = bk.copy(), ll
        report(progress, k, n_steps)
        if background == "uniform" or (np.all(rel_theta < rel_tol) and rel_ll < rel_tol
                                       and rel_bk < rel_tol):
            converged = True
            break
    report(progress, max_iterations, n_steps)
    # background probabilities at the final estimate
    trig = lik.triggering(theta)
    lam = theta[0] * bk + trig
    pb = np.where(lam > 0, theta[0] * bk / np.where(lam > 0, lam, 1.0), 1.0)
    se = (_observed_information_se(lik, theta, bk, integ0) if standard_errors
          else np.full(8, np.nan))
    report(progress, n_steps, n_steps)
    used = catalog.m[catalog.flag == 1] if beta_events == "target" else catalog.m
    beta = 1.0 / float(np.mean(used)) if used.size and np.mean(used) > 0 else float("nan")
    return MarkedETASResult(
        params={nm: float(v) for nm, v in zip(PARAM_NAMES, theta, strict=True)},
        std_errors={nm: float(v) for nm, v in zip(PARAM_NAMES, se, strict=True)},
        beta=beta, beta_se=beta / math.sqrt(max(used.size, 1)), loglik=ll,
        aic=-2.0 * ll + 2.0 * 8, n_iterations=k, n_evaluations=lik.n_evaluations,
        converged=converged, run_time_s=_time.perf_counter() - started,
        background_prob=pb, background=bk, catalog=catalog, history=history,
    )


class MarkedETAS:
    """Marked space-time ETAS estimator (reference: R package ETAS, Jalilian 2019).

    Parameters are stored as given; see ``fit_marked_etas`` for their meaning. ``fit``
    takes a ``MarkedCatalog`` and sets ``result_`` (a ``MarkedETASResult``).
    """

    def __init__(self, *, initial: dict[str, float] | None = None,
                 bandwidth_min: float | None = None, n_neighbours: int = 5,
                 ndiv: int = 1000, max_iterations: int = 11, rel_tol: float = 1e-3,
                 beta_events: str = "target", background: str = "smoothed") -> None:
        self.initial = initial
        self.bandwidth_min = bandwidth_min
        self.n_neighbours = n_neighbours
        self.ndiv = ndiv
        self.max_iterations = max_iterations
        self.rel_tol = rel_tol
        self.beta_events = beta_events
        self.background = background

    def fit(self, catalog: MarkedCatalog) -> MarkedETAS:
        """Fit to ``catalog``; the result is in ``self.result_``."""
        self.result_ = fit_marked_etas(
            catalog, initial=self.initial, bandwidth_min=self.bandwidth_min,
            n_neighbours=self.n_neighbours, ndiv=self.ndiv,
            max_iterations=self.max_iterations, rel_tol=self.rel_tol,
            beta_events=self.beta_events, background=self.background)
        return self


def simulate_marked_etas(
    params: dict[str, float],
    *,
    beta: float,
    m0: float,
    polygon: FloatArray,
    duration: float,
    random_state: int | np.random.Generator | None = None,
    max_events: int = 200_000,
) -> dict[str, FloatArray]:
    """Simulate marked ETAS with a uniform background on ``polygon`` over ``[0, duration]``.

    Background events: Poisson with ``mu`` per day, uniform in the polygon. Each event of
    magnitude ``m`` has Poisson(``A e^{alpha (m - m0)}``) children, Omori-Utsu delays
    (``t = c ((1-U)^{1/(1-p)} - 1)``), offsets with ``r^2 = sigma ((1-U)^{1/(1-q)} - 1)``
    and a uniform angle (children may fall outside the polygon), magnitudes
    ``m0 + Exp(beta)``. Branching, O(n_events).

    Returns
    -------
    dict with ``t``, ``x``, ``y``, ``mag``, ``parent`` (-1 for background), sorted by time.
    """
    rng = (random_state if isinstance(random_state, np.random.Generator)
           else np.random.default_rng(random_state))
    mu, A, c = params["mu"], params["A"], params["c"]
    alpha, p, D = params["alpha"], params["p"], params["D"]
    q, gamma = params["q"], params["gamma"]
    if p <= 1 or q <= 1:
        raise ParameterError("p and q must be greater than 1 to simulate.", param="params")
    poly = np.asarray(polygon, dtype=float)
    if not (poly[0] == poly[-1]).all():
        poly = np.vstack([poly, poly[:1]])
    n_bg = rng.poisson(mu * duration)
    x0, y0 = poly[:, 0].min(), poly[:, 1].min()
    x1, y1 = poly[:, 0].max(), poly[:, 1].max()
    bx: list[float] = []
    by: list[float] = []
    while len(bx) < n_bg:
        cx = rng.uniform(x0, x1, 2 * n_bg + 10)
        cy = rng.uniform(y0, y1, 2 * n_bg + 10)
        ok = point_in_polygon(cx, cy, poly)
        bx.extend(cx[ok].tolist())
        by.extend(cy[ok].tolist())
    t = list(rng.uniform(0, duration, n_bg))
    x = bx[:n_bg]
    y = by[:n_bg]
    mag = list(m0 + rng.exponential(1.0 / beta, n_bg))
    parent = [-1] * n_bg
    i = 0
    while i < len(t):
        mi = mag[i] - m0
        n_child = rng.poisson(A * math.exp(alpha * mi))
        if n_child:
            u = rng.random(n_child)
            dt = c * ((1.0 - u) ** (1.0 / (1.0 - p)) - 1.0)
            sig = D * math.exp(gamma * mi)
            r = np.sqrt(sig * ((1.0 - rng.random(n_child)) ** (1.0 / (1.0 - q)) - 1.0))
            ang = rng.uniform(0, 2 * math.pi, n_child)
            keep = t[i] + dt <= duration
            for tt, xx, yy in zip((t[i] + dt)[keep], (x[i] + r * np.cos(ang))[keep],
                                  (y[i] + r * np.sin(ang))[keep], strict=True):
                t.append(float(tt))
                x.append(float(xx))
                y.append(float(yy))
                mag.append(float(m0 + rng.exponential(1.0 / beta)))
                parent.append(i)
        i += 1
        if len(t) > max_events:
            raise ParameterError(f"the simulation exceeded {max_events} events; the "
                                 "branching ratio is probably >= 1.", param="params")
    order = np.argsort(t, kind="stable")
    inv = np.empty_like(order)
    inv[order] = np.arange(order.size)
    par = np.asarray(parent)[order]
    par = np.where(par >= 0, inv[np.maximum(par, 0)], -1)
    return {"t": np.asarray(t)[order], "x": np.asarray(x)[order],
            "y": np.asarray(y)[order], "mag": np.asarray(mag)[order], "parent": par}

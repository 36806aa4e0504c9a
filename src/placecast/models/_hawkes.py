r"""Pieces shared by the self-exciting models: the fit result, exact M-step solvers and
the expected count of a window.

Notation (both models): triggering kernel :math:`\theta\,\omega e^{-\omega\Delta t}`
in time (days), optionally times a Gaussian :math:`\phi_\sigma` in space (metres).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize

from placecast.models._hawkes_kernels import decay_sums

__all__ = ["HawkesFit", "Horizons", "solve_decay", "solve_spatial_scale", "window_integrals"]


@dataclass(frozen=True, slots=True)
class HawkesFit:
    r"""Estimates of a self-exciting model and how the fit went.

    Attributes
    ----------
    model : str
        ``"etas"`` or ``"sepp"``.
    theta : float
        :math:`\theta`, the amplitude of the triggering kernel in the intensity formula.
    branching_ratio : float
        Expected number of events directly triggered by one event (``theta`` times the
        kernel mass kept by any cut-offs).
    omega : float
        Decay rate of triggering, per day (mean delay ``1/omega`` days).
    sigma : float or None
        Standard deviation of the Gaussian spatial kernel, metres (``sepp`` only).
    background_rate : float
        Background events per day over the whole region (the sum of :math:`\mu`).
    n_events : int
        Events fitted.
    n_background : float
        Expected number of background events among them (sum of background probabilities).
    fraction_triggered : float
        ``1 - n_background / n_events``.
    loglik : float
        Log-likelihood at the estimates.
    iterations : int
        EM iterations run.
    converged : bool
        Whether the relative parameter change fell below the tolerance.
    run_time_s : float
        Wall-clock time of the fit, seconds.
    period_days : float
        Length of the observation period fitted, days.
    standard_errors : dict
        Standard errors of ``theta``, ``branching_ratio``, ``omega`` (and ``sigma``) from the
        observed information (see each model's Notes).
    details : dict
        Model-specific extras (cut-offs, cell size, number of cells, ...).
    """

    model: str
    theta: float
    branching_ratio: float
    omega: float
    sigma: float | None
    background_rate: float
    n_events: int
    n_background: float
    fraction_triggered: float
    loglik: float
    iterations: int
    converged: bool
    run_time_s: float
    period_days: float
    standard_errors: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """All fields, JSON-ready, with ``mean_delay_days`` and 95% intervals added."""
        out = asdict(self)
        out["mean_delay_days"] = 1.0 / self.omega if self.omega > 0 else float("inf")
        out["intervals_95"] = {
            name: [getattr(self, name) - 1.96 * se, getattr(self, name) + 1.96 * se]
            for name, se in self.standard_errors.items() if np.isfinite(se)
        }
        return out

    def to_frame(self) -> pd.DataFrame:
        """One row per triggering parameter: ``parameter, estimate, std_error``."""
        names = ["theta", "branching_ratio", "omega"] + (["sigma"] if self.sigma else [])
        return pd.DataFrame({
            "parameter": names,
            "estimate": [float(getattr(self, n)) for n in names],
            "std_error": [self.standard_errors.get(n, float("nan")) for n in names],
        })


class Horizons:
    """The times ``c_i`` each event can trigger within the period, as distinct values with
    multiplicities (most events share the time cut-off, so this is often much shorter).
    """

    def __init__(self, horizon: np.ndarray) -> None:
        values, counts = np.unique(np.asarray(horizon, dtype=float), return_counts=True)
        self.values = values
        self.counts = counts.astype(float)

    def sums(self, omega: float) -> tuple[float, float, float]:
        """``G(omega) = sum_i (1 - e^{-omega c_i})``, ``G'`` and ``G''``."""
        return decay_sums(float(omega), self.values, self.counts)


def solve_decay(s_trig: float, d_trig: float, horizon: np.ndarray | Horizons,
                bounds: tuple[float, float] = (1e-7, 1e7), start: float | None = None
                ) -> float:
    r"""Exact M-step for the temporal decay rate.

    Maximises :math:`S\log\omega - \omega D - S\log G(\omega)` with
    :math:`G(\omega) = \sum_i (1 - e^{-\omega c_i})`, where ``S`` is the expected number
    of triggered events, ``D`` the expected total delay and ``c_i`` the time each event
    could trigger within the observation period (``T - t_i``, capped by any cut-off). This
    is the complete-data likelihood with :math:`\theta = S/G(\omega)` profiled out.

    The root of the derivative is found by safeguarded Newton steps in
    :math:`\log\omega` (bisection when a step leaves the bracket), from ``start`` when
    given; a bound is returned when the derivative does not change sign (delays too long
    to identify a decay). Each evaluation is O(number of distinct horizons).
    """
    sums = horizon if isinstance(horizon, Horizons) else Horizons(horizon)
    if s_trig <= 0:
        return float(bounds[1])

    def slope(log_omega: float) -> tuple[float, float]:
        omega = np.exp(log_omega)
        g, g1, g2 = sums.sums(omega)
        value = s_trig / omega - d_trig - s_trig * g1 / g
        derivative = -s_trig / omega**2 - s_trig * (g2 * g - g1 * g1) / (g * g)
        return float(value), float(derivative * omega)

    lo, hi = float(np.log(bounds[0])), float(np.log(bounds[1]))
    if slope(lo)[0] <= 0:
        return float(bounds[0])
    if slope(hi)[0] >= 0:
        return float(bounds[1])
    u = float(np.log(start)) if start is not None and bounds[0] < start < bounds[1] else (
        0.5 * (lo + hi))
    for _ in range(200):
        value, derivative = slope(u)
        if value > 0:
            lo = u
        else:
            hi = u
        step = value / derivative if derivative < 0 else np.inf
        candidate = u - step
        if not (lo < candidate < hi):
            candidate = 0.5 * (lo + hi)
        if abs(candidate - u) < 1e-13 or hi - lo < 1e-13:
            return float(np.exp(candidate))
        u = candidate
    return float(np.exp(u))


def solve_spatial_scale(s_trig: float, r_trig: float, cutoff: float,
                        minimum: float = 0.0) -> float:
    r"""Exact M-step for the Gaussian scale with a distance cut-off ``d``.

    Maximises :math:`-S\log m(v) - S\log v - R/(2v)` over :math:`v = \sigma^2 \ge
    \sigma_{min}^2`, where :math:`m(v) = 1 - e^{-d^2/(2v)}` is the kernel mass inside the
    cut-off and ``R`` the expected sum of squared distances. Without a cut-off (``d``
    infinite) the answer is :math:`\sigma^2 = \max(R / (2S), \sigma_{min}^2)`. The
    objective is unimodal in ``v``, so clipping at the bound gives the constrained maximum.
    The bound matters for data with repeat events at identical coordinates, where the
    likelihood grows without limit as ``sigma -> 0``.
    """
    if s_trig <= 0:
        return float("nan")
    v0 = r_trig / (2.0 * s_trig)
    v_min = minimum * minimum
    if not np.isfinite(cutoff):
        return float(np.sqrt(max(v0, v_min)))
    a = cutoff * cutoff / 2.0

    def slope(log_v: float) -> float:
        v = np.exp(log_v)
        x = a / v
        ratio = np.exp(-x) / -np.expm1(-x) if x < 700 else 0.0
        return float(r_trig / 2.0 + s_trig * a * ratio - s_trig * v)

    lo = np.log(max(v_min, v0 * 1e-3, 1e-300))
    hi = np.log(a * 1e6)
    if slope(lo) <= 0:
        return float(np.sqrt(np.exp(lo))) if v_min > 0 else float(np.sqrt(max(v0, 1e-300)))
    if slope(hi) >= 0:
        return float(np.sqrt(np.exp(hi)))
    return float(np.sqrt(np.exp(optimize.brentq(slope, lo, hi, xtol=1e-13, rtol=1e-13))))


def window_integrals(omega: float, branching_ratio: float, days: float) -> tuple[float, float]:
    r"""Weights ``(E1, E2)`` of the expected count of a window of ``days``.

    For a self-exciting process with background rate ``M``, intensity ``m0`` at the window
    start (background plus the decaying excitation of past events) and offspring that stay
    where their parent is, the mean intensity solves
    :math:`m' = -\kappa m + \omega M` with :math:`\kappa = \omega(1 - n)` (``n`` the
    branching ratio), so the expected count over ``[s, s + D)`` is

    .. math:: \int_s^{s+D} m = m_0 E_1 + \omega M E_2, \quad
              E_1 = \frac{1 - e^{-\kappa D}}{\kappa}, \quad E_2 = \frac{D - E_1}{\kappa}.

    This counts the events triggered inside the window (and their offspring), not only
    the excitation of the past. ``n >= 1`` (explosive) is handled by the same formula.
    """
    kappa = omega * (1.0 - branching_ratio)
    z = kappa * days
    if abs(z) < 1e-6:
        e1 = days * (1.0 - z / 2.0 + z * z / 6.0)
        e2 = days * days * (0.5 - z / 6.0 + z * z / 24.0)
    else:
        e1 = -np.expm1(-z) / kappa
        e2 = (days - e1) / kappa
    return float(e1), float(e2)


def relative_change(old: np.ndarray, new: np.ndarray) -> float:
    """Largest relative change between two parameter vectors."""
    old = np.asarray(old, dtype=float)
    new = np.asarray(new, dtype=float)
    scale = np.maximum(np.abs(old), 1e-12)
    return float(np.max(np.abs(new - old) / scale))


def squarem(step: Any, start: np.ndarray, *, max_iter: int, tol: float
            ) -> tuple[np.ndarray, int, bool, float]:
    r"""Accelerate an EM map with SQUAREM (Varadhan & Roland 2008), on log parameters.

    ``step(q) -> (q_next, loglik_at_q)`` is one EM iteration on log parameters. Each cycle
    takes two EM steps, extrapolates along them with the steplength
    :math:`\alpha = -\|r\|/\|v\|` (capped at -1) and stabilises with one more EM step;
    the extrapolation is kept only if the log-likelihood did not drop below that of the
    plain EM path, so the likelihood never decreases.

    Returns
    -------
    q : ndarray
        Final log parameters.
    n_steps : int
        EM steps taken (the iteration count reported).
    converged : bool
        Whether the largest absolute change of the log parameters (the relative change of
        the parameters) fell below ``tol`` before ``max_iter`` EM steps.
    change : float
        The last change.
    """
    q0 = np.asarray(start, dtype=float)
    n_steps = 0
    change = np.inf
    while n_steps < max_iter:
        q1, _ = step(q0)
        n_steps += 1
        change = float(np.max(np.abs(q1 - q0)))
        if change < tol:
            return q1, n_steps, True, change
        q2, loglik1 = step(q1)
        n_steps += 1
        r = q1 - q0
        v = q2 - q1 - r
        norm_v = float(np.sqrt(np.sum(v * v)))
        if norm_v == 0.0 or not np.isfinite(norm_v):
            q0 = q2
            continue
        alpha = min(-float(np.sqrt(np.sum(r * r))) / norm_v, -1.0)
        q_new = np.clip(q0 - 2.0 * alpha * r + alpha * alpha * v, -690.0, 690.0)
        with np.errstate(all="ignore"):
            q3, loglik_new = step(q_new)
        n_steps += 1
        if (np.isfinite(loglik_new) and np.isfinite(q3).all()
                and loglik_new >= loglik1 - 1e-9 * abs(loglik1)):
            q0 = q3
        else:
            q0 = q2
    return q0, n_steps, False, change

"""Feedback-loop simulation: does a policy learn where events are, or where it looked.

Two simulations:

* ``simulate_urn`` - the two-area Pólya-urn model of Ensign et al. (2018): patrols go to
  an area with probability equal to its share of the urn, only incidents discovered by the
  patrol are added back. With unequal rates the allocation runs away to the higher-rate
  area; weighting each discovered incident by the inverse of the probability of having
  looked there keeps the allocation at the true ratio.
* ``simulate_feedback`` - the same question for a real policy over many area units: a
  ground-truth intensity generates events; an event is *recorded* with a base probability
  (citizen reports), higher in flagged units (``uplift``); the model is refitted on the
  recorded events each period; the drift of the allocation from the one the true intensity
  implies is measured by total-variation distance, for the policy as configured and the
  mitigations (citizen-reported events only, inverse-detection-probability weights, a
  share of randomised allocation).

Everything is about area units, never persons.

References
----------
Ensign, Friedler, Neville, Scheidegger & Venkatasubramanian (2018), "Runaway feedback
loops in predictive policing", Proceedings of Machine Learning Research 81 (FAT*), 1-12.
Lum & Isaac (2016), "To predict and serve?", Significance 13(5), 14-19.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from placecast.exceptions import ParameterError

__all__ = [
    "FEEDBACK_VARIANTS",
    "URN_VARIANTS",
    "FeedbackResult",
    "UrnResult",
    "plot_feedback",
    "select_top",
    "simulate_feedback",
    "model_refit",
    "simulate_urn",
    "sum_refit",
    "total_variation",
]

#: Urn update rules: ``discovered`` (plain feedback), ``corrected`` (Ensign et al.'s
#: inverse-visit-probability weights), ``thinned`` (the same by rejection sampling),
#: ``reported`` (only incidents reported by residents,
#: independent of patrols), ``randomised`` (a share of patrols sent uniformly at random,
#: discovered incidents only).
URN_VARIANTS = ("discovered", "corrected", "thinned", "reported", "randomised")

#: Policy variants of ``simulate_feedback``: ``policy`` (as configured, all recorded events),
#: ``no_feedback`` (reference: no detection uplift), ``citizen_only`` (only citizen-reported
#: events), ``ipw`` (events weighted by 1 / detection probability, Ensign et al.),
#: ``randomised`` (a share of the flagged area chosen at random).
FEEDBACK_VARIANTS = ("policy", "no_feedback", "citizen_only", "ipw", "randomised")


def total_variation(p: npt.ArrayLike, q: npt.ArrayLike) -> float:
    """Total-variation distance ``0.5 * sum |p/sum(p) - q/sum(q)|`` between allocations.

    Examples
    --------
    >>> total_variation([1, 1, 0, 0], [0, 1, 1, 0])
    0.5
    """
    a = np.asarray(p, dtype=float)
    b = np.asarray(q, dtype=float)
    sa, sb = a.sum(), b.sum()
    if sa <= 0 or sb <= 0:
        return float("nan")
    return float(0.5 * np.abs(a / sa - b / sb).sum())


def select_top(scores: npt.ArrayLike, area: npt.ArrayLike, budget: float) -> np.ndarray:
    """Boolean mask of the highest-scoring units whose total area stays within ``budget``.

    The same rule as ``Forecast.top_units``: units in decreasing score (ties: lower index
    first) while the cumulative area is at most ``budget``.
    """
    s = np.asarray(scores, dtype=float)
    a = np.asarray(area, dtype=float)
    order = np.argsort(-s, kind="stable")
    keep = order[np.cumsum(a[order]) <= budget * (1 + 1e-9)]
    mask = np.zeros(s.shape, dtype=bool)
    mask[keep] = True
    return mask


# ---------------------------------------------------------------------- Ensign's urn
@dataclass(frozen=True, eq=False)
class UrnResult:
    """Trajectories of the two-area urn.

    Attributes
    ----------
    share : ndarray, shape (n_runs, n_steps + 1)
        Share of area A in the urn (= probability of patrolling A) after each step.
    truth : float
        ``rate_a / (rate_a + rate_b)``: the allocation the true rates imply.
    variant : str
        Update rule (see ``URN_VARIANTS``).
    params : dict
        Rates, steps, prior, seed.
    """

    share: np.ndarray
    truth: float
    variant: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def final(self) -> np.ndarray:
        """Share of A at the last step, per run."""
        return self.share[:, -1]

    def to_frame(self) -> pd.DataFrame:
        """Long table ``run, step, share_a``."""
        n_runs, n_steps = self.share.shape
        return pd.DataFrame({"run": np.repeat(np.arange(n_runs), n_steps),
                             "step": np.tile(np.arange(n_steps), n_runs),
                             "share_a": self.share.ravel()})

    def to_dict(self) -> dict[str, Any]:
        """Parameters, truth and final shares, JSON-ready."""
        return {"variant": self.variant, "truth": self.truth, "params": self.params,
                "final_mean": float(self.final.mean()), "final_sd": float(self.final.std())}


def simulate_urn(
    rates: tuple[float, float],
    *,
    variant: str = "discovered",
    n_steps: int = 10_000,
    n_runs: int = 1,
    prior: tuple[float, float] = (1.0, 1.0),
    reported_rates: tuple[float, float] | None = None,
    random_share: float = 0.1,
    random_state: int | None = None,
) -> UrnResult:
    r"""Simulate Ensign et al.'s two-area predictive-policing urn.

    Each step one patrol goes to area A with probability :math:`p_A = n_A / (n_A + n_B)`
    (the urn's share of A; with ``randomised``, :math:`(1-\varepsilon) p_A + \varepsilon/2`).
    The patrol discovers an incident with probability equal to the visited area's true
    rate :math:`\lambda`. Updates:

    * ``discovered``: add 1 to the visited area per discovered incident (the plain loop);
      for :math:`\lambda_A > \lambda_B` the share of A tends to 1 (runaway).
    * ``corrected``: add :math:`1/p_{visited}` (Ensign et al.'s fix: weight by the inverse
      of the probability of having looked). The expected update of A per step is
      :math:`p_A \lambda_A / p_A = \lambda_A`, so the share tends to
      :math:`\lambda_A / (\lambda_A + \lambda_B)`.
    * ``thinned``: the same correction by rejection sampling - a discovered incident is
      added (weight 1) with probability :math:`\min(p_A, p_B) / p_{visited}`; expected
      updates are proportional to :math:`\lambda_A` and :math:`\lambda_B` as above, without
      the heavy tail of ``1/p`` weights (with ``corrected`` a few runs per hundred sit at
      an extreme for thousands of steps until the rarely-visited area is found once).
    * ``reported``: each area adds a reported incident with probability ``reported_rates``
      (default ``rates``) regardless of the patrol; discovered incidents are ignored.
    * ``randomised``: a share ``random_share`` of patrols are sent uniformly at random;
      discovered incidents are added with weight 1.

    Parameters
    ----------
    rates : (float, float)
        True incident probabilities per visit of areas A and B, in (0, 1].
    variant : str
        One of ``URN_VARIANTS``.
    n_steps : int
        Number of patrols (days).
    n_runs : int
        Independent runs, simulated together (vectorised over runs).
    prior : (float, float)
        Initial balls of A and B.
    reported_rates : (float, float), optional
        Reporting probabilities for ``reported``.
    random_share : float
        Share of random patrols for ``randomised``, in (0, 1].
    random_state : int, optional
        Seed.

    Returns
    -------
    UrnResult

    Notes
    -----
    O(n_steps x n_runs), a Python loop over steps with NumPy over runs.

    References
    ----------
    Ensign et al. (2018), "Runaway feedback loops in predictive policing", PMLR 81.
    """
    if variant not in URN_VARIANTS:
        raise ParameterError(f"unknown urn variant {variant!r}; pass one of "
                             f"{', '.join(URN_VARIANTS)} as `variant`.", param="variant")
    lam = np.asarray(rates, dtype=float)
    if lam.shape != (2,) or not ((lam > 0) & (lam <= 1)).all():
        raise ParameterError(f"`rates` must be two probabilities in (0, 1], got {rates}.",
                             param="rates")
    if int(n_steps) < 1 or int(n_runs) < 1:
        raise ParameterError("`n_steps` and `n_runs` must be at least 1.",
                             param=("n_steps", "n_runs"))
    if not 0 < random_share <= 1:
        raise ParameterError(f"`random_share` must be in (0, 1], got {random_share}.",
                             param="random_share")
    reported = lam if reported_rates is None else np.asarray(reported_rates, dtype=float)
    rng = np.random.default_rng(random_state)
    n_runs, n_steps = int(n_runs), int(n_steps)
    balls = np.tile(np.asarray(prior, dtype=float), (n_runs, 1))
    if (balls <= 0).any():
        raise ParameterError(f"`prior` balls must be positive, got {prior}.", param="prior")
    share = np.empty((n_runs, n_steps + 1))
    share[:, 0] = balls[:, 0] / balls.sum(axis=1)
    rows = np.arange(n_runs)
    for step in range(n_steps):
        p_a = balls[:, 0] / balls.sum(axis=1)
        if variant == "reported":
            balls += rng.random((n_runs, 2)) < reported
        else:
            if variant == "randomised":
                p_a = (1 - random_share) * p_a + random_share / 2
            visit_b = (rng.random(n_runs) >= p_a).astype(np.int64)
            found = rng.random(n_runs) < lam[visit_b]
            weight = np.ones(n_runs)
            if variant == "corrected":
                weight = 1.0 / np.where(visit_b == 0, p_a, 1 - p_a)
            elif variant == "thinned":
                p_visit = np.where(visit_b == 0, p_a, 1 - p_a)
                found &= rng.random(n_runs) < np.minimum(p_a, 1 - p_a) / p_visit
            balls[rows, visit_b] += found * weight
        share[:, step + 1] = balls[:, 0] / balls.sum(axis=1)
    params = {"rates": lam.tolist(), "n_steps": n_steps, "n_runs": n_runs,
              "prior": list(prior), "random_state": random_state}
    if variant == "reported":
        params["reported_rates"] = reported.tolist()
    if variant == "randomised":
        params["random_share"] = random_share
    truth_rates = reported if variant == "reported" else lam
    return UrnResult(share=share, truth=float(truth_rates[0] / truth_rates.sum()),
                     variant=variant, params=params)


# ---------------------------------------------------------------------- many units
def sum_refit(lookback: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """Return a refit rule scoring units by their (weighted) recorded events.

    The sum over the last ``lookback`` periods (all periods when None): the ``naive``
    model on counts.
    """

    def refit(history: np.ndarray) -> np.ndarray:
        recent = history if lookback is None else history[-int(lookback):]
        return recent.sum(axis=0)

    return refit


def model_refit(model: Any, units: Any, start: Any, period_days: float, n_history: int
                ) -> Callable[[np.ndarray], np.ndarray]:
    """Refit rule that refits a placecast model on the recorded counts each period.

    The weighted count of unit ``u`` in history row ``i`` becomes one event at the unit's
    centroid with that weight, at the middle of period ``i``; row ``n_history`` is the first
    simulated period, starting at ``start``. The model is refitted on these events and
    predicts the next period.

    Parameters
    ----------
    model : Forecaster
        An unfitted model (``placecast.models.make_model(...)``); refitted each call.
    units : Units
        The area units.
    start : datetime-like
        Start of the first simulated period.
    period_days : float
        Period length, days.
    n_history : int
        Rows of history before ``start``.
    """
    from placecast.events import Events, to_datetime64
    from placecast.forecast import TimeWindow

    origin = to_datetime64(start, name="start")
    step = np.timedelta64(int(round(period_days * 86400e9)), "ns")
    centroids = units.centroids
    sref = units.spatial_reference

    def refit(history: np.ndarray) -> np.ndarray:
        rows, cols = np.nonzero(history > 0)
        at = origin + (history.shape[0] - n_history) * step
        times = origin + (rows - n_history) * step + step // 2
        events = Events.from_arrays(times, centroids[cols, 0], centroids[cols, 1],
                                    crs=sref.crs, metres_per_unit=sref.metres_per_unit,
                                    weight=history[rows, cols])
        model.fit(events)
        return np.asarray(model.predict(units, TimeWindow(at, at + step)).intensity)

    return refit


@dataclass(frozen=True, eq=False)
class FeedbackResult:
    """Drift of a policy's allocation under recording feedback, per variant.

    Attributes
    ----------
    periods : pandas.DataFrame
        Long table: ``run``, ``variant``, ``period``, ``allocation_tv`` (total variation
        between the flagged area and the area the true intensity would flag),
        ``intensity_tv`` (between the refitted scores and the true intensity, both
        normalised), ``captured_share`` (share of true expected events in flagged units),
        ``turnover`` (share of the flagged area not flagged the period before: 0 = locked
        in) and ``recorded`` (events recorded that period).
    params : dict
        Uplift, detection probability, budget, periods, runs, seed.
    """

    periods: pd.DataFrame
    params: dict[str, Any] = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        """The long per-period table."""
        return self.periods.copy()

    def summary(self, n_edge: int = 4) -> pd.DataFrame:
        """Per variant: mean drift over the first and last ``n_edge`` periods, and overall.

        Columns ``variant``, ``tv_start``, ``tv_end``, ``tv_mean``, ``intensity_tv_end``,
        ``captured_end``, ``turnover_mean`` (means over runs).
        """
        frame = self.periods
        last = frame["period"].max()
        start = frame[frame["period"] < n_edge].groupby("variant", sort=False)
        end = frame[frame["period"] > last - n_edge].groupby("variant", sort=False)
        out = pd.DataFrame({
            "tv_start": start["allocation_tv"].mean(),
            "tv_end": end["allocation_tv"].mean(),
            "tv_mean": frame.groupby("variant", sort=False)["allocation_tv"].mean(),
            "intensity_tv_end": end["intensity_tv"].mean(),
            "captured_end": end["captured_share"].mean(),
            "turnover_mean": frame.groupby("variant", sort=False)["turnover"].mean(),
        })
        return out.reset_index().rename(columns={"index": "variant"})

    def to_dict(self) -> dict[str, Any]:
        """Parameters and the per-variant summary, JSON-ready."""
        return {"params": self.params, "summary": self.summary().to_dict(orient="records")}


def simulate_feedback(
    truth: npt.ArrayLike,
    unit_area: npt.ArrayLike,
    budget: float,
    *,
    refit: Callable[[np.ndarray], np.ndarray] | None = None,
    history: npt.ArrayLike | None = None,
    n_periods: int = 52,
    uplift: float = 0.5,
    detection: float = 0.5,
    random_share: float = 0.2,
    variants: Sequence[str] = FEEDBACK_VARIANTS,
    n_runs: int = 1,
    random_state: int | None = None,
) -> FeedbackResult:
    r"""Simulate periods of flag -> patrol -> record -> refit and measure the drift.

    Each period :math:`t` and unit :math:`u`: the policy refits on the recorded history
    and flags the top units within the area budget; :math:`N_{tu} \sim
    \text{Poisson}(\lambda_u)` true events occur; each is recorded by a citizen report
    with probability :math:`d` (``detection``), and a flagged unit's events are recorded
    with total probability :math:`d_1 = \min(1, d(1 + \text{uplift}))` (the extra ones
    are *discovered* by the patrol). The drift is

    .. math:: \text{TV}_t = \tfrac12 \sum_u |a_{tu} - a^*_u|

    between the flagged-area allocation :math:`a_t` (each flagged unit's share of flagged
    area) and :math:`a^*`, the allocation of the same rule applied to the true
    :math:`\lambda`.

    Variants (``FEEDBACK_VARIANTS``): ``policy`` refits on all recorded events;
    ``no_feedback`` is the same with no uplift (the noise floor); ``citizen_only`` refits
    on citizen-reported events only; ``ipw`` weights each recorded event by
    :math:`1/d` or :math:`1/d_1` (Ensign et al.'s inverse detection probability);
    ``randomised`` flags ``random_share`` of the budget's units uniformly at random
    among the rest, refitting on all recorded events.

    Parameters
    ----------
    truth : array of float, shape (n_units,)
        True expected events per unit per period (ground-truth intensity: observed rates
        or a fitted model's forecast divided by ``detection``).
    unit_area : array of float, shape (n_units,)
        Unit areas (same unit as ``budget``).
    budget : float
        Area flagged each period.
    refit : callable, optional
        ``refit(history) -> scores`` with ``history`` the ``(n_past_periods, n_units)``
        weighted recorded counts; default the sum over all past periods. The CLI passes
        the configured model refitted on recorded events.
    history : array, shape (n_hist, n_units), optional
        Records before the simulation (recorded at the base detection, e.g. the observed
        data); default one period drawn from ``truth`` at the base detection.
    n_periods : int
        Periods simulated.
    uplift : float
        Relative increase of the recording probability in flagged units (0.5 = +50 %).
    detection : float
        Base probability that an event is recorded (citizen report), in (0, 1].
    random_share : float
        Share of flagged units chosen at random in ``randomised``, in (0, 1).
    variants : sequence of str
        Which variants to run.
    n_runs : int
        Independent replicates (same seeds across variants: common random numbers).
    random_state : int, optional
        Seed.

    Returns
    -------
    FeedbackResult

    Notes
    -----
    O(n_runs x n_variants x n_periods x cost of refit).
    """
    lam = np.asarray(truth, dtype=float)
    area = np.asarray(unit_area, dtype=float)
    if lam.ndim != 1 or not np.isfinite(lam).all() or (lam < 0).any() or lam.sum() <= 0:
        raise ParameterError("`truth` must be a non-negative intensity per unit, not all "
                             "zero.", param="truth")
    if area.shape != lam.shape or (area <= 0).any():
        raise ParameterError("`unit_area` needs one positive area per unit.",
                             param="unit_area")
    if not budget >= area.min():
        raise ParameterError(f"the area `budget` {budget:g} is smaller than any unit "
                             f"({area.min():g}); nothing could be flagged.", param="budget")
    if uplift < 0 or not np.isfinite(uplift):
        raise ParameterError(f"`uplift` must be >= 0, got {uplift}.", param="uplift")
    if not 0 < detection <= 1:
        raise ParameterError(f"`detection` must be in (0, 1], got {detection}.",
                             param="detection")
    if not 0 < random_share < 1:
        raise ParameterError(f"`random_share` must be in (0, 1), got {random_share}.",
                             param="random_share")
    if int(n_periods) < 1 or int(n_runs) < 1:
        raise ParameterError("`n_periods` and `n_runs` must be at least 1.",
                             param=("n_periods", "n_runs"))
    unknown = [v for v in variants if v not in FEEDBACK_VARIANTS]
    if unknown or not variants:
        raise ParameterError(f"unknown feedback `variants` {unknown}; choose from "
                             f"{', '.join(FEEDBACK_VARIANTS)}.", param="variants")
    refit = refit or sum_refit()
    detect_flagged = min(1.0, detection * (1.0 + uplift))
    # among events not reported by citizens, the share the patrol discovers
    discover = (detect_flagged - detection) / (1.0 - detection) if detection < 1 else 0.0
    target = select_top(lam, area, budget)
    truth_alloc = area * target
    truth_share = lam / lam.sum()
    rng_master = np.random.default_rng(random_state)
    seeds = rng_master.integers(0, 2**63 - 1, size=int(n_runs))
    if history is None:
        base_history = np.random.default_rng(seeds[0]).poisson(lam * detection)[None, :]
    else:
        base_history = np.asarray(history, dtype=float)
        if base_history.ndim != 2 or base_history.shape[1] != lam.size:
            raise ParameterError(f"`history` must have shape (n_hist, {lam.size}).",
                                 param="history")
    rows = []
    for run, seed in enumerate(seeds):
        for variant in variants:
            # common random numbers across variants: one stream for events, one for choices
            rng, rng_choice = (np.random.default_rng(s) for s in
                               np.random.SeedSequence(int(seed)).spawn(2))
            weight0 = 1.0 / detection if variant == "ipw" else 1.0
            records = [base_history.astype(float) * weight0]
            previous: np.ndarray | None = None
            for period in range(int(n_periods)):
                scores = np.asarray(refit(np.vstack(records)), dtype=float)
                if variant == "randomised":
                    flags = _randomised(scores, area, budget, random_share, rng_choice)
                else:
                    flags = select_top(scores, area, budget)
                events = rng.poisson(lam)
                citizen = rng.binomial(events, detection)
                up = discover if variant != "no_feedback" else 0.0
                extra = rng.binomial(events - citizen, up * flags)
                if variant == "citizen_only":
                    recorded = citizen.astype(float)
                elif variant == "ipw":
                    recorded = (citizen + extra) / np.where(flags, detect_flagged, detection)
                else:
                    recorded = (citizen + extra).astype(float)
                records.append(recorded[None, :])
                alloc = area * flags
                total = scores.sum()
                turnover = (float(alloc[~previous].sum() / alloc.sum())
                            if previous is not None else float("nan"))
                previous = flags
                rows.append((run, variant, period, total_variation(alloc, truth_alloc),
                             total_variation(scores, lam) if total > 0 else float("nan"),
                             float(truth_share[flags].sum()), turnover,
                             float((citizen + extra).sum())))
    periods = pd.DataFrame(rows, columns=["run", "variant", "period", "allocation_tv",
                                          "intensity_tv", "captured_share", "turnover",
                                          "recorded"])
    params = {"uplift": float(uplift), "detection": float(detection),
              "detection_flagged": float(detect_flagged), "budget": float(budget),
              "n_periods": int(n_periods), "n_runs": int(n_runs),
              "random_share": float(random_share), "random_state": random_state,
              "n_units": int(lam.size), "n_history_periods": int(base_history.shape[0]),
              "truth_captured_share": float(truth_share[target].sum())}
    return FeedbackResult(periods=periods, params=params)


def _randomised(scores: np.ndarray, area: np.ndarray, budget: float, share: float,
                rng: np.random.Generator) -> np.ndarray:
    """Top units for ``1 - share`` of the flags, the rest drawn at random from the others."""
    top = select_top(scores, area, budget)
    n_flags = int(top.sum())
    n_random = int(round(share * n_flags))
    if n_random == 0:
        return top
    order = np.argsort(-scores, kind="stable")
    keep = order[:n_flags - n_random]
    flags = np.zeros(scores.shape, dtype=bool)
    flags[keep] = True
    room = budget - area[keep].sum()
    candidates = rng.permutation(np.flatnonzero(~flags))
    cumulative = np.cumsum(area[candidates])
    chosen = candidates[cumulative <= room * (1 + 1e-9)][:n_random]
    flags[chosen] = True
    return flags


def plot_feedback(result: FeedbackResult, path: str | os.PathLike[str]) -> Path:
    """Plot allocation drift (TV distance) over periods per variant to PNG/SVG (atomic)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from placecast.io._atomic import atomic_path

    frame = result.periods
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for variant, part in frame.groupby("variant", sort=False):
        mean = part.groupby("period")[["allocation_tv", "intensity_tv"]].mean()
        axes[0].plot(mean.index, mean["allocation_tv"], label=str(variant), lw=1.4)
        axes[1].plot(mean.index, mean["intensity_tv"], label=str(variant), lw=1.4)
    axes[0].set_ylabel("TV(flagged allocation, truth allocation)")
    axes[1].set_ylabel("TV(refitted intensity, true intensity)")
    for ax in axes:
        ax.set_xlabel("period")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    params = result.params
    fig.suptitle(f"feedback simulation: uplift {params.get('uplift', 0):g}, base detection "
                 f"{params.get('detection', 0):g}, {params.get('n_runs', 1)} run(s)")
    fig.tight_layout()
    target = Path(path)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format=target.suffix.lstrip(".") or "png", dpi=110)
    plt.close(fig)
    return target

"""The space-time scan estimator as SaTScan runs it: permutation, discrete Poisson, Bernoulli.

The input (:class:`ScanData`) is in ``_scan_data.py``, the results (:class:`ScanResult`)
in ``_scan_result.py``, the numba kernels in ``_scan_kernels.py``, the Poisson and
Bernoulli replications in ``_scan_models.py`` and SaTScan's random number generator in
``_satscan_random.py``; this module holds :class:`SpaceTimeScan` and its p-values.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cmp_to_key
from typing import Any

import numba
import numpy as np

from placecast.clusters import _scan_kernels as _k
from placecast.clusters import _scan_models as _models
from placecast.clusters._satscan_random import (
    LEHMER_MODULUS,
    SATSCAN_DEFAULT_SEED,
    _satscan_permutations,
    case_listing,
)
from placecast.clusters._scan_data import EARTH_RADIUS_KM, ScanData
from placecast.clusters._scan_result import ScanCluster, ScanResult
from placecast.exceptions import DataError, ParameterError

__all__ = ["SpaceTimeScan", "gumbel_p_value"]

_BATCH = 64  # replicates per batch: fixed, so results do not depend on the thread count


#: SaTScan counts a replication as beating a cluster when its statistic exceeds the
#: cluster's by at least this much (its DBL_CMP_TOLERANCE): ties do not count.
SATSCAN_TOLERANCE = 1e-9

RANDOMIZATIONS = ("numpy", "satscan")
#: Probability models and analyses (SaTScan's ModelType 2, 0, 1 and AnalysisType 4, 3, 1).
MODELS = ("space_time_permutation", "poisson", "bernoulli")
ANALYSES = ("prospective", "retrospective", "purely_spatial")
#: ``draw(done, size)``: locations of the recent cases in replications done+1..done+size.
_Draw = Callable[[int, int], np.ndarray]

#: How p-values are reported: Monte Carlo ranks; SaTScan's "default combination" (Gumbel
#: for a cluster fewer than ``GUMBEL_RANK - 1`` replications beat, else Monte Carlo); or
#: Gumbel for every cluster.
P_VALUE_METHODS = ("monte_carlo", "satscan_default", "gumbel")
GUMBEL_RANK = 10
#: Smallest Gumbel p-value SaTScan reports (0.1 / 10**16; smaller ones print as "< ...").
GUMBEL_FLOOR = 1e-17
_EULER = 0.5772156649


# ---------------------------------------------------------------------------- helpers
def gumbel_p_value(simulated: np.ndarray, statistic: float) -> float:
    """Upper tail at ``statistic`` of a Gumbel law fitted by moments to ``simulated`` maxima.

    ``beta = sd * sqrt(6) / pi`` (population standard deviation), ``mu = mean - 0.5772
    beta``, ``p = 1 - exp(-exp((mu - statistic) / beta))``, floored at ``GUMBEL_FLOOR``
    (SaTScan's formula and floor; Abrams, Kleinman & Kulldorff 2010).
    """
    sims = np.asarray(simulated, dtype=float)
    mean = float(sims.mean())
    variance = max(float((sims * sims).mean()) - mean * mean, 0.0)
    beta = math.sqrt(variance) * math.sqrt(6.0) / math.pi
    if beta == 0.0:
        return 1.0 if statistic <= mean else GUMBEL_FLOOR
    mu = mean - _EULER * beta
    p = 1.0 - math.exp(-math.exp((mu - statistic) / beta))
    return max(p, GUMBEL_FLOOR)


def _satscan_order(data: ScanData, best: np.ndarray, best_k: np.ndarray) -> list[int]:
    """Centres with a cluster, by their best cylinder as SaTScan ranks clusters.

    Decreasing LLR; LLRs within ``SATSCAN_TOLERANCE`` tie and go to the cluster with fewer
    locations, then to the centre with the smaller SaTScan location index (ids in byte
    order).
    """
    ids = [str(v).encode("utf-8") for v in data.location_ids]
    rank = np.empty(len(ids), dtype=np.int64)
    rank[sorted(range(len(ids)), key=ids.__getitem__)] = np.arange(len(ids))

    def compare(a: int, b: int) -> int:
        if abs(best[a] - best[b]) >= SATSCAN_TOLERANCE:
            return -1 if best[a] > best[b] else 1
        if best_k[a] != best_k[b]:
            return -1 if best_k[a] < best_k[b] else 1
        return int(rank[a] - rank[b])

    return sorted((int(c) for c in np.flatnonzero(best > 0)), key=cmp_to_key(compare))


# ---------------------------------------------------------------------------- the scan
@dataclass(frozen=True)
class _Plan:
    """What the kernels need: the time grid, the windows and the model's weights."""

    first: int                 # study interval of grid interval 0
    n_grid: int                # grid intervals
    win_start: np.ndarray      # window w covers grid intervals [win_start, win_end)
    win_end: np.ndarray
    win_weight: np.ndarray     # separable models: mu = zone weight * window weight / total
    loc_weight: np.ndarray
    loc_size: np.ndarray       # population at risk per location (the circle's share)
    measure_cum: np.ndarray    # Bernoulli: suffix sums of cases + controls per location
    total: float               # cases
    total_measure: float       # population (Poisson), cases + controls (Bernoulli)
    llr: int
    separable: bool
    min_cases: float

    def kernel_args(self) -> tuple[Any, ...]:
        """Arguments of the kernels after the neighbours and the case counts."""
        return (self.measure_cum, self.loc_weight, self.win_start, self.win_end,
                self.win_weight, self.total,
                0.0 if math.isnan(self.total_measure) else self.total_measure,
                self.llr, self.separable, self.min_cases)


class SpaceTimeScan:
    r"""Space-time scan statistics as SaTScan runs them: permutation, Poisson, Bernoulli.

    ``model`` x ``analysis``: the space-time permutation model (SaTScan's model 2;
    Kulldorff et al. 2005), the discrete Poisson model with a population per location
    (model 0) and the Bernoulli model with cases and controls (model 1; Kulldorff 1997),
    each prospective (windows ending at the end of the study period; SaTScan's analysis
    4), retrospective (every window inside the study period; analysis 3) or, for Poisson
    and Bernoulli, purely spatial (the whole study period; analysis 1).

    Cylinders have a circular base centred on each location, growing through its nearest
    neighbours (ties broken by smaller x, then y, as SaTScan does) up to ``max_share`` of
    the population at risk (cases for the permutation model, population for Poisson,
    cases plus controls for Bernoulli) and ``max_radius``, and a time window of
    ``min_intervals .. max_intervals`` intervals. Tied cylinders go to the first one
    SaTScan evaluates: the smaller circle, then the earlier-ending window, then the
    shorter one. Space-time permutation: with ``C`` cases in all,
    ``C_z`` at the circle's locations over the whole period and ``C_d`` anywhere in the
    window, the expected count under no space-time interaction is

    .. math:: \mu = C_z C_d / C

    and a cylinder with ``n > mu`` cases scores the Poisson generalised log likelihood ratio

    .. math:: \mathrm{LLR} = n \ln\frac{n}{\mu} + (C - n)\ln\frac{C - n}{C - \mu}.

    Poisson: the same LLR with ``mu = C * P_z T_d / (P T)`` (the cylinder's share of
    population x time; populations constant in time); replications place the ``C``
    cases independently by population x time (multinomial, conditioned on ``C``).
    Bernoulli: with ``n`` cases among ``N`` cases plus controls in the cylinder and ``C``
    among ``N_total`` in all, a cylinder with ``n / N > (C - n) / (N_total - N)`` scores

    .. math:: n\ln\frac{n}{N} + (N-n)\ln\frac{N-n}{N} + (C-n)\ln\frac{C-n}{N_t-N}
              + (N_t-N-C+n)\ln\frac{N_t-N-C+n}{N_t-N} - C\ln\frac{C}{N_t}
              - (N_t-C)\ln\frac{N_t-C}{N_t}

    and replications choose ``C`` of the ``N_total`` individuals as cases at random.

    The most likely cluster maximises the LLR. Its p-value is Monte Carlo over
    replications of the null (for the permutation model, case times permuted over cases,
    keeping every location's and every interval's total), the maximum LLR recomputed,
    ``p = (1 + #{sim >= obs}) / (1 + R)``; with
    ``early_stop = h`` the sequential procedure of Besag & Clifford (1991) stops at the
    ``h``-th exceedance after ``L`` replications with ``p = h / L`` (SaTScan's default).
    The recurrence interval is ``interval_length / p`` time units (one analysis per
    interval). Secondary clusters: each centre's best cylinder, in decreasing LLR, kept
    when it shares no location with a cluster already kept; their p-values use the same
    simulated maxima, and (as in SaTScan) a secondary cluster is reported only when at
    least one replication's maximum fell below its LLR.

    Two sources of replications (``randomization``; ``"satscan"`` for the permutation
    model only):

    - ``"numpy"`` (default): independent uniform permutations from NumPy's generator
      seeded by ``random_state`` (implemented as the equivalent random pairing of
      locations with the fixed case times). Ties with the observed statistic count as
      exceedances, as the Monte Carlo test requires.
    - ``"satscan"``: SaTScan's own replications, draw for draw. Replication ``r`` uses
      the Park-Miller generator (multiplier 48271) started at seed ``s0 + r`` (``s0`` =
      ``random_state`` or SaTScan's default 12345678); cases are listed by interval,
      latest first, then by location id (byte order, SaTScan's location index); each gets
      a single-precision draw; the times sorted by draw are handed back in list order.
      Exceedances are counted as SaTScan counts them: only replications that beat a
      statistic by at least ``SATSCAN_TOLERANCE`` (ties do not count); with the
      sequential procedure a secondary cluster gets ``p = #{sim > llr} / L``. This
      reproduces SaTScan's printed p-values and replication counts exactly (checked on
      ``satscan_test1``, SaTScan 9.4.4). The streams of consecutive seeds of a Lehmer
      generator are correlated, so use it to compare with SaTScan, not by default.

    Parameters
    ----------
    max_share : float
        Largest share of the population at risk a circle may hold (0 < s <= 0.5).
    max_radius : float, optional
        Largest circle radius, in coordinate units (km for lat/lon).
    min_intervals : int
        Shortest time window, in intervals.
    max_intervals : int, optional
        Longest time window, in intervals; default half the study period (rounded down).
        Purely spatial analyses ignore the window lengths.
    n_permutations : int
        Monte Carlo replications (0 for none).
    early_stop : int, optional
        Stop replicating at this many replications at least as large as the observed
        maximum (SaTScan's sequential Monte Carlo uses 50).
    min_cases : int
        Fewest cases a cluster may have.
    max_clusters : int, optional
        Most clusters to report; default all with ``n > mu``.
    random_state : int or numpy Generator, optional
        Seed of the permutations; with ``randomization="satscan"`` an int is SaTScan's
        initial seed (default 12345678).
    n_jobs : int, optional
        Threads for the replications (default numba's, all cores).
    randomization : {"numpy", "satscan"}
        Where the replications come from (see above).
    p_values : {"monte_carlo", "satscan_default", "gumbel"}
        ``"monte_carlo"``: ranks among the replications. ``"gumbel"``: the upper tail of
        a Gumbel distribution fitted to the replications' maxima by moments (scale
        ``beta = sd * sqrt(6) / pi``, location ``mean - 0.5772 beta``; Abrams, Kleinman &
        Kulldorff 2010), floored at 1e-17 as SaTScan does. ``"satscan_default"``:
        SaTScan's default combination, Gumbel for a cluster that fewer than 9
        replications beat, Monte Carlo otherwise. It resolves p-values far below
        ``1 / (R + 1)``.
    model : {"space_time_permutation", "poisson", "bernoulli"}
        The probability model; Poisson needs ``ScanData.population``, Bernoulli
        ``ScanData.control_location`` and ``control_interval``.
    analysis : {"prospective", "retrospective", "purely_spatial"}
        Which time windows are scanned (purely spatial: Poisson and Bernoulli only).

    Notes
    -----
    Cylinders are enumerated without Python loops per cylinder: for each centre the
    windows' case counts accumulate over sorted neighbours (cumulative sums), in
    ``O(sum_c K_c x W)`` time for ``K_c`` neighbours and ``W`` windows; each replication
    costs the same plus ``O(C)`` to permute and ``O(C_W)`` to rebuild the counts of the
    ``C_W`` cases inside the longest window, and replications run in parallel
    threads in batches of fixed size (results do not depend on the thread count).

    References
    ----------
    Kulldorff M. (1997). A spatial scan statistic. Communications in Statistics: Theory
    and Methods 26(6), 1481-1496.
    Kulldorff M., Heffernan R., Hartman J., Assuncao R. & Mostashari F. (2005). A
    space-time permutation scan statistic for disease outbreak detection. PLoS Medicine
    2(3): e59.
    Besag J. & Clifford P. (1991). Sequential Monte Carlo p-values. Biometrika 78(2),
    301-304.
    Abrams A.M., Kleinman K. & Kulldorff M. (2010). Gumbel based p-value approximations
    for spatial scan statistics. International Journal of Health Geographics 9: 61.
    """

    def __init__(self, *, max_share: float = 0.5, max_radius: float | None = None,
                 min_intervals: int = 1, max_intervals: int | None = None,
                 n_permutations: int = 999, early_stop: int | None = None,
                 min_cases: int = 2, max_clusters: int | None = None,
                 random_state: int | np.random.Generator | None = None,
                 n_jobs: int | None = None, randomization: str = "numpy",
                 p_values: str = "monte_carlo", model: str = "space_time_permutation",
                 analysis: str = "prospective") -> None:
        self.max_share = max_share
        self.max_radius = max_radius
        self.min_intervals = min_intervals
        self.max_intervals = max_intervals
        self.n_permutations = n_permutations
        self.early_stop = early_stop
        self.min_cases = min_cases
        self.max_clusters = max_clusters
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.randomization = randomization
        self.p_values = p_values
        self.model = model
        self.analysis = analysis

    def get_params(self) -> dict[str, Any]:
        """Return the constructor parameters."""
        return {k: getattr(self, k) for k in (
            "max_share", "max_radius", "min_intervals", "max_intervals", "n_permutations",
            "early_stop", "min_cases", "max_clusters", "random_state", "n_jobs",
            "randomization", "p_values", "model", "analysis")}

    # ------------------------------------------------------------------ validation
    def _check(self, data: ScanData) -> tuple[int, int]:
        if self.model not in MODELS:
            raise ParameterError(f"model must be one of {', '.join(MODELS)}, got "
                                 f"{self.model!r}.", param="model")
        if self.analysis not in ANALYSES:
            raise ParameterError(f"analysis must be one of {', '.join(ANALYSES)}, got "
                                 f"{self.analysis!r}.", param="analysis")
        if self.model == "space_time_permutation" and self.analysis == "purely_spatial":
            raise ParameterError("the space-time permutation model needs time windows: use "
                                 "analysis='prospective' or 'retrospective', or the Poisson "
                                 "or Bernoulli model for a purely spatial scan.")
        if not 0 < self.max_share <= 0.5:
            raise ParameterError(f"max_share must be in (0, 0.5], got {self.max_share}.",
                                 param="max_share")
        if self.max_radius is not None and not self.max_radius >= 0:
            raise ParameterError(f"max_radius must be >= 0, got {self.max_radius}.",
                                 param="max_radius")
        if int(self.n_permutations) < 0:
            raise ParameterError(f"n_permutations must be >= 0, got {self.n_permutations}.",
                                 param="n_permutations")
        if self.early_stop is not None and int(self.early_stop) < 1:
            raise ParameterError(f"early_stop must be >= 1, got {self.early_stop}.",
                                 param="early_stop")
        if int(self.min_cases) < 1:
            raise ParameterError(f"min_cases must be >= 1, got {self.min_cases}.",
                                 param="min_cases")
        if self.p_values not in P_VALUE_METHODS:
            raise ParameterError(f"p_values must be one of {', '.join(P_VALUE_METHODS)}, got "
                                 f"{self.p_values!r}.", param="p_values")
        if self.randomization not in RANDOMIZATIONS:
            raise ParameterError(f"randomization must be 'numpy' or 'satscan', got "
                                 f"{self.randomization!r}.", param="randomization")
        if self.randomization == "satscan":
            if self.model != "space_time_permutation":
                raise ParameterError(
                    f"randomization='satscan' (SaTScan's own replications) is implemented "
                    f"for the space-time permutation model only, not model={self.model!r}; "
                    "use randomization='numpy'.")
            seed = self.random_state
            if seed is not None and (isinstance(seed, np.random.Generator)
                                     or not isinstance(seed, int | np.integer)):
                raise ParameterError("with randomization='satscan' random_state must be an "
                                     "integer seed (SaTScan's initial seed), got "
                                     f"{type(seed).__name__}.")
            first = SATSCAN_DEFAULT_SEED if seed is None else int(seed)
            if first < 0 or first + int(self.n_permutations) >= LEHMER_MODULUS:
                raise ParameterError(
                    f"SaTScan seeds run from random_state + 1 to random_state + "
                    f"n_permutations and must stay in 1 .. {LEHMER_MODULUS - 1}; "
                    f"random_state={first} with {self.n_permutations} replications does "
                    "not.")
        if self.model == "poisson":
            if data.population is None:
                raise DataError("the Poisson model needs a population per location "
                                "(ScanData.population).")
            empty = np.flatnonzero(np.bincount(data.case_location, minlength=data.n_locations)
                                   * (data.population == 0))
            if len(empty):
                raise DataError(f"location {data.location_ids[empty[0]]!r} has cases but "
                                "population 0; give it its population (the Poisson model "
                                "cannot place cases where nobody lives).")
            if data.population.sum() <= 0:
                raise DataError("the total population is 0.")
        if self.model == "bernoulli" and data.control_location is None:
            raise DataError("the Bernoulli model needs controls (ScanData.control_location "
                            "and control_interval).")
        n_int = data.n_intervals
        if self.analysis == "purely_spatial":
            min_len = max_len = n_int
        else:
            max_len = self.max_intervals if self.max_intervals is not None else n_int // 2
            max_len = min(int(max_len), n_int)
            min_len = int(self.min_intervals)
            if min_len < 1 or max_len < min_len:
                raise ParameterError(
                    f"time windows of {min_len} to {max_len} intervals are impossible with a "
                    f"study period of {n_int} intervals; lower min_intervals or raise "
                    "max_intervals.")
        if data.n_cases < 2:
            raise DataError(f"the scan needs at least 2 cases, got {data.n_cases}.")
        return min_len, max_len

    def _neighbours(self, data: ScanData, loc_size: np.ndarray) -> tuple[np.ndarray, ...]:
        """Sorted neighbour lists per centre (CSR), truncated by share and radius.

        ``loc_size`` is each location's population at risk (cases, population, or cases
        plus controls); a circle holds at most ``max_share`` of their sum. One sort per
        centre (not per cylinder): O(n^2 log n) without a radius, or
        O(n log n + sum_c K_c log K_c) with one (k-d tree).
        """
        from scipy.spatial import cKDTree

        pts = data.distance_space()
        limit = self.max_share * float(np.sum(loc_size)) * (1 + 1e-12)
        candidates: list[Any] | None = None
        if self.max_radius is not None:
            radius = float(self.max_radius)
            if data.coordinate_system == "latlon":
                radius = 2 * EARTH_RADIUS_KM * math.sin(min(radius / (2 * EARTH_RADIUS_KM),
                                                            math.pi / 2))
            candidates = cKDTree(pts).query_ball_point(pts, radius * (1 + 1e-9) + 1e-12)
        everyone = np.arange(data.n_locations)
        ptr = [0]
        idx: list[np.ndarray] = []
        dist: list[np.ndarray] = []
        for c in range(data.n_locations):
            near = everyone if candidates is None else np.asarray(candidates[c], dtype=np.int64)
            d = np.sqrt(((pts[near] - pts[c]) ** 2).sum(axis=1))
            coords = data.coordinates[near]
            order = np.lexsort((*(coords[:, k] for k in range(coords.shape[1] - 1, -1, -1)), d))
            cum = np.cumsum(loc_size[near[order]])
            ok = cum <= limit
            if self.max_radius is not None:
                ok &= data.surface_distance(d[order]) <= self.max_radius * (1 + 1e-12)
            k = int(np.argmin(ok)) if not ok.all() else len(order)
            idx.append(near[order[:k]])
            dist.append(d[order[:k]])
            ptr.append(ptr[-1] + k)
        return (np.asarray(ptr, dtype=np.int64),
                np.concatenate(idx).astype(np.int64) if idx else np.zeros(0, np.int64),
                np.concatenate(dist) if dist else np.zeros(0))

    def _plan(self, data: ScanData, min_len: int, max_len: int) -> _Plan:
        """Time grid, windows in SaTScan's order, and the model's weights."""
        n_loc, n_int, total = data.n_locations, data.n_intervals, float(data.n_cases)
        if self.analysis == "prospective":
            first, n_grid = n_int - max_len, max_len
            lengths = np.arange(min_len, max_len + 1)           # shortest first
            win_start = (n_grid - lengths).astype(np.int64)
            win_end = np.full(len(lengths), n_grid, dtype=np.int64)
        else:
            first, n_grid = 0, n_int
            starts, ends = [], []
            for end in range(1, n_int + 1):                     # earliest end first,
                for start in range(end - min_len, max(0, end - max_len) - 1, -1):
                    starts.append(start)                        # then shortest first
                    ends.append(end)
            win_start = np.asarray(starts, dtype=np.int64)
            win_end = np.asarray(ends, dtype=np.int64)
        case_total = np.bincount(data.case_location, minlength=n_loc).astype(float)
        measure_cum = np.zeros((1, 1))
        total_measure = math.nan
        if self.model == "space_time_permutation":
            loc_weight = loc_size = case_total
            per_interval = np.bincount(data.case_interval, minlength=n_int).astype(float)
        elif self.model == "poisson":
            population = np.asarray(data.population, dtype=float)
            loc_weight = total * population / population.sum()
            loc_size = population
            total_measure = float(population.sum())
            sizes = data.sizes()
            per_interval = total * sizes / sizes.sum()
        else:
            every_loc = np.concatenate([data.case_location, data.control_location])
            every_t = np.concatenate([data.case_interval, data.control_interval])
            measure_cum = _k.suffix_counts(every_loc, every_t, len(every_loc), n_loc, first,
                                           n_grid)
            loc_weight = loc_size = np.bincount(every_loc, minlength=n_loc).astype(float)
            total_measure = float(len(every_loc))
            per_interval = np.zeros(n_int)
        grid_cum = np.concatenate([np.cumsum(per_interval[first:][::-1])[::-1], [0.0]])
        win_weight = grid_cum[win_start] - grid_cum[win_end]
        return _Plan(first=first, n_grid=n_grid, win_start=win_start, win_end=win_end,
                     win_weight=np.ascontiguousarray(win_weight),
                     loc_weight=np.ascontiguousarray(loc_weight, dtype=float),
                     loc_size=np.asarray(loc_size, dtype=float),
                     measure_cum=np.ascontiguousarray(measure_cum), total=total,
                     total_measure=total_measure,
                     llr=_k.BERNOULLI_LLR if self.model == "bernoulli" else _k.POISSON_LLR,
                     separable=self.model != "bernoulli", min_cases=float(self.min_cases))

    # ------------------------------------------------------------------ run
    def run(self, data: ScanData, *, progress: Callable[[int, int], None] | None = None
            ) -> ScanResult:
        """Scan ``data`` and test the clusters by Monte Carlo.

        ``progress(n_done, n_total)``, if given, is called after each batch of
        replications (see ``placecast._progress``).

        Returns
        -------
        ScanResult
            Clusters with their p-values and recurrence intervals.

        Raises
        ------
        ParameterError
            For impossible settings (window lengths, shares, counts, model and analysis).
        DataError
            For fewer than two cases, or a model's missing population or controls.
        """
        min_len, max_len = self._check(data)
        n_loc = data.n_locations
        plan = self._plan(data, min_len, max_len)
        nb_ptr, nb_idx, nb_dist = self._neighbours(data, plan.loc_size)
        cum = _k.suffix_counts(data.case_location, data.case_interval, data.n_cases, n_loc,
                               plan.first, plan.n_grid)
        best, best_k, best_w = _k.best_per_centre(nb_ptr, nb_idx, cum, *plan.kernel_args())
        observed_max = float(best.max()) if len(best) else 0.0

        sims, stopped = self._simulate(data, plan, nb_ptr, nb_idx, observed_max, progress)
        n_done = len(sims)
        clusters: list[ScanCluster] = []
        taken = np.zeros(n_loc, dtype=bool)
        for c in _satscan_order(data, best, best_k):
            members = nb_idx[nb_ptr[c]:nb_ptr[c] + best_k[c] + 1]
            if taken[members].any():
                continue
            llr = float(best[c])
            if clusters and (llr < 0.001 or (n_done and self._rank(sims, llr) > n_done)):
                continue  # SaTScan reports a secondary cluster only if some replication beat it
            taken[members] = True
            w = int(best_w[c])
            s, e = int(plan.win_start[w]), int(plan.win_end[w])
            n = float((cum[members, s] - cum[members, e]).sum())
            population, relative_risk = math.nan, math.nan
            if self.model == "bernoulli":
                big_n = float((plan.measure_cum[members, s] - plan.measure_cum[members, e]).sum())
                mu = big_n * plan.total / plan.total_measure
                population = big_n
                outside = plan.total_measure - big_n
                relative_risk = ((n / big_n) / ((plan.total - n) / outside)
                                 if plan.total > n and outside > 0 else math.inf)
            else:
                mu = float(plan.loc_weight[members].sum() * plan.win_weight[w] / plan.total)
                if self.model == "poisson":
                    population = float(np.asarray(data.population)[members].sum())
                    relative_risk = ((n / mu) / ((plan.total - n) / (plan.total - mu))
                                     if plan.total > n else math.inf)
            p, method = self._p_value(sims, llr, stopped, most_likely=not clusters)
            start, end = plan.first + s, plan.first + e - 1
            recurrence = math.nan
            if self.analysis == "prospective":
                recurrence = data.interval_length / p if p > 0 else math.inf
            radius = float(data.surface_distance(nb_dist[nb_ptr[c] + best_k[c]]))
            clusters.append(ScanCluster(
                rank=len(clusters) + 1,
                centre_id=str(data.location_ids[c]),
                centre=(float(data.coordinates[c, 0]), float(data.coordinates[c, 1])),
                radius=radius,
                location_ids=tuple(str(v) for v in data.location_ids[members]),
                start_interval=start,
                end_interval=end,
                time_frame=(data.interval_labels[start][0], data.interval_labels[end][1]),
                observed=int(round(n)),
                expected=float(mu),
                test_statistic=llr,
                p_value=p,
                recurrence_interval=recurrence,
                p_value_method=method,
                population=population,
                relative_risk=relative_risk,
            ))
            if self.max_clusters is not None and len(clusters) >= self.max_clusters:
                break
            if n_done == 0 and len(clusters) >= 10:
                break
        params = self.get_params()
        params["max_intervals"] = max_len
        if isinstance(params["random_state"], np.random.Generator):
            params["random_state"] = "Generator"
        return ScanResult(
            clusters=tuple(clusters),
            n_locations=n_loc,
            n_cases=data.n_cases,
            study_period=data.study_period,
            n_permutations=n_done,
            n_permutations_requested=int(self.n_permutations),
            stopped_early=stopped,
            simulated_statistics=sims,
            coordinate_system=data.coordinate_system,
            time_unit=data.time_unit,
            parameters=params,
            crs=data.crs,
            metres_per_unit=data.metres_per_unit,
            location_extent=data.location_extent,
            location_coordinates={str(i): (float(a), float(b)) for i, (a, b)
                                  in zip(data.location_ids, data.coordinates, strict=True)},
            model=self.model,
            analysis=self.analysis,
            total_population=plan.total_measure,
        )

    def _beats(self, sims: np.ndarray, llr: float) -> np.ndarray:
        """Replications that count as at least as extreme as ``llr``."""
        if self.randomization == "satscan":
            return sims - llr >= SATSCAN_TOLERANCE
        return sims >= llr * (1 - 1e-10)

    def _rank(self, sims: np.ndarray, llr: float) -> int:
        return 1 + int(self._beats(sims, llr).sum())

    def _p_value(self, sims: np.ndarray, llr: float, stopped: bool,
                 most_likely: bool) -> tuple[float, str]:
        """The reported p-value of a cluster with statistic ``llr`` and how it was found."""
        if len(sims) == 0:
            return math.nan, "monte_carlo"
        exceed = int(self._beats(sims, llr).sum())
        if self.p_values == "gumbel" or (self.p_values == "satscan_default"
                                         and exceed + 1 < GUMBEL_RANK):
            return gumbel_p_value(sims, llr), "gumbel"
        if stopped:
            if most_likely and self.early_stop is not None:
                return int(self.early_stop) / len(sims), "monte_carlo"
            return exceed / len(sims), "monte_carlo"
        return (exceed + 1) / (len(sims) + 1), "monte_carlo"

    def _replicator(self, data: ScanData, plan: _Plan, nb_ptr: np.ndarray,
                    nb_idx: np.ndarray) -> Callable[[int, int], np.ndarray]:
        """``replicate(done, size)``: maximum LLRs of replications done+1 .. done+size."""
        n_loc = data.n_locations
        common = (nb_ptr, nb_idx, *plan.kernel_args())
        if self.model == "space_time_permutation":
            case_t, draw = (self._satscan_draws(data, plan.first)
                            if self.randomization == "satscan"
                            else self._numpy_draws(data, plan.first))

            def replicate(done: int, size: int) -> np.ndarray:
                return _k.replicate_fixed_times(draw(done, size), case_t, n_loc, plan.first,
                                                plan.n_grid, *common)

            return replicate
        rng = (self.random_state if isinstance(self.random_state, np.random.Generator)
               else np.random.default_rng(self.random_state))
        drawn = (_models.poisson_draws(data, plan.first, rng) if self.model == "poisson"
                 else _models.bernoulli_draws(data, plan.first, rng))

        def replicate_drawn(done: int, size: int) -> np.ndarray:
            rep_loc, rep_t, rep_n = drawn(size)
            return _k.replicate_drawn(rep_loc, rep_t, rep_n, n_loc, plan.first, plan.n_grid,
                                      *common)

        return replicate_drawn

    def _simulate(self, data: ScanData, plan: _Plan, nb_ptr: np.ndarray, nb_idx: np.ndarray,
                  observed_max: float, progress: Callable[[int, int], None] | None = None
                  ) -> tuple[np.ndarray, bool]:
        n_rep = int(self.n_permutations)
        if n_rep == 0:
            return np.zeros(0), False
        replicate = self._replicator(data, plan, nb_ptr, nb_idx)
        previous = numba.get_num_threads()
        if self.n_jobs is not None:
            numba.set_num_threads(max(1, min(int(self.n_jobs),
                                             numba.config.NUMBA_NUM_THREADS)))  # type: ignore[attr-defined]
        out: list[np.ndarray] = []
        exceed = 0
        try:
            done = 0
            while done < n_rep:
                size = min(_BATCH, n_rep - done)
                sims = replicate(done, size)
                if self.early_stop is not None:
                    hits = np.cumsum(self._beats(sims, observed_max)) + exceed
                    if hits[-1] >= self.early_stop:
                        stop = int(np.argmax(hits >= self.early_stop)) + 1
                        out.append(sims[:stop])
                        return np.concatenate(out), True
                    exceed = int(hits[-1])
                out.append(sims)
                done += size
                if progress is not None:
                    progress(done, n_rep)
        finally:
            numba.set_num_threads(previous)
        return np.concatenate(out), False

    def _numpy_draws(self, data: ScanData, first: int) -> tuple[np.ndarray, _Draw]:
        """Replications from NumPy: the recent cases' times and ``draw(done, size)``.

        Permuting times over cases pairs times and locations uniformly at random, as
        permuting locations over cases does; the latter lets each replication touch only
        the cases whose (fixed) time falls in some window (the "recent" cases). Cases are
        first put in a canonical order (:func:`case_listing`), so the same seed gives the
        same replications whatever the order of the input rows.
        """
        rng = (self.random_state if isinstance(self.random_state, np.random.Generator)
               else np.random.default_rng(self.random_state))
        listed = case_listing(data)
        case_location, case_interval = data.case_location[listed], data.case_interval[listed]
        recent = np.flatnonzero(case_interval >= first)

        def draw(done: int, size: int) -> np.ndarray:
            perm = np.empty((size, len(recent)), dtype=np.int64)
            for b in range(size):  # a uniform ordered sample = the head of a permutation
                perm[b] = case_location[rng.choice(data.n_cases, size=len(recent),
                                                   replace=False)]
            return perm

        return np.ascontiguousarray(case_interval[recent]), draw

    def _satscan_draws(self, data: ScanData, first: int) -> tuple[np.ndarray, _Draw]:
        """SaTScan's replications: the recent cases' times and ``draw(done, size)``.

        Cases are listed as SaTScan lists them: by interval, latest first, then by the
        location's index in SaTScan (ids in byte order).
        """
        listed = case_listing(data, latest_first=True)
        stationary_loc = np.ascontiguousarray(data.case_location[listed])
        listed_t = data.case_interval[listed]
        recent = np.flatnonzero(listed_t >= first)
        seed0 = SATSCAN_DEFAULT_SEED if self.random_state is None else int(self.random_state)  # type: ignore[arg-type]

        def draw(done: int, size: int) -> np.ndarray:
            seeds = seed0 + np.arange(done + 1, done + size + 1, dtype=np.int64)
            return _satscan_permutations(stationary_loc, recent, seeds)

        return np.ascontiguousarray(listed_t[recent]), draw

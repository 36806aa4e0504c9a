"""Emerging hot spot analysis: Getis-Ord Gi* in a space-time cube, Mann-Kendall trends, patterns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import sparse, stats
from scipy.spatial import cKDTree

from placecast.exceptions import DataError, ParameterError

__all__ = [
    "PATTERNS",
    "EmergingHotSpotResult",
    "SpaceTimeCube",
    "emerging_hot_spots",
    "mann_kendall",
]

#: Pattern names, hot then cold, as ArcGIS Pro's Emerging Hot Spot Analysis names them.
PATTERNS = (
    "new hot spot", "consecutive hot spot", "intensifying hot spot", "persistent hot spot",
    "diminishing hot spot", "sporadic hot spot", "oscillating hot spot", "historical hot spot",
    "new cold spot", "consecutive cold spot", "intensifying cold spot", "persistent cold spot",
    "diminishing cold spot", "sporadic cold spot", "oscillating cold spot",
    "historical cold spot", "no pattern detected",
)


@dataclass(frozen=True)
class SpaceTimeCube:
    """Event counts per area unit and time step.

    Attributes
    ----------
    counts : ndarray of float, shape (n_units, n_steps)
        Events per unit and step.
    centroids : ndarray of float, shape (n_units, 2)
        Unit centroids, metres.
    step_edges : ndarray of datetime64
        ``n_steps + 1`` increasing step boundaries ``[edge_k, edge_k+1)``.
    unit_ids : ndarray of str
        One id per unit.
    units : Units, optional
        The units themselves (for maps).
    """

    counts: np.ndarray
    centroids: np.ndarray
    step_edges: np.ndarray
    unit_ids: np.ndarray
    units: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        counts = np.asarray(self.counts, dtype=float)
        if counts.ndim != 2:
            raise DataError(f"cube counts must be 2-D (units x steps), got {counts.ndim}-D.")
        if np.asarray(self.centroids).shape != (counts.shape[0], 2):
            raise DataError("cube centroids must be one (x, y) per unit.")
        if len(self.step_edges) != counts.shape[1] + 1:
            raise DataError("a cube needs n_steps + 1 step edges.")
        object.__setattr__(self, "counts", counts)

    @property
    def n_units(self) -> int:
        """Number of area units."""
        return int(self.counts.shape[0])

    @property
    def n_steps(self) -> int:
        """Number of time steps."""
        return int(self.counts.shape[1])

    @classmethod
    def from_events(cls, events: Any, units: Any, *, step: str = "30d",
                    n_steps: int | None = None, end: Any = None) -> SpaceTimeCube:
        """Aggregate events into ``units`` x time steps of length ``step``.

        Steps are laid back from ``end`` (default: midnight after the last event), as many
        as cover the events or ``n_steps``. Events outside every unit are not counted.
        """
        from placecast.units import aggregate

        if len(events) == 0:
            raise DataError("there are no events to build a space-time cube from.")
        from placecast.clusters._scan import parse_step

        delta = parse_step(step)
        if delta <= pd.Timedelta(0):
            raise ParameterError(f"step must be positive, got {step!r}.")
        stop = pd.Timestamp(end) if end is not None else (
            pd.Timestamp(events.end).normalize() + pd.Timedelta("1D"))
        if n_steps is None:
            n_steps = max(1, int(np.ceil((stop - pd.Timestamp(events.start)) / delta)))
        if n_steps < 2:
            raise ParameterError(f"a space-time cube needs at least 2 time steps, got {n_steps}.")
        edges = np.array([stop - (n_steps - k) * delta for k in range(n_steps + 1)],
                         dtype="datetime64[ns]")
        counts = aggregate(events, units, edges)
        return cls(counts=counts, centroids=units.centroids, step_edges=edges,
                   unit_ids=np.asarray(units.unit_id, dtype=object), units=units)


def mann_kendall(series: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mann-Kendall trend test of each row of ``series`` (units x steps).

    ``S = sum_{i<j} sign(x_j - x_i)``, variance with the tie correction
    ``(n(n-1)(2n+5) - sum_g t_g(t_g-1)(2t_g+5)) / 18``, continuity-corrected
    ``Z = (S - sign(S)) / sqrt(Var S)`` and a two-sided normal p-value.

    Returns
    -------
    s, z, p : ndarray
        One value per row. O(n_rows x n_steps^2).
    """
    x = np.atleast_2d(np.asarray(series, dtype=float))
    n = x.shape[1]
    diff = np.sign(x[:, None, :] - x[:, :, None])       # [r, i, j] = sign(x_j - x_i)
    s = np.triu(diff, k=1).sum(axis=(1, 2))
    var = np.full(x.shape[0], n * (n - 1) * (2 * n + 5), dtype=float)
    for r in range(x.shape[0]):
        _, t = np.unique(x[r], return_counts=True)
        t = t[t > 1]
        if len(t):
            var[r] -= float((t * (t - 1) * (2 * t + 5)).sum())
    var /= 18.0
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(var > 0, (s - np.sign(s)) / np.sqrt(np.where(var > 0, var, 1)), 0.0)
    p = 2 * stats.norm.sf(np.abs(z))
    return s, z, p


def _benjamini_hochberg(p: np.ndarray, alpha: float) -> np.ndarray:
    """Mask of p-values significant under the Benjamini-Hochberg FDR at ``alpha``."""
    flat = p.ravel()
    order = np.argsort(flat)
    m = len(flat)
    below = flat[order] <= alpha * np.arange(1, m + 1) / m
    mask = np.zeros(m, dtype=bool)
    if below.any():
        k = int(np.nonzero(below)[0].max())
        mask[order[:k + 1]] = True
    return mask.reshape(p.shape)


@dataclass(frozen=True)
class EmergingHotSpotResult:
    """Emerging hot spot analysis of a space-time cube.

    Attributes
    ----------
    pattern : ndarray of str
        One of :data:`PATTERNS` per unit.
    z_scores, p_values : ndarray, shape (n_units, n_steps)
        Gi* z-score and two-sided p-value of every bin.
    significant : ndarray of int, shape (n_units, n_steps)
        +1 hot, -1 cold, 0 not significant (after FDR when ``fdr``).
    trend_z, trend_p : ndarray
        Mann-Kendall trend of each unit's z-scores.
    unit_ids : ndarray of str
        Unit ids.
    parameters : dict
        Settings of the analysis.
    units : Units, optional
        For maps.
    """

    pattern: np.ndarray
    z_scores: np.ndarray
    p_values: np.ndarray
    significant: np.ndarray
    trend_z: np.ndarray
    trend_p: np.ndarray
    unit_ids: np.ndarray
    parameters: dict[str, Any]
    units: Any = field(default=None, repr=False)

    def counts(self) -> dict[str, int]:
        """Units per pattern (patterns present only)."""
        names, n = np.unique(self.pattern, return_counts=True)
        return {str(a): int(b) for a, b in zip(names, n, strict=True)}

    def to_dict(self) -> dict[str, Any]:
        """Patterns per unit and counts per pattern."""
        return {"parameters": dict(self.parameters), "counts": self.counts(),
                "units": [{"unit_id": str(u), "pattern": str(p)}
                          for u, p in zip(self.unit_ids, self.pattern, strict=True)
                          if p != "no pattern detected"]}

    def to_frame(self) -> pd.DataFrame:
        """One row per unit: pattern, trend, share of hot and cold steps, last z-score."""
        return pd.DataFrame({
            "unit_id": self.unit_ids,
            "pattern": self.pattern,
            "trend_z": self.trend_z,
            "trend_p": self.trend_p,
            "share_hot": (self.significant > 0).mean(axis=1),
            "share_cold": (self.significant < 0).mean(axis=1),
            "last_z": self.z_scores[:, -1],
        })

    def to_geodataframe(self, target_crs: str | None = None) -> Any:
        """Return the units with their patterns, ready to map (needs ``units``)."""
        if self.units is None:
            raise ParameterError("this result has no units to map; build the cube with "
                                 "SpaceTimeCube.from_events.")
        gdf = self.units.to_geodataframe(target_crs)
        frame = self.to_frame()
        for column in frame.columns:
            if column != "unit_id":
                gdf[column] = frame[column].to_numpy()
        return gdf


def _classify(sig: np.ndarray, trend_z: np.ndarray, trend_p: np.ndarray, alpha: float,
              share: float) -> np.ndarray:
    n_units, n_steps = sig.shape
    out = np.full(n_units, "no pattern detected", dtype=object)
    for sign, word in ((1, "hot"), (-1, "cold")):
        hit = sig == sign
        other = sig == -sign
        frac = hit.mean(axis=1)
        last = hit[:, -1]
        before = hit[:, :-1].any(axis=1)
        # length of the run of hits ending at the last step
        run = np.zeros(n_units, dtype=int)
        alive = np.ones(n_units, dtype=bool)
        for k in range(n_steps - 1, -1, -1):
            alive &= hit[:, k]
            run += alive
        hits_total = hit.sum(axis=1)
        trending = trend_p <= alpha
        rising = trend_z * sign > 0          # intensity moving away from zero
        mostly = frac >= share
        label = np.full(n_units, "", dtype=object)
        label[last & mostly & trending & rising] = f"intensifying {word} spot"
        label[last & mostly & trending & ~rising] = f"diminishing {word} spot"
        label[last & mostly & ~trending] = f"persistent {word} spot"
        rest = last & ~mostly
        label[rest & ~before] = f"new {word} spot"
        label[rest & before & (run == hits_total) & (run >= 2)] = f"consecutive {word} spot"
        pending = rest & before & (label == "")
        label[pending & other.any(axis=1)] = f"oscillating {word} spot"
        label[pending & ~other.any(axis=1)] = f"sporadic {word} spot"
        label[~last & mostly] = f"historical {word} spot"
        chosen = label != ""
        out[chosen] = label[chosen]
    return out


def emerging_hot_spots(
    cube: SpaceTimeCube,
    *,
    distance: float,
    time_steps: int = 1,
    alpha: float = 0.1,
    fdr: bool = True,
    share: float = 0.9,
) -> EmergingHotSpotResult:
    r"""Emerging hot spot analysis (the ArcGIS Pro tool's method, open).

    Every bin ``(unit u, step k)`` gets the Getis-Ord Gi* statistic over its space-time
    neighbourhood ``N(u, k)``: units whose centroids lie within ``distance`` of ``u``
    (``u`` included) at steps ``k - time_steps .. k``. With binary weights, ``n`` bins,
    mean ``xbar`` and standard deviation ``s`` of all counts,

    .. math:: G^*_{uk} = \frac{\sum_{N} x - \bar x\, w}
              {s \sqrt{(n w - w^2) / (n - 1)}},\quad w = |N(u, k)|.

    Bins are significant hot (cold) when ``z > 0`` (``< 0``) and their two-sided p-value
    passes ``alpha`` after the Benjamini-Hochberg false discovery rate correction over all
    bins (``fdr``). Each unit's series of z-scores gets a Mann-Kendall trend test, and its
    pattern follows the tool's definitions (for cold spots swap hot and cold):

    - new: hot at the last step, never before;
    - consecutive: one uninterrupted run of >= 2 hot steps ending at the last step, never
      hot before the run, hot in fewer than ``share`` (90%) of steps;
    - intensifying / persistent / diminishing: hot in >= 90% of steps including the last,
      with a significantly rising / no significant / falling trend of clustering intensity
      (``|z|``);
    - sporadic: hot at the last step, on and off before, < 90% hot, never cold;
    - oscillating: hot at the last step, cold at some earlier step, < 90% hot;
    - historical: not hot at the last step but hot in >= 90% of steps;
    - no pattern detected: none of these.

    Parameters
    ----------
    cube : SpaceTimeCube
        Counts per unit and step.
    distance : float
        Spatial neighbourhood radius, metres (centroid to centroid).
    time_steps : int
        Earlier steps in the neighbourhood (the tool's "neighborhood time step").
    alpha : float
        Significance level (0.1: the tool's 90% confidence).
    fdr : bool
        Apply the false discovery rate correction.
    share : float
        The "90% of time steps" share.

    Returns
    -------
    EmergingHotSpotResult

    Notes
    -----
    O(n_units x k x n_steps) for ``k`` spatial neighbours (sparse matrix product and
    cumulative sums over time) plus O(n_units x n_steps^2) for Mann-Kendall.

    References
    ----------
    Getis, A. & Ord, J. K. (1992). The analysis of spatial association by use of distance
    statistics. Geographical Analysis 24(3), 189-206.
    Ord, J. K. & Getis, A. (1995). Local spatial autocorrelation statistics. Geographical
    Analysis 27(4), 286-306.
    Esri. How Emerging Hot Spot Analysis works. ArcGIS Pro documentation.
    """
    if not distance > 0:
        raise ParameterError(f"distance must be positive metres, got {distance}.")
    if int(time_steps) < 0:
        raise ParameterError(f"time_steps must be >= 0, got {time_steps}.")
    if not 0 < alpha < 1:
        raise ParameterError(f"alpha must be in (0, 1), got {alpha}.")
    x = cube.counts
    n_units, n_steps = x.shape
    n = x.size
    mean = x.mean()
    sd = np.sqrt((x ** 2).mean() - mean ** 2)
    if sd == 0:
        raise DataError("every bin of the cube holds the same count; Gi* is undefined.")
    pairs = cKDTree(cube.centroids).query_pairs(distance * (1 + 1e-12), output_type="ndarray")
    rows = np.concatenate([np.arange(n_units), pairs[:, 0], pairs[:, 1]])
    cols = np.concatenate([np.arange(n_units), pairs[:, 1], pairs[:, 0]])
    w_space = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_units, n_units))
    space_sum = w_space @ x                                      # (units, steps)
    n_space = np.asarray(w_space.sum(axis=1)).ravel()
    cum = np.cumsum(np.pad(space_sum, ((0, 0), (1, 0))), axis=1)
    k = np.arange(n_steps)
    lo = np.maximum(k - int(time_steps), 0)
    window_sum = cum[:, k + 1] - cum[:, lo]
    w = n_space[:, None] * (k - lo + 1)[None, :]
    denom = sd * np.sqrt((n * w - w ** 2) / (n - 1))
    z = (window_sum - mean * w) / denom
    p = 2 * stats.norm.sf(np.abs(z))
    passed = _benjamini_hochberg(p, alpha) if fdr else p <= alpha
    sig = np.where(passed, np.sign(z), 0).astype(int)
    _, trend_z, trend_p = mann_kendall(z)
    pattern = _classify(sig, trend_z, trend_p, alpha, share)
    return EmergingHotSpotResult(
        pattern=pattern, z_scores=z, p_values=p, significant=sig, trend_z=trend_z,
        trend_p=trend_p, unit_ids=np.asarray(cube.unit_ids, dtype=object),
        parameters={"distance": float(distance), "time_steps": int(time_steps),
                    "alpha": float(alpha), "fdr": bool(fdr), "share": float(share),
                    "n_units": n_units, "n_steps": n_steps},
        units=cube.units)

"""Emerging hot spot analysis: Getis-Ord Gi* in a space-time cube, Mann-Kendall trends, patterns."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numba
import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import sparse, stats
from scipy.spatial import cKDTree

from placecast.exceptions import DataError, ParameterError

__all__ = [
    "PATTERNS",
    "SFDEP_CLASSES",
    "EmergingHotSpotResult",
    "SpaceTimeCube",
    "emerging_hot_spots",
    "kendall_trend",
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

#: sfdep's ``classify_hotspot`` names -> :data:`PATTERNS` (sfdep spells "oscilating").
SFDEP_CLASSES = {
    "new hotspot": "new hot spot", "new coldspot": "new cold spot",
    "consecutive hotspot": "consecutive hot spot",
    "consecutive coldspot": "consecutive cold spot",
    "intensifying hotspot": "intensifying hot spot",
    "intensifying coldspot": "intensifying cold spot",
    "persistent hotspot": "persistent hot spot", "persistent coldspot": "persistent cold spot",
    "diminishing hotspot": "diminishing hot spot",
    "diminishing coldspot": "diminishing cold spot",
    "oscilating hotspot": "oscillating hot spot", "oscilating coldspot": "oscillating cold spot",
    "historical hotspot": "historical hot spot", "historical coldspot": "historical cold spot",
    "sporadic hotspot": "sporadic hot spot", "sporadic coldspot": "sporadic cold spot",
    "no pattern detected": "no pattern detected",
}


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
                    n_steps: int | None = None, end: Any = None, start: Any = None,
                    drop_empty: bool = False) -> SpaceTimeCube:
        """Aggregate events into ``units`` x time steps of length ``step``.

        Parameters
        ----------
        events : Events
            The events.
        units : Units
            Area units.
        step : str
            Step length: days, weeks or hours (``"30d"``, ``"2w"``) or calendar months
            (``"1M"``), as :func:`placecast.quantities.parse_duration` reads them.
        n_steps : int, optional
            Number of steps (default: as many as cover the events).
        end : datetime-like, optional
            End of the last step. Default: midnight after the last event, or for
            calendar months the first day of the month after it.
        start : datetime-like, optional
            The cube origin: start of the first step; steps are then laid forward from
            it. Without it, steps are laid back from ``end``. With both, ``end - start``
            must be a whole number of steps.
        drop_empty : bool
            Leave out units with no event in any step (sfdep's and most analysts' cubes
            hold only locations with data); the default keeps every unit.

        Returns
        -------
        SpaceTimeCube

        Raises
        ------
        ParameterError
            A step that is not a duration, fewer than 2 steps, or ``start``, ``end`` and
            ``n_steps`` that disagree.
        DataError
            No events, or (``drop_empty``) no unit with an event.

        Notes
        -----
        Events before the first or after the last step, or outside every unit, are not
        counted.
        """
        from placecast.quantities import parse_duration
        from placecast.units import aggregate

        if len(events) == 0:
            raise DataError("there are no events to build a space-time cube from.")
        duration = parse_duration(step, name="step")
        months = duration.unit == "M"

        def shift(origin: pd.Timestamp, k: int) -> pd.Timestamp:
            if months:
                return origin + pd.DateOffset(months=int(duration.amount) * k)
            return origin + pd.to_timedelta(duration.amount * k, unit="D")

        first, last = pd.Timestamp(events.start), pd.Timestamp(events.end)
        if start is not None:
            origin = pd.Timestamp(start)
            stop = pd.Timestamp(end) if end is not None else None
            if n_steps is None:  # up to ``end``, or past the last event
                n_steps = 1
                while (shift(origin, n_steps) < stop if stop is not None
                       else shift(origin, n_steps) <= last):
                    n_steps += 1
                    if n_steps > 1_000_000:
                        raise ParameterError(f"step {step!r} is too short for this period.",
                                             param="step")
            if stop is not None and shift(origin, n_steps) != stop:
                raise ParameterError(
                    f"the cube from {origin} to {stop} is not {n_steps} whole steps of "
                    f"{step}; give start and either end or n_steps, or an end that is a "
                    "whole number of steps after start.")
            edges_ts = [shift(origin, k) for k in range(n_steps + 1)]
        else:
            if end is not None:
                stop = pd.Timestamp(end)
            elif months:
                stop = (last.normalize().replace(day=1) + pd.DateOffset(months=1))
            else:
                stop = last.normalize() + pd.Timedelta("1D")
            if n_steps is None:
                n_steps = 1
                while shift(stop, -n_steps) > first:
                    n_steps += 1
                    if n_steps > 1_000_000:
                        raise ParameterError(f"step {step!r} is too short for this period.",
                                             param="step")
            edges_ts = [shift(stop, -(n_steps - k)) for k in range(n_steps + 1)]
        if n_steps < 2:
            raise ParameterError(f"a space-time cube needs at least 2 time steps, got {n_steps}.")
        edges = np.array(edges_ts, dtype="datetime64[ns]")
        counts = aggregate(events, units, edges)
        if drop_empty:
            keep = counts.sum(axis=1) > 0
            if not keep.any():
                raise DataError("no unit holds an event inside the cube's time steps.")
            counts = counts[keep]
            units = _subset_units(units, np.flatnonzero(keep))
        return cls(counts=counts, centroids=units.centroids, step_edges=edges,
                   unit_ids=np.asarray(units.unit_id, dtype=object), units=units)


def _subset_units(units: Any, index: np.ndarray) -> Any:
    """The units at ``index``, as a new Units (grid geometry kept for neighbours)."""
    import dataclasses

    return dataclasses.replace(
        units, unit_id=np.asarray(units.unit_id)[index],
        geometry=np.asarray(units.geometry)[index],
        grid_cells=None if units.grid_cells is None else units.grid_cells[index],
        description={**units.description, "n_units": int(len(index)),
                     "dropped_empty_units": int(len(units) - len(index))},
        _cache={})


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
    trend_tau : ndarray, optional
        Kendall's tau of each unit's z-scores (``S / D``).
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
    trend_tau: np.ndarray | None = None

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
            "trend_tau": (np.full(len(self.pattern), np.nan) if self.trend_tau is None
                          else self.trend_tau),
            "share_hot": (self.significant > 0).mean(axis=1),
            "share_cold": (self.significant < 0).mean(axis=1),
            "last_z": self.z_scores[:, -1],
        })

    def to_geodataframe(self, target_crs: str | None = None) -> Any:
        """Return the units with their patterns, ready to map (needs ``units``)."""
        if self.units is None:
            raise ParameterError("this result has no units to map; build the cube with "
                                 "SpaceTimeCube.from_events.", param="units")
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


def _classify_sfdep(gs: np.ndarray, sigs: np.ndarray, tau: np.ndarray, tau_p: np.ndarray,
                    threshold: float, share: float = 0.9) -> np.ndarray:
    """Classify as sfdep's ``classify_hotspot`` does: its first rule that holds.

    ``gs`` are the Gi* series (units x steps), ``sigs`` the significant bins, ``tau`` and
    ``tau_p`` the Mann-Kendall tau and p-value of each series. The rules are sfdep's as
    written, quirks included (see docs/clusters.md).
    """
    n_units, n = gs.shape
    out = np.full(n_units, "no pattern detected", dtype=object)
    for u in range(n_units):
        g, sig, t, tp = gs[u], sigs[u], tau[u], tau_p[u]
        hot, cold = sig & (g > 0), sig & (g < 0)
        hot_share, cold_share = hot.sum() / n, cold.sum() / n
        last_sig = bool(sig[-1])
        run = 0                                   # trailing run of significant bins
        while run < n and sig[n - 1 - run]:
            run += 1
        before_clear = not sig[:n - run].any()

        def consecutive(last_ok: bool, own_share: float, clear: bool = before_clear
                        ) -> bool:
            return last_ok and clear and own_share < share

        rules = (
            ("new hot spot", sig.sum() == 1 and last_sig and g[-1] > 0),
            ("new cold spot", sig.sum() == 1 and last_sig and g[-1] < 0),
            ("consecutive hot spot", consecutive(last_sig and g[-1] > 0, hot_share)),
            ("consecutive cold spot", consecutive(last_sig and g[-1] < 0, cold_share)),
            ("intensifying hot spot",
             sig.sum() / n >= share and last_sig and t > 0 and tp < threshold),
            ("intensifying cold spot",
             cold_share >= share and last_sig and t < 0 and tp <= threshold),
            ("persistent hot spot", hot_share >= share and tp > threshold),
            ("persistent cold spot", cold_share >= share and tp > threshold),
            ("diminishing hot spot",
             hot_share >= share and last_sig and t < 0 and tp <= threshold),
            ("diminishing cold spot",
             cold_share >= share and last_sig and t > 0 and tp <= threshold),
            ("oscillating hot spot",
             hot_share <= share and bool(hot[-1]) and bool(cold.any())),
            ("oscillating cold spot",
             cold_share < share and bool(cold[-1]) and bool(hot.any())),
            ("historical hot spot", hot_share >= share and g[-1] < 0),
            ("historical cold spot", g[-1] > 0 and cold_share >= share),
            ("sporadic hot spot", hot_share < share and not cold.any() and bool(hot.any())),
            ("sporadic cold spot", cold_share < share and not hot.any() and bool(cold.any())),
        )
        for name, holds in rules:
            if holds:
                out[u] = name
                break
    return out


def _kendall_upper_tail(score: int, n: int) -> float:
    """``P(S >= score)`` for Kendall's score of ``n`` untied values (Best & Gipps 1974).

    Exact for ``n <= 8`` (count of permutations by inversions), otherwise AS 71's
    modified Edgeworth series. ``nan`` when ``score`` cannot occur without ties.
    """
    n_pairs = n * (n - 1) // 2
    gap = n_pairs - abs(score)
    if gap < 0 or gap % 2:
        return math.nan
    if gap == 0 and score <= 0:
        return 1.0
    if n <= 8:
        counts = np.zeros(n_pairs + 1)             # permutations by number of inversions
        counts[0] = 1.0
        for m in range(2, n + 1):
            new = np.zeros_like(counts)
            for extra in range(m):
                new[extra:] += counts[:len(counts) - extra]
            counts = new
        max_inversions = (n_pairs - score) // 2     # S = n_pairs - 2 * inversions
        return float(counts[:max_inversions + 1].sum() / math.factorial(n))
    x = (score - 1) / math.sqrt((6 + n * (5 - n * (3 + 2 * n))) / -18.0)
    h = [x, x * x - 1.0]
    for i in range(2, 15):
        h.append(x * h[i - 1] - i * h[i - 2])
    r = 1.0 / n
    sc = r * (h[2] * (-9e-2 + r * (4.5e-2 + r * (-5.325e-1 + r * 5.06e-1)))
              + r * (h[4] * (3.6735e-2 + r * (-3.6735e-2 + r * 3.214e-1))
                     + h[6] * (4.05e-3 + r * (-2.3336e-2 + r * 7.787e-2))
                     + r * (h[8] * (-3.3061e-3 - r * 6.5166e-3)
                            + h[10] * (-1.215e-4 + r * 2.5927e-3)
                            + r * (h[12] * 1.4878e-4 + h[14] * 2.7338e-6))))
    p = stats.norm.sf(x) + sc * 0.398942 * math.exp(-0.5 * x * x)
    return float(min(max(p, 0.0), 1.0))


def kendall_trend(series: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Mann-Kendall trend of each row as R's ``Kendall::MannKendall`` reports it.

    Returns Kendall's tau ``S / D`` and the two-sided p-value ``sl`` of the package:
    ``sl = 2 min(P(S' < S), P(S' >= S))`` from :func:`_kendall_upper_tail` (exact for
    ``n <= 8``, AS 71's Edgeworth series above), since time ``1..n`` has no ties. A score
    that untied values cannot give (ties in the row) falls back to the normal
    approximation with continuity correction and the tie-corrected variance.
    """
    x = np.atleast_2d(np.asarray(series, dtype=float))
    n = x.shape[1]
    s, z, p_normal = mann_kendall(x)
    n_pairs = n * (n - 1) / 2
    tau = np.empty(len(x))
    sl = np.empty(len(x))
    for r in range(len(x)):
        _, t = np.unique(x[r], return_counts=True)
        tied = float((t * (t - 1) / 2).sum())
        denominator = math.sqrt(n_pairs * (n_pairs - tied))
        tau[r] = s[r] / denominator if denominator > 0 else 0.0
        upper = _kendall_upper_tail(int(s[r]), n)
        if math.isnan(upper):
            sl[r] = p_normal[r]
            continue
        below = 1.0 - upper
        sl[r] = 2.0 * (1.0 - below) if below >= 0.5 else 2.0 * below
    return tau, sl


def _queen_neighbours(units: Any) -> tuple[np.ndarray, np.ndarray]:
    """Queen contiguity including the unit itself, as CSR ``(indptr, indices)``.

    Grid cells are neighbours when their columns and rows differ by at most one (they
    share an edge or a corner); other units when their polygons touch or overlap.
    """
    n = len(units)
    if units.grid_cells is not None:
        cells = np.asarray(units.grid_cells, dtype=np.int64)
        lookup = {(int(c), int(r)): k for k, (c, r) in enumerate(cells)}
        rows: list[int] = []
        cols: list[int] = []
        for k, (c, r) in enumerate(cells):
            for dc in (-1, 0, 1):
                for dr in (-1, 0, 1):
                    other = lookup.get((int(c) + dc, int(r) + dr))
                    if other is not None:
                        rows.append(k)
                        cols.append(other)
        row_a, col_a = np.asarray(rows), np.asarray(cols)
    else:
        import shapely

        tree = shapely.STRtree(units.geometry)
        row_a, col_a = tree.query(units.geometry, predicate="intersects")
        row_a = np.concatenate([row_a, np.arange(n)])
        col_a = np.concatenate([col_a, np.arange(n)])
    matrix = sparse.csr_matrix((np.ones(len(row_a)), (row_a, col_a)), shape=(n, n))
    matrix.data[:] = 1.0                       # duplicates (self twice) count once
    matrix.sort_indices()
    return matrix.indptr.astype(np.int64), matrix.indices.astype(np.int64)


def _distance_neighbours(centroids: np.ndarray, distance: float
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Units within ``distance`` (centroid to centroid, itself included), as CSR."""
    n = len(centroids)
    pairs = cKDTree(centroids).query_pairs(distance * (1 + 1e-12), output_type="ndarray")
    rows = np.concatenate([np.arange(n), pairs[:, 0], pairs[:, 1]])
    cols = np.concatenate([np.arange(n), pairs[:, 1], pairs[:, 0]])
    matrix = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    matrix.sort_indices()
    return matrix.indptr.astype(np.int64), matrix.indices.astype(np.int64)


def _lagged_sums(x: np.ndarray, indptr: np.ndarray, indices: np.ndarray, time_steps: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Neighbourhood sums over steps ``k - time_steps .. k`` and the number of steps."""
    n_units, n_steps = x.shape
    w = sparse.csr_matrix((np.ones(len(indices)), indices, indptr), shape=(n_units, n_units))
    space_sum = w @ x
    cum = np.cumsum(np.pad(space_sum, ((0, 0), (1, 0))), axis=1)
    k = np.arange(n_steps)
    lo = np.maximum(k - int(time_steps), 0)
    return cum[:, k + 1] - cum[:, lo], (k - lo + 1).astype(float)


def _slice_gi_star(x: np.ndarray, indptr: np.ndarray, indices: np.ndarray, time_steps: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    r"""Gi* of every bin against its own time slice, as sfdep's ``local_g_spt`` does.

    Row-standardised weights ``1 / |N(u)|`` on the spatial neighbours (the unit
    included) at step ``k`` and each of the ``time_steps`` earlier steps that exist, so
    ``W = m`` (the number of those steps) and ``S_1 = m / |N(u)|``; with the slice's mean
    ``xbar_k`` and variance ``s_k^2 = sum (x - xbar_k)^2 / n`` over its ``n`` units,

    .. math:: G^*_{uk} = \frac{\sum_N w x - W \bar x_k}
              {\sqrt{s_k^2 (n S_1 - W^2) / (n - 1)}}.

    Returns the z-scores and the unweighted neighbourhood sums (units x steps).
    """
    n_units, n_steps = x.shape
    sums, m = _lagged_sums(x, indptr, indices, time_steps)
    card = np.diff(indptr).astype(float)[:, None]
    mean = x.mean(axis=0)
    var = ((x - mean) ** 2).sum(axis=0) / n_units
    flat = np.flatnonzero(var == 0)
    if len(flat):
        raise DataError(f"time step {int(flat[0])} holds the same count in every unit, so "
                        "its per-slice Gi* is undefined; leave that step out of the cube "
                        "or use the whole-cube Gi* (gi='cube').")
    s1 = m[None, :] / card
    spread = n_units * s1 - m[None, :] ** 2
    if (spread <= 0).any():
        u = int(np.nonzero((spread <= 0).any(axis=1))[0][0])
        raise ParameterError(
            f"unit {u} has {int(card[u, 0])} neighbours among {n_units} units: with "
            f"{int(m.max())} steps in a window the per-slice Gi* variance is not positive "
            "(it needs n_units > neighbours x steps); use fewer neighbours or time steps.")
    z = (sums / card - m[None, :] * mean[None, :]) / np.sqrt(
        var[None, :] * (n_units * s1 - m[None, :] ** 2) / (n_units - 1))
    return z, sums


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@numba.njit(cache=True, inline="always")
def _splitmix64(state: np.uint64) -> tuple[np.uint64, np.uint64]:
    state = state + _GOLDEN
    z = state
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return state, z ^ (z >> np.uint64(31))


@numba.njit(parallel=True, cache=True)
def _permutation_counts(values: np.ndarray, observed: np.ndarray, n_draws: np.ndarray,
                        n_permutations: int, seed: np.uint64) -> tuple[np.ndarray, np.ndarray]:
    """Count random neighbourhood sums at most / at least each bin's observed sum.

    ``low[b]`` and ``high[b]`` count, over ``n_permutations`` random neighbourhoods, the
    sums ``<=`` and ``>=`` the observed sum of bin ``b``.

    A random neighbourhood of bin ``b`` is ``n_draws[b]`` distinct bins drawn uniformly
    from all bins but ``b`` (sfdep's ``cond_permute_nb`` over the whole cube). Bin ``b``
    draws from its own splitmix64 stream seeded by ``(seed, b)``, so results do not
    depend on the number of threads.
    """
    n_bins = len(values)
    low = np.zeros(n_bins, dtype=np.int64)
    high = np.zeros(n_bins, dtype=np.int64)
    span = np.uint64(n_bins - 1)
    two32 = np.uint64(4294967296)
    reject_below = (two32 - span) % span
    for b in numba.prange(n_bins):
        state = seed ^ (np.uint64(b + 1) * np.uint64(0xD1B54A32D192ED03))
        state, _ = _splitmix64(state)
        m = n_draws[b]
        picks = np.empty(m, dtype=np.int64)
        for _r in range(n_permutations):
            total = 0.0
            for q in range(m):
                while True:
                    state, raw = _splitmix64(state)
                    product = (raw >> np.uint64(32)) * span
                    while (product & np.uint64(0xFFFFFFFF)) < reject_below:
                        state, raw = _splitmix64(state)
                        product = (raw >> np.uint64(32)) * span
                    pick = np.int64(product >> np.uint64(32))
                    if pick >= b:
                        pick += 1
                    fresh = True
                    for w in range(q):
                        if picks[w] == pick:
                            fresh = False
                            break
                    if fresh:
                        break
                picks[q] = pick
                total += values[pick]
            if total <= observed[b]:
                low[b] += 1
            if total >= observed[b]:
                high[b] += 1
    return low, high


def _permutation_p_values(x: np.ndarray, sums: np.ndarray, card: np.ndarray, m: np.ndarray,
                          n_permutations: int, seed: int) -> np.ndarray:
    """Folded permutation p-value (sfdep's) ``min(l, g)`` of every bin (units x steps).

    ``l = (1 + #{G_obs >= G_sim}) / (R + 1)``, ``g = (1 + #{G_obs <= G_sim}) / (R + 1)``.
    Within a bin every weight is ``1 / |N(u)|`` and the slice mean and variance are
    fixed, so comparing Gi* values is comparing neighbourhood sums (exactly, ties
    included, for counts).
    """
    n_units, n_steps = x.shape
    if n_units * n_steps >= 2 ** 32:
        raise ParameterError("the cube has too many bins for permutation Gi*.")
    values = np.ascontiguousarray(x.T).ravel()          # bin = step * n_units + unit
    observed = np.ascontiguousarray(sums.T).ravel()
    draws = (card[:, None] * m[None, :]).astype(np.int64)
    n_draws = np.ascontiguousarray(draws.T).ravel()
    if n_draws.max() > n_units * n_steps - 1:
        raise ParameterError("a neighbourhood holds more bins than the cube has; use fewer "
                             "neighbours or more steps.")
    low, high = _permutation_counts(values, observed, n_draws, int(n_permutations),
                                    np.uint64(seed))
    p = np.minimum(low + 1, high + 1) / (n_permutations + 1)
    return p.reshape(n_steps, n_units).T


def _most_frequent(patterns: np.ndarray) -> np.ndarray:
    """Most frequent pattern of each unit over runs (rows); ties go to the earliest run."""
    out = np.empty(patterns.shape[1], dtype=object)
    for u in range(patterns.shape[1]):
        names, first, counts = np.unique(patterns[:, u], return_index=True,
                                         return_counts=True)
        best = counts == counts.max()
        out[u] = names[best][np.argmin(first[best])]
    return out


def emerging_hot_spots(
    cube: SpaceTimeCube,
    *,
    distance: float | None = None,
    time_steps: int = 1,
    alpha: float | None = None,
    fdr: bool | None = None,
    share: float = 0.9,
    rules: str = "arcgis",
    gi: str | None = None,
    neighbours: str | None = None,
    n_permutations: int = 199,
    random_state: int | np.random.Generator | None = None,
    n_runs: int = 1,
) -> EmergingHotSpotResult:
    r"""Emerging hot spot analysis, as ArcGIS Pro (``rules="arcgis"``) or R's sfdep does it.

    Every bin ``(unit u, step k)`` gets a Getis-Ord Gi* z-score over its space-time
    neighbourhood: the unit's spatial neighbours (itself included) at step ``k`` and the
    ``time_steps`` earlier steps. Bins whose p-value passes ``alpha`` (after the
    Benjamini-Hochberg false discovery rate correction when ``fdr``) are significant, hot
    when ``z > 0`` and cold when ``z < 0``; each unit's series of z-scores gets a
    Mann-Kendall trend test and a pattern from :data:`PATTERNS`.

    Two Gi* statistics (``gi``):

    - ``"cube"`` (ArcGIS): binary weights, the mean ``xbar`` and standard deviation ``s``
      of all ``n`` bins, ``w = |N(u, k)|`` and a normal two-sided p-value:

      .. math:: G^*_{uk} = \frac{\sum_{N} x - \bar x\, w}{s \sqrt{(n w - w^2) / (n - 1)}};

    - ``"slice"`` (sfdep's ``emerging_hotspot_analysis``): row-standardised weights, the
      mean and variance of the bin's own time slice (see :func:`_slice_gi_star`), and
      sfdep's folded permutation p-value ``min(l, g)`` from ``n_permutations`` random
      neighbourhoods, each ``|N(u, k)|`` distinct bins drawn from the whole cube except
      the bin itself (sfdep's ``cond_permute_nb``).

    Two rule sets (``rules``): ``"arcgis"`` follows the ArcGIS Pro definitions (below, for
    hot; swap hot and cold for cold) with the continuity-corrected normal Mann-Kendall
    test; ``"sfdep"`` is sfdep's ``classify_hotspot`` rule for rule, in its order, with
    ``Kendall::MannKendall``'s p-value (:func:`kendall_trend`) at the same ``alpha``.
    docs/clusters.md sets the two side by side. ArcGIS rules:

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
    distance : float, optional
        Spatial neighbourhood radius, metres (centroid to centroid); needed with
        ``neighbours="distance"``.
    time_steps : int
        Earlier steps in the neighbourhood (ArcGIS's "neighborhood time step", sfdep's
        ``k``).
    alpha : float, optional
        Significance level of bins and trends. Default 0.1 (ArcGIS's 90% confidence) for
        ``rules="arcgis"``, 0.01 (sfdep's ``threshold``) for ``rules="sfdep"``.
    fdr : bool, optional
        Apply the false discovery rate correction. Default: yes for ArcGIS, no for sfdep.
    share : float
        The "90% of time steps" share.
    rules : {"arcgis", "sfdep"}
        Pattern rules (above).
    gi : {"cube", "slice"}, optional
        Gi* statistic. Default ``"cube"`` for ArcGIS, ``"slice"`` for sfdep.
    neighbours : {"distance", "queen"}, optional
        Spatial neighbours: units within ``distance``, or queen contiguity (sharing an
        edge or corner; needs ``cube.units``). Default ``"distance"`` for ArcGIS,
        ``"queen"`` for sfdep (its default for polygons).
    n_permutations : int
        Permutations of the ``"slice"`` statistic (sfdep's ``nsim``, 199).
    random_state : int or Generator, optional
        Seed of the permutations.
    n_runs : int
        With ``gi="slice"``: classify ``n_runs`` times with independent permutations and
        give each unit its most frequent pattern (the earliest run's among ties). One run
        is what sfdep does; its patterns change from seed to seed (about 9% of Portland's
        monthly cells between two seeds), and the most frequent pattern of 5 runs is the
        likelier answer of any single sfdep run. ``p_values`` and ``significant`` are
        those of the first run.

    Returns
    -------
    EmergingHotSpotResult

    Raises
    ------
    ParameterError
        Unknown options, a missing ``distance``, or queen neighbours without units.
    DataError
        A cube whose counts are all equal (``"cube"``) or a time slice whose counts are all
        equal (``"slice"``): Gi* is undefined there.

    Notes
    -----
    ``"cube"``: O(n_units x k x n_steps) for ``k`` spatial neighbours (sparse product and
    cumulative sums over time). ``"slice"``: the same plus O(n_bins x R x |N|) for the
    permutations, numba in parallel over bins. Mann-Kendall: O(n_units x n_steps^2).

    References
    ----------
    Getis, A. & Ord, J. K. (1992). The analysis of spatial association by use of distance
    statistics. Geographical Analysis 24(3), 189-206.
    Ord, J. K. & Getis, A. (1995). Local spatial autocorrelation statistics. Geographical
    Analysis 27(4), 286-306.
    Esri. How Emerging Hot Spot Analysis works. ArcGIS Pro documentation.
    Parry, J. sfdep: Spatial Dependence for Simple Features (R package),
    ``emerging_hotspot_analysis`` and ``classify_hotspot``.
    Best, D. J. & Gipps, P. G. (1974). Algorithm AS 71: the upper tail probabilities of
    Kendall's tau. Applied Statistics 23(1), 98-100.
    """
    if rules not in ("arcgis", "sfdep"):
        raise ParameterError(f"rules must be 'arcgis' or 'sfdep', got {rules!r}.", param="rules")
    sfdep_like = rules == "sfdep"
    alpha = (0.01 if sfdep_like else 0.1) if alpha is None else float(alpha)
    fdr = (not sfdep_like) if fdr is None else bool(fdr)
    gi = ("slice" if sfdep_like else "cube") if gi is None else gi
    neighbours = ("queen" if sfdep_like else "distance") if neighbours is None else neighbours
    if gi not in ("cube", "slice"):
        raise ParameterError(f"gi must be 'cube' or 'slice', got {gi!r}.", param="gi")
    if neighbours not in ("distance", "queen"):
        raise ParameterError(f"neighbours must be 'distance' or 'queen', got {neighbours!r}.",
                             param="neighbours")
    if neighbours == "distance" and (distance is None or not distance > 0):
        raise ParameterError(f"distance must be positive metres, got {distance}.",
                             param="distance")
    if int(time_steps) < 0:
        raise ParameterError(f"time_steps must be >= 0, got {time_steps}.", param="time_steps")
    if not 0 < alpha < 1:
        raise ParameterError(f"alpha must be in (0, 1), got {alpha}.", param="alpha")
    x = cube.counts
    n_units, n_steps = x.shape
    if neighbours == "queen":
        if cube.units is None:
            raise ParameterError("queen neighbours need the cube's units; build the cube "
                                 "with SpaceTimeCube.from_events.", param="neighbours")
        indptr, indices = _queen_neighbours(cube.units)
    else:
        assert distance is not None  # checked above for distance neighbours
        indptr, indices = _distance_neighbours(cube.centroids, float(distance))
    if gi == "cube":
        n = x.size
        mean = x.mean()
        sd = np.sqrt((x ** 2).mean() - mean ** 2)
        if sd == 0:
            raise DataError("every bin of the cube holds the same count; Gi* is undefined.")
        window_sum, m = _lagged_sums(x, indptr, indices, int(time_steps))
        w = np.diff(indptr)[:, None] * m[None, :]
        z = (window_sum - mean * w) / (sd * np.sqrt((n * w - w ** 2) / (n - 1)))
        p = 2 * stats.norm.sf(np.abs(z))
        n_perm = 0
    n_runs = int(n_runs)
    if n_runs < 1 or (n_runs > 1 and gi != "slice"):
        raise ParameterError(f"n_runs must be 1, or more with the permutation Gi* "
                             f"(gi='slice'), got {n_runs}.", param="n_runs")
    if gi == "cube":
        p_runs = [p]
    else:
        n_perm = int(n_permutations)
        if n_perm < 1:
            raise ParameterError(f"n_permutations must be >= 1, got {n_permutations}.",
                                 param="n_permutations")
        z, sums = _slice_gi_star(x, indptr, indices, int(time_steps))
        rng = (random_state if isinstance(random_state, np.random.Generator)
               else np.random.default_rng(random_state))
        steps = np.arange(n_steps)
        m = steps - np.maximum(steps - int(time_steps), 0) + 1   # steps in each window
        p_runs = [_permutation_p_values(x, sums, np.diff(indptr), m, n_perm,
                                        int(rng.integers(0, 2 ** 63)))
                  for _ in range(n_runs)]
    _, trend_z, trend_p_normal = mann_kendall(z)
    trend_tau, trend_p_kendall = kendall_trend(z)
    trend_p = trend_p_kendall if sfdep_like else trend_p_normal
    patterns = []
    for p_run in p_runs:
        passed = _benjamini_hochberg(p_run, alpha) if fdr else p_run <= alpha
        if sfdep_like:
            patterns.append(_classify_sfdep(z, passed, trend_tau, trend_p, alpha, share))
        else:
            signed = np.where(passed, np.sign(z), 0).astype(int)
            patterns.append(_classify(signed, trend_z, trend_p, alpha, share))
    pattern = patterns[0] if n_runs == 1 else _most_frequent(np.array(patterns))
    p = p_runs[0]
    passed = _benjamini_hochberg(p, alpha) if fdr else p <= alpha
    sig = np.where(passed, np.sign(z), 0).astype(int)
    return EmergingHotSpotResult(
        pattern=pattern, z_scores=z, p_values=p, significant=sig, trend_z=trend_z,
        trend_p=trend_p, unit_ids=np.asarray(cube.unit_ids, dtype=object),
        parameters={"distance": None if distance is None else float(distance),
                    "time_steps": int(time_steps), "alpha": alpha, "fdr": fdr,
                    "share": float(share), "rules": rules, "gi": gi,
                    "neighbours": neighbours, "n_permutations": n_perm, "n_runs": n_runs,
                    "n_units": n_units, "n_steps": n_steps},
        units=cube.units, trend_tau=trend_tau)

"""Knox test and near-repeat analysis (Knox 1964; Ratcliffe's Near Repeat Calculator)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats
from scipy.spatial import cKDTree

from placecast.exceptions import DataError, ParameterError

__all__ = ["KnoxResult", "NearRepeatResult", "knox_test", "near_repeat"]


def _check_points(x: npt.ArrayLike, y: npt.ArrayLike, t: npt.ArrayLike
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xs, ys, ts = (np.asarray(v, dtype=float) for v in (x, y, t))
    if not (xs.shape == ys.shape == ts.shape) or xs.ndim != 1:
        raise DataError("x, y and t must be one-dimensional arrays of the same length.")
    if not (np.isfinite(xs).all() and np.isfinite(ys).all() and np.isfinite(ts).all()):
        raise DataError("x, y and t must be finite numbers.")
    if len(xs) < 2:
        raise DataError(f"a pair test needs at least 2 events, got {len(xs)}.")
    return xs, ys, ts


def _space_pairs(xy: np.ndarray, radius: float, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """All pairs ``i < j`` within ``radius`` (inclusive): O(n log n + pairs)."""
    p = 2.0 if metric == "euclidean" else 1.0
    pairs = cKDTree(xy).query_pairs(radius * (1 + 1e-12), p=p, output_type="ndarray")
    if len(pairs) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)


def _distance(xy: np.ndarray, i: np.ndarray, j: np.ndarray, metric: str) -> np.ndarray:
    diff = np.abs(xy[i] - xy[j])
    return np.sqrt((diff ** 2).sum(axis=1)) if metric == "euclidean" else diff.sum(axis=1)


def _check_metric(metric: str) -> None:
    if metric not in ("euclidean", "manhattan"):
        raise ParameterError(f"metric must be 'euclidean' or 'manhattan', got {metric!r}.")


# ---------------------------------------------------------------------------- Knox
@dataclass(frozen=True)
class KnoxResult:
    """The global Knox test.

    Attributes
    ----------
    table : ndarray of int, shape (2, 2)
        Pairs by (close in space, not) x (close in time, not).
    expected : ndarray of float, shape (2, 2)
        Row total x column total / number of pairs.
    statistic : int
        Close-close pairs, ``table[0, 0]``.
    p_value_poisson : float
        ``P(X > statistic)`` for ``X ~ Poisson(expected[0, 0])`` (the convention of
        PySAL's ``pointpats.knox``, so results compare).
    p_value_permutation : float
        Monte Carlo p-value from permuted times (``nan`` without permutations).
    n_pairs : int
        ``n (n - 1) / 2``.
    distance, time : float
        The closeness thresholds (inclusive).
    n_permutations : int
        Permutations run.
    """

    table: np.ndarray
    expected: np.ndarray
    statistic: int
    p_value_poisson: float
    p_value_permutation: float
    n_pairs: int
    distance: float
    time: float
    n_permutations: int

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        return {"table": self.table.tolist(), "expected": self.expected.tolist(),
                "statistic": self.statistic, "p_value_poisson": self.p_value_poisson,
                "p_value_permutation": self.p_value_permutation, "n_pairs": self.n_pairs,
                "distance": self.distance, "time": self.time,
                "n_permutations": self.n_permutations}

    def to_frame(self) -> pd.DataFrame:
        """Return the 2x2 table with expected counts, one row per cell."""
        rows = []
        for a, space in enumerate(("close", "not close")):
            for b, time in enumerate(("close", "not close")):
                rows.append({"space": space, "time": time, "observed": int(self.table[a, b]),
                             "expected": float(self.expected[a, b])})
        return pd.DataFrame(rows)


def _count_time_close(t_sorted: np.ndarray, tau: float) -> int:
    """Pairs with ``|t_i - t_j| <= tau`` in O(n log n)."""
    upper = np.searchsorted(t_sorted, t_sorted + tau * (1 + 1e-12) + 1e-12, side="right")
    return int((upper - np.arange(len(t_sorted)) - 1).sum())


def knox_test(
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    t: npt.ArrayLike,
    *,
    distance: float,
    time: float,
    metric: str = "euclidean",
    n_permutations: int = 0,
    random_state: int | np.random.Generator | None = None,
) -> KnoxResult:
    r"""Knox's test of space-time interaction.

    A pair of events is close in space when their distance is ``<= distance`` and close in
    time when ``|t_i - t_j| <= time`` (both inclusive). With ``N = n(n-1)/2`` pairs,
    ``S`` close in space and ``T`` close in time, the number ``X`` close in both has
    expectation ``S T / N`` under no interaction, and

    .. math:: p = P(\mathrm{Poisson}(S T / N) > X)

    (strictly greater, as PySAL's ``pointpats`` reports it; add ``P(X = x)`` for the
    ``>=`` form).

    Parameters
    ----------
    x, y : array of float
        Coordinates (any planar unit; ``distance`` in the same unit).
    t : array of float
        Times (``time`` in the same unit, e.g. days).
    distance, time : float
        Closeness thresholds.
    metric : {"euclidean", "manhattan"}
        Distance between events.
    n_permutations : int
        Monte Carlo permutations of the times for a permutation p-value
        ``(1 + #{X_sim >= X}) / (1 + R)``.
    random_state : int or Generator, optional
        Seed of the permutations.

    Returns
    -------
    KnoxResult

    Notes
    -----
    O(n log n + P) for ``P`` pairs close in space (k-d tree), plus O(P) per permutation.

    References
    ----------
    Knox, E. G. (1964). The detection of space-time interactions. Journal of the Royal
    Statistical Society C 13(1), 25-30.

    Examples
    --------
    >>> r = knox_test([0, 1, 50], [0, 0, 0], [0, 1, 2], distance=2, time=1)
    >>> r.table.tolist()
    [[1, 0], [1, 1]]
    """
    xs, ys, ts = _check_points(x, y, t)
    _check_metric(metric)
    if not (distance >= 0 and time >= 0):
        raise ParameterError("distance and time thresholds must be >= 0.")
    n = len(xs)
    n_pairs = n * (n - 1) // 2
    xy = np.column_stack([xs, ys])
    i, j = _space_pairs(xy, distance, metric)
    if metric == "manhattan" and len(i):
        keep = _distance(xy, i, j, metric) <= distance * (1 + 1e-12)
        i, j = i[keep], j[keep]
    tol = time * (1 + 1e-12) + 1e-12
    close_both = int((np.abs(ts[i] - ts[j]) <= tol).sum())
    s_close = len(i)
    t_close = _count_time_close(np.sort(ts), time)
    table = np.array([[close_both, s_close - close_both],
                      [t_close - close_both, n_pairs - s_close - t_close + close_both]])
    rows, cols = table.sum(axis=1), table.sum(axis=0)
    expected = np.outer(rows, cols) / n_pairs
    p_poisson = float(stats.poisson.sf(close_both, expected[0, 0]))
    p_perm = math.nan
    n_perm = int(n_permutations)
    if n_perm < 0:
        raise ParameterError(f"n_permutations must be >= 0, got {n_permutations}.")
    if n_perm:
        rng = (random_state if isinstance(random_state, np.random.Generator)
               else np.random.default_rng(random_state))
        hits = 0
        for _ in range(n_perm):
            tp = rng.permutation(ts)
            hits += int((np.abs(tp[i] - tp[j]) <= tol).sum()) >= close_both
        p_perm = (hits + 1) / (n_perm + 1)
    return KnoxResult(table=table, expected=expected, statistic=close_both,
                      p_value_poisson=p_poisson, p_value_permutation=p_perm,
                      n_pairs=n_pairs, distance=float(distance), time=float(time),
                      n_permutations=n_perm)


# ---------------------------------------------------------------------------- near repeat
@dataclass(frozen=True)
class NearRepeatResult:
    """Near-repeat table: pairs by distance band x time band.

    Attributes
    ----------
    distance_labels, time_labels : tuple of str
        Band labels (rows, columns).
    observed : ndarray of int
        Pairs per cell.
    expected : ndarray of float
        Mean count per cell over the permutations.
    ratio : ndarray of float
        ``observed / expected`` (``nan`` where nothing is expected).
    p_value : ndarray of float
        ``(1 + #{sim >= obs}) / (1 + R)`` per cell.
    n_permutations : int
        Permutations run.
    convention : str
        "half-open" or "calculator".
    metric : str
        "euclidean" or "manhattan".
    n_events : int
        Events analysed.
    """

    distance_labels: tuple[str, ...]
    time_labels: tuple[str, ...]
    observed: np.ndarray
    expected: np.ndarray
    ratio: np.ndarray
    p_value: np.ndarray
    n_permutations: int
    convention: str
    metric: str
    n_events: int
    distance_unit: str = field(default="m")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        def clean(a: np.ndarray) -> list[Any]:
            return [[None if not np.isfinite(v) else float(v) for v in row] for row in a]

        return {"distance_bands": list(self.distance_labels),
                "time_bands": list(self.time_labels),
                "observed": self.observed.tolist(), "expected": clean(self.expected),
                "ratio": clean(self.ratio), "p_value": clean(self.p_value),
                "n_permutations": self.n_permutations, "convention": self.convention,
                "metric": self.metric, "n_events": self.n_events}

    def to_frame(self) -> pd.DataFrame:
        """One row per (distance band, time band) cell."""
        rows = []
        for a, d in enumerate(self.distance_labels):
            for b, t in enumerate(self.time_labels):
                rows.append({"distance_band": d, "time_band": t,
                             "observed": int(self.observed[a, b]),
                             "expected": float(self.expected[a, b]),
                             "ratio": float(self.ratio[a, b]),
                             "p_value": float(self.p_value[a, b])})
        return pd.DataFrame(rows)

    def summary(self, alpha: float = 0.05) -> str:
        """Summarise in plain language, in the spirit of the Near Repeat Calculator."""
        lines = [f"Near-repeat analysis of {self.n_events} events with "
                 f"{self.n_permutations} permutations ({self.metric} distance)."]
        flagged = []
        for a, d in enumerate(self.distance_labels):
            for b, t in enumerate(self.time_labels):
                if self.p_value[a, b] <= alpha and self.ratio[a, b] > 1:
                    flagged.append((self.ratio[a, b], d, t, self.p_value[a, b]))
        if not flagged:
            lines.append(f"No distance-time band holds significantly more pairs than expected "
                         f"(p <= {alpha}): no evidence of a near-repeat pattern.")
        else:
            lines.append(f"{len(flagged)} distance-time band(s) hold significantly more pairs "
                         f"than expected (p <= {alpha}):")
            for ratio, d, t, p in sorted(flagged, key=lambda r: (-r[0], r[1])):
                where = ("at the same location" if d == "same location"
                         else f"{d} {self.distance_unit} apart")
                lines.append(f"  {where}, {t} days apart: "
                             f"{(ratio - 1) * 100:.0f}% more pairs than expected "
                             f"(observed/expected {ratio:.2f}, p = {p:.3f}).")
            lines.append("Events in these bands follow an earlier event more often than "
                         "chance would suggest: the area around a new event is at raised "
                         "risk for that time.")
        return "\n".join(lines)


def _bands(edges: np.ndarray, convention: str, kind: str) -> tuple[np.ndarray, list[str]]:
    """Edges and labels. half-open: ``[e_k, e_k+1)``; calculator: see :func:`near_repeat`."""
    if convention == "half-open":
        labels = [f"{edges[k]:g} to <{edges[k + 1]:g}" for k in range(len(edges) - 1)]
        return edges, labels
    # calculator: inclusive integer bands
    labels = []
    for k in range(len(edges) - 1):
        lo = edges[k] + (1 if k > 0 else 0)
        if kind == "distance" and k == 0 and edges[0] == 0 and edges[1] == 0:
            labels.append("same location")
            continue
        if kind == "distance" and k == 1 and edges[0] == 0 and edges[1] == 0:
            lo = 1
        labels.append(f"{lo:g} to {edges[k + 1]:g}")
    return edges, labels


def _bin(values: np.ndarray, edges: np.ndarray, convention: str) -> np.ndarray:
    """Band index of each value, -1 outside."""
    if convention == "half-open":
        k = np.searchsorted(edges, values, side="right") - 1
        k[(values < edges[0]) | (values >= edges[-1])] = -1
        return k
    # calculator: band k holds (edges[k], edges[k+1]] except the first, [edges[0], edges[1]]
    k = np.searchsorted(edges, values, side="left") - 1
    k[values == edges[0]] = 0
    if len(edges) > 2 and edges[0] == edges[1]:
        k[(values > edges[0]) & (values <= edges[2])] = 1
    k[(values < edges[0]) | (values > edges[-1])] = -1
    return k


def near_repeat(
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    t: npt.ArrayLike,
    *,
    distance_bands: npt.ArrayLike,
    time_bands: npt.ArrayLike,
    metric: str = "euclidean",
    convention: str = "half-open",
    n_permutations: int = 99,
    random_state: int | np.random.Generator | None = None,
    distance_unit: str = "m",
) -> NearRepeatResult:
    """Near-repeat analysis: Knox counts over distance x time bands, tested by permutation.

    Every pair of events falls in one distance band and one time band (or none). The
    expected count of a cell is its mean over ``n_permutations`` random permutations of
    the event times over the events (locations fixed); the p-value is
    ``(1 + #{sim >= obs}) / (1 + R)``.

    Parameters
    ----------
    x, y : array of float
        Coordinates, metres (or any unit; see ``distance_unit``).
    t : array of float
        Times in days (whole days for the calculator convention).
    distance_bands, time_bands : array of float
        Increasing band edges. With ``convention="half-open"`` band ``k`` is
        ``[e_k, e_k+1)``. With ``convention="calculator"`` the bands follow Ratcliffe's
        Near Repeat Calculator: the first band is ``[e_0, e_1]`` and later ones
        ``(e_k, e_k+1]`` (labelled ``e_k + 1 to e_k+1`` as the calculator prints them for
        whole units); start the distance edges with ``0, 0`` to get its "same location"
        band. For example the calculator's defaults with bandwidth 100 m and 14 days are
        ``distance_bands=[0, 0, 100, 200, 300]``, ``time_bands=[0, 14, 28, 42]``.
    metric : {"euclidean", "manhattan"}
        Distance between events.
    convention : {"half-open", "calculator"}
        How band edges are read (above).
    n_permutations : int
        Permutations (the calculator's "number of iterations"; at least 1).
    random_state : int or Generator, optional
        Seed.
    distance_unit : str
        Unit name used in labels and the summary.

    Returns
    -------
    NearRepeatResult

    Notes
    -----
    The pairs within the largest distance are found once with a k-d tree; each permutation
    then costs O(P) for ``P`` such pairs (times change, locations do not).

    References
    ----------
    Ratcliffe, J. H. (2009). Near Repeat Calculator (version 1.3). Temple University,
    Philadelphia, and the National Institute of Justice.
    Johnson, S. D. et al. (2007). Space-time patterns of risk: a cross national assessment
    of residential burglary victimization. Journal of Quantitative Criminology 23, 201-219.
    """
    xs, ys, ts = _check_points(x, y, t)
    _check_metric(metric)
    if convention not in ("half-open", "calculator"):
        raise ParameterError(f"convention must be 'half-open' or 'calculator', got "
                             f"{convention!r}.")
    d_edges = np.asarray(distance_bands, dtype=float)
    t_edges = np.asarray(time_bands, dtype=float)
    for name, e in (("distance_bands", d_edges), ("time_bands", t_edges)):
        if e.ndim != 1 or len(e) < 2 or (np.diff(e) < 0).any() or e[0] < 0:
            raise ParameterError(f"{name} must be at least two non-negative, non-decreasing "
                                 f"edges, got {e.tolist()}.")
        if convention == "half-open" and (np.diff(e) <= 0).any():
            raise ParameterError(f"{name} must be strictly increasing for the half-open "
                                 "convention.")
    if int(n_permutations) < 1:
        raise ParameterError(f"n_permutations must be >= 1, got {n_permutations}.")
    xy = np.column_stack([xs, ys])
    i, j = _space_pairs(xy, float(d_edges[-1]), metric)
    d = _distance(xy, i, j, metric)
    d_bin = _bin(d, d_edges, convention)
    keep = d_bin >= 0
    i, j, d_bin = i[keep], j[keep], d_bin[keep]
    n_d, n_t = len(d_edges) - 1, len(t_edges) - 1

    def table(times: np.ndarray) -> np.ndarray:
        t_bin = _bin(np.abs(times[i] - times[j]), t_edges, convention)
        ok = t_bin >= 0
        return np.bincount(d_bin[ok] * n_t + t_bin[ok], minlength=n_d * n_t).reshape(n_d, n_t)

    observed = table(ts)
    rng = (random_state if isinstance(random_state, np.random.Generator)
           else np.random.default_rng(random_state))
    total = np.zeros((n_d, n_t))
    hits = np.zeros((n_d, n_t))
    for _ in range(int(n_permutations)):
        sim = table(rng.permutation(ts))
        total += sim
        hits += sim >= observed
    expected = total / int(n_permutations)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(expected > 0, observed / np.where(expected > 0, expected, 1), np.nan)
    _, d_labels = _bands(d_edges, convention, "distance")
    _, t_labels = _bands(t_edges, convention, "time")
    return NearRepeatResult(
        distance_labels=tuple(d_labels), time_labels=tuple(t_labels), observed=observed,
        expected=expected, ratio=ratio, p_value=(hits + 1) / (int(n_permutations) + 1),
        n_permutations=int(n_permutations), convention=convention, metric=metric,
        n_events=len(xs), distance_unit=distance_unit)

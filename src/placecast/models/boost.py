"""A learned forecast: Poisson gradient boosting over multi-scale space-time features.

For a window of ``W`` days starting at ``t0`` the model builds training rows from
*past origins* ``t_k = t0 - W - k * step`` (``k = 0 .. n_origins - 1``), so every target
window ``[t_k, t_k + W)`` ends by ``t0``: the model never sees an event at or after the
window start. Each row is one (unit, past origin) pair; its target is the unit's count in
the window after the origin, and its features are computed from the events before that
origin only:

* counts in the unit over several look-backs and exponentially decayed counts at several
  half-lives;
* the same smoothed over neighbourhoods of several sizes (Gaussian weights between unit
  centroids, the unit itself left out);
* days since the last event in the unit and in its neighbourhood;
* events of the other categories of the same file (leading indicators), when asked;
* the season of the window (day of year) and the region's recent total;
* static user covariate layers (risk terrain, ``placecast.covariates``).

A LightGBM booster with the Poisson objective learns the expected count; the forecast for
``[t0, t0 + W)`` applies it to the features at ``t0``. Intensities are expected counts.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.spatial import cKDTree

from placecast.events import Events
from placecast.exceptions import DataError, ParameterError
from placecast.forecast import Forecast, TimeWindow
from placecast.models._base import Forecaster, check_is_fitted, check_positive
from placecast.units import Units

__all__ = ["BoostedPoisson", "FeatureSet", "space_time_features"]

_DAY_NS = 86400e9
_LN2 = float(np.log(2.0))


@dataclass(frozen=True)
class FeatureSet:
    """Feature matrix of one or more origins.

    Attributes
    ----------
    names : list of str
        Feature names, one per column.
    values : ndarray of float32, shape (n_origins * n_units, n_features)
        Rows ordered origin-major: all units of the first origin, then the next.
    """

    names: list[str]
    values: np.ndarray


class Neighbourhood:
    """Gaussian smoothing over the units around each unit (the unit itself left out).

    ``smooth(values)`` is the Gaussian-weighted mean of ``values`` over the other units
    within about three ``scale``; ``nearest_max(values)`` the largest value among the
    units within ``scale``. Square grids use image filters on the grid (O(cells));
    hexagons and polygons a sparse weight matrix between centroids (O(units x
    neighbours)).
    """

    def __init__(self, units: Units, scale: float) -> None:
        import hashlib

        self.scale = float(scale)
        self.n_units = len(units)
        digest = hashlib.blake2b(repr((units.kind, self.scale, self.n_units)).encode(),
                                 digest_size=16)
        digest.update(np.ascontiguousarray(units.centroids, dtype=float).tobytes())
        self._fingerprint = digest.hexdigest()
        self._grid = None
        from scipy import ndimage

        if units.kind == "grid" and units.grid is not None and units.grid_cells is not None:
            self._grid = (units.grid.n_rows, units.grid.n_cols, units.grid_cells[:, 1],
                          units.grid_cells[:, 0], units.grid.cell_size)
            sigma = self.scale / units.grid.cell_size
            self._sigma = sigma
            # weight the filter gives the centre cell (product of two 1-D centre weights)
            radius = int(3.0 * sigma + 0.5)
            offsets = np.arange(-radius, radius + 1)
            kernel = np.exp(-0.5 * (offsets / max(sigma, 1e-9)) ** 2)
            kernel /= kernel.sum()
            self._centre = float(kernel[radius] ** 2)
            reach = max(int(np.floor(self.scale / units.grid.cell_size + 1e-9)), 1)
            yy, xx = np.mgrid[-reach:reach + 1, -reach:reach + 1]
            self._footprint = (xx**2 + yy**2) <= reach**2
            self._footprint[reach, reach] = False
            self._support = None
            weight = ndimage.gaussian_filter(self._to_grid(np.ones(self.n_units)), sigma,
                                             mode="constant", truncate=3.0)
            self._weight = weight[units.grid_cells[:, 1], units.grid_cells[:, 0]] - self._centre
        else:
            tree = cKDTree(units.centroids)
            pairs = tree.sparse_distance_matrix(tree, 3.0 * self.scale, output_type="coo_matrix")
            keep = pairs.row != pairs.col
            rows, cols, dist = pairs.row[keep], pairs.col[keep], pairs.data[keep]
            weights = np.exp(-0.5 * (dist / self.scale) ** 2)
            matrix = sparse.csr_matrix((weights, (rows, cols)), shape=(self.n_units,) * 2)
            totals = np.asarray(matrix.sum(axis=1)).ravel()
            totals[totals == 0] = 1.0
            self._matrix = (sparse.diags(1.0 / totals) @ matrix).tocsr()
            near = dist <= self.scale
            self._support = sparse.csr_matrix(
                (np.ones(int(near.sum())), (rows[near], cols[near])), shape=(self.n_units,) * 2)

    def fingerprint(self) -> str:
        """A digest of the units' kind and centroids and the scale (same: same smoothing)."""
        return self._fingerprint

    def _to_grid(self, values: np.ndarray, fill: float = 0.0) -> np.ndarray:
        assert self._grid is not None
        n_rows, n_cols, rows, cols, _ = self._grid
        image = np.full((n_rows, n_cols), fill, dtype=float)
        image[rows, cols] = values
        return image

    def smooth(self, values: np.ndarray) -> np.ndarray:
        """Gaussian-weighted mean of ``values`` over the neighbouring units."""
        if self._grid is None:
            return np.asarray(self._matrix @ values)
        from scipy import ndimage

        _, _, rows, cols, _ = self._grid
        image = self._to_grid(values)
        blurred = ndimage.gaussian_filter(image, self._sigma, mode="constant", truncate=3.0)
        numerator = blurred[rows, cols] - self._centre * values
        denominator = self._weight
        return np.where(denominator > 1e-12, numerator / np.maximum(denominator, 1e-12), 0.0)

    def nearest_max(self, values: np.ndarray) -> np.ndarray:
        """Largest of ``values`` over the units within ``scale`` (0 where none)."""
        if self._grid is None:
            assert self._support is not None
            return _row_max(self._support, values)
        from scipy import ndimage

        _, _, rows, cols, _ = self._grid
        image = self._to_grid(values)
        return ndimage.maximum_filter(image, footprint=self._footprint, mode="constant",
                                      cval=0.0)[rows, cols]


def space_time_features(
    times: np.ndarray,
    unit_index: np.ndarray,
    weights: np.ndarray,
    origins: np.ndarray,
    n_units: int,
    *,
    lookbacks_days: Sequence[float],
    half_lives_days: Sequence[float],
    neighbours: Sequence[tuple[str, Neighbourhood]],
    window_days: float,
    auxiliary: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray]] = (),
    static: FeatureSet | None = None,
    history_start: float | None = None,
    rows: np.ndarray | None = None,
) -> FeatureSet:
    """Features of every unit at every origin from the events before that origin.

    Parameters
    ----------
    times : ndarray of float, sorted
        Event times in days since any fixed epoch (the same epoch as ``origins``).
    unit_index : ndarray of int
        Unit of each event (``-1``: outside every unit; such events are ignored).
    weights : ndarray of float
        Weight of each event.
    origins : ndarray of float
        Origins in days since the same epoch.
    n_units : int
        Number of units.
    lookbacks_days, half_lives_days : sequence of float
        Look-backs for plain counts and half-lives for decayed counts, days.
    neighbours : sequence of (label, sparse matrix)
        Neighbourhoods to smooth over (see ``Neighbourhood``).
    window_days : float
        Length of the window being forecast (seasonality uses its middle).
    auxiliary : sequence of (label, times, unit_index, weights)
        Other event streams (other categories) counted as leading indicators.
    static : FeatureSet, optional
        Per-unit features that do not change with the origin (covariates).
    history_start : float, optional
        Start of the data (default: the first event). Counts over a look-back reaching
        before it are scaled up to the full look-back, so early origins (with less
        history) and late ones describe units on the same scale.
    rows : ndarray of bool, optional
        Keep only these rows (``len(origins) * n_units``, origin-major): training rows
        are subsampled as they are made, so memory grows with the rows kept, not with
        ``n_origins x n_units``.

    Returns
    -------
    FeatureSet
        ``len(origins) * n_units`` rows, origin-major.

    Notes
    -----
    Each origin costs O(n_events_before_origin) for the counts plus one sparse product
    per neighbourhood; all origins together O(n_origins x (n_events + nnz)). The features
    of an origin depend only on the events before it, so a process keeps the recent
    origins' features (``_FeatureCache``, ``PLACECAST_FEATURE_CACHE_MB``, 512 MB by
    default) and reuses them while the events before each origin are unchanged: in a
    weekly backtest, consecutive forecasts share all but one of their training origins.
    """
    inputs = _FeatureInputs(times, unit_index, weights, n_units,
                            tuple(lookbacks_days), tuple(half_lives_days), tuple(neighbours),
                            float(window_days), tuple(auxiliary), static, history_start)
    with _FEATURE_CACHE.lock:
        values, names = _FEATURE_CACHE.features(inputs, np.asarray(origins, dtype=float), rows)
    return FeatureSet(names, values)


@dataclass(frozen=True, eq=False)
class _FeatureInputs:
    """What ``space_time_features`` computes from (events sorted by time)."""

    times: np.ndarray
    unit_index: np.ndarray
    weights: np.ndarray
    n_units: int
    lookbacks_days: tuple[float, ...]
    half_lives_days: tuple[float, ...]
    neighbours: tuple[tuple[str, Neighbourhood], ...]
    window_days: float
    auxiliary: tuple[tuple[str, np.ndarray, np.ndarray, np.ndarray], ...]
    static: FeatureSet | None
    history_start: float | None

    def start(self) -> float:
        if self.history_start is not None:
            return float(self.history_start)
        return float(self.times.min()) if len(self.times) else 0.0

    def key(self) -> tuple[Any, ...]:
        """Everything but the events that the features depend on (hashable)."""
        import hashlib

        digest = hashlib.blake2b(digest_size=16)
        for _, hood in self.neighbours:
            digest.update(hood.fingerprint().encode())
        if self.static is not None:
            digest.update(repr(self.static.names).encode())
            digest.update(np.ascontiguousarray(self.static.values).tobytes())
        aux = tuple((label, float(t.min()) if len(t) else None)
                    for label, t, _, _ in self.auxiliary)
        return (self.n_units, self.lookbacks_days, self.half_lives_days,
                tuple(label for label, _ in self.neighbours), self.window_days, aux,
                self.start(), digest.hexdigest())

    @functools.cached_property
    def inside(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(times, unit_index, weights) of the events inside a unit, filtered once."""
        keep = self.unit_index >= 0
        return self.times[keep], self.unit_index[keep], self.weights[keep]

    def streams(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        return [(self.times, self.unit_index, self.weights),
                *[(t, u, w) for _, t, u, w in self.auxiliary]]

    def origin_features(self, origin: float) -> tuple[list[str], np.ndarray]:
        """Every unit's features at one origin: (names, float32 matrix n_units x k)."""
        n_units = self.n_units
        lookbacks_days, half_lives_days = self.lookbacks_days, self.half_lives_days
        start = self.start()
        times, unit_index, weights = self.inside
        columns: dict[str, np.ndarray] = {}
        never = np.float32(np.nan)

        def add(name: str, values: np.ndarray) -> None:
            columns[name] = values.astype(np.float32, copy=False)

        max_lookback = max([*lookbacks_days, *(10.0 * h for h in half_lives_days)])
        end = int(np.searchsorted(times, origin, side="left"))
        begin = int(np.searchsorted(times, origin - max_lookback, side="left"))
        t = times[begin:end]
        u = unit_index[begin:end]
        w = weights[begin:end]
        age = origin - t
        base: dict[str, np.ndarray] = {}
        available = max(origin - start, 1.0)
        for lookback in lookbacks_days:
            sel = age <= lookback
            scale = lookback / min(lookback, available)
            base[f"count_{lookback:g}d"] = scale * np.bincount(u[sel], weights=w[sel],
                                                               minlength=n_units)
        for half_life in half_lives_days:
            decay = w * np.exp(-_LN2 * age / half_life)
            scale = 1.0 / (1.0 - np.exp(-_LN2 * available / half_life))
            base[f"decay_{half_life:g}d"] = scale * np.bincount(u, weights=decay,
                                                                minlength=n_units)
        for name, values in base.items():
            add(name, values)
        # days since the last event of the unit (over all history before the origin)
        last = np.full(n_units, -np.inf)
        np.maximum.at(last, unit_index[:end], times[:end])
        since = origin - last
        add("days_since_last", np.where(np.isfinite(since), since, never))
        recency = np.where(np.isfinite(since), 1.0 / (1.0 + np.nan_to_num(since, posinf=0.0)),
                           0.0)
        for j, (label, hood) in enumerate(self.neighbours):
            for name in (f"count_{max(lookbacks_days):g}d",
                         f"count_{sorted(lookbacks_days)[1]:g}d",
                         f"decay_{min(half_lives_days):g}d", f"decay_{max(half_lives_days):g}d"):
                if name in base:
                    add(f"nbr{label}_{name}", hood.smooth(base[name]))
            if j == 0:
                nearest = hood.nearest_max(recency)
                add(f"nbr{label}_days_since_last",
                    np.where(nearest > 0, 1.0 / np.maximum(nearest, 1e-12) - 1.0, never))
        for label, a_times, a_units, a_weights in self.auxiliary:
            a_end = int(np.searchsorted(a_times, origin, side="left"))
            a_begin = int(np.searchsorted(a_times, origin - max(lookbacks_days), side="left"))
            a_age = origin - a_times[a_begin:a_end]
            a_u, a_w = a_units[a_begin:a_end], a_weights[a_begin:a_end]
            ok = a_u >= 0
            for lookback in sorted(lookbacks_days)[1::2]:
                sel = ok & (a_age <= lookback)
                scale = lookback / min(lookback, max(origin - float(a_times.min()), 1.0)) \
                    if len(a_times) else 1.0
                add(f"{label}_count_{lookback:g}d",
                    scale * np.bincount(a_u[sel], weights=a_w[sel], minlength=n_units))
        # the region's recent level and the season of the window
        recent = (t >= origin - 28.0)
        add("region_rate_28d", np.full(n_units, w[recent].sum() / 28.0))
        middle = origin + self.window_days / 2.0
        day_of_year = (middle % 365.2425) / 365.2425 * 2.0 * np.pi
        add("season_sin", np.full(n_units, np.sin(day_of_year)))
        add("season_cos", np.full(n_units, np.cos(day_of_year)))
        if self.static is not None:
            for j, name in enumerate(self.static.names):
                add(name, self.static.values[:, j])
        names = list(columns)
        matrix = np.empty((n_units, len(names)), dtype=np.float32)
        for j, name in enumerate(names):
            matrix[:, j] = columns[name]
        return names, matrix


class _FeatureCache:
    """The recent origins' feature matrices of one event stream, reused while valid.

    An origin's features depend only on the events before it (and on the units and
    settings, part of the key). A cached origin is reused when the new events before it
    are the same events as when it was computed: the same count, all within the common
    prefix of the old and new time-sorted arrays. O(n_events) to check per call.
    Matrices are kept while they fit in ``PLACECAST_FEATURE_CACHE_MB`` (512 MB by
    default); a call whose origins do not all fit bypasses the cache.
    """

    def __init__(self) -> None:
        import threading

        self.lock = threading.Lock()  # one caller at a time: a service runs jobs in threads
        self.key: tuple[Any, ...] | None = None
        self.streams: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.entries: dict[float, tuple[list[str], np.ndarray, tuple[int, ...]]] = {}

    @staticmethod
    def budget() -> int:
        text = os.environ.get("PLACECAST_FEATURE_CACHE_MB", "512")
        try:
            megabytes = float(text)
        except ValueError:
            megabytes = -1.0
        if not megabytes >= 0:  # also refuses nan
            raise ParameterError(
                f"PLACECAST_FEATURE_CACHE_MB={text!r} is not a size: give megabytes as a "
                "number >= 0 (0 turns the feature cache off), or unset it for 512.")
        return int(megabytes * 2**20)

    @staticmethod
    def _counts(streams: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
                origin: float) -> tuple[int, ...]:
        return tuple(int(np.searchsorted(t, origin, side="left")) for t, _, _ in streams)

    def _revalidate(self, inputs: _FeatureInputs) -> None:
        key = inputs.key()
        streams = inputs.streams()
        if key != self.key or len(streams) != len(self.streams):
            self.key, self.streams, self.entries = key, streams, {}
            return
        common = [_common_prefix(old, new) for old, new in zip(self.streams, streams,
                                                               strict=True)]
        kept = {}
        for origin, (names, matrix, counts) in self.entries.items():
            now = self._counts(streams, origin)
            if now == counts and all(c <= limit for c, limit in zip(counts, common,
                                                                      strict=True)):
                kept[origin] = (names, matrix, counts)
        self.streams, self.entries = streams, kept

    def features(self, inputs: _FeatureInputs, origins: np.ndarray,
                 rows: np.ndarray | None = None) -> tuple[np.ndarray, list[str]]:
        """Rows of every origin's features (origin-major), ``rows`` selecting some."""
        n_units = inputs.n_units
        if len(origins) == 0:
            names = inputs.origin_features(inputs.start())[0]
            return np.empty((0, len(names)), dtype=np.float32), names
        budget = self.budget()
        self._revalidate(inputs)
        first = self.entries.get(float(origins[0]))
        if first is None:
            names, matrix = inputs.origin_features(float(origins[0]))
            first = (names, matrix, self._counts(self.streams, float(origins[0])))
        use_cache = first[1].nbytes * len(origins) <= budget
        if not use_cache:  # too big to keep: free what is kept and stream the origins
            self.entries = {}
        blocks = []
        names = first[0]
        for k, origin in enumerate(origins):
            hit = first if k == 0 else self.entries.get(float(origin))
            if hit is None:
                names_k, matrix = inputs.origin_features(float(origin))
                hit = (names_k, matrix, self._counts(self.streams, float(origin)))
            if use_cache:
                self.entries[float(origin)] = hit
            matrix = hit[1]
            blocks.append(matrix if rows is None else matrix[rows[k * n_units:(k + 1) * n_units]])
        if use_cache:
            size = sum(m.nbytes for _, m, _ in self.entries.values())
            wanted = {float(o) for o in origins}
            for origin in sorted(self.entries):  # the oldest origins go first
                if size <= budget:
                    break
                if origin not in wanted:
                    size -= self.entries.pop(origin)[1].nbytes
        return np.concatenate(blocks), names


def _common_prefix(old: tuple[np.ndarray, ...], new: tuple[np.ndarray, ...]) -> int:
    """Length of the common prefix of two (times, units, weights) streams; O(n)."""
    length = min(len(old[0]), len(new[0]))
    same = np.ones(length, dtype=bool)
    for a, b in zip(old, new, strict=True):
        if a is b:
            continue
        same &= a[:length] == b[:length]
    mismatch = np.flatnonzero(~same)
    return int(mismatch[0]) if len(mismatch) else length


_FEATURE_CACHE = _FeatureCache()


def _row_max(matrix: sparse.csr_matrix, values: np.ndarray) -> np.ndarray:
    """Largest ``values[j]`` over each row's neighbours ``j`` (0 where none); O(nnz)."""
    gathered = values[matrix.indices]
    out = np.zeros(matrix.shape[0])
    starts = matrix.indptr[:-1]
    filled = np.diff(matrix.indptr) > 0
    if gathered.size:
        out[filled] = np.maximum.reduceat(gathered, starts[filled])
    return out


class BoostedPoisson(Forecaster):
    r"""Poisson gradient boosting (LightGBM) over multi-scale space-time features.

    Trained, for each window length, on (unit, past origin) pairs whose target windows end
    by the forecast origin; see the module docstring for the features. The expected count
    of unit ``u`` is :math:`\exp(F(x_u))` with ``F`` the boosted trees.

    Parameters
    ----------
    n_origins : int
        Past origins used for training (rows = n_origins x n_units before subsampling).
    origin_step_days : float
        Days between past origins.
    lookbacks_days : sequence of float
        Look-backs of the plain counts, days.
    half_lives_days : sequence of float
        Half-lives of the exponentially decayed counts, days.
    neighbour_scales : sequence of float, optional
        Gaussian neighbourhood scales, metres; default 1, 2 and 4 times the typical unit
        size.
    covariates : sequence of str or CovariateLayer
        Static risk-terrain layers (``placecast.covariates``), e.g. ``"bars.gpkg:count"``.
    leading_categories : sequence of str, optional
        Categories of the fitted events used only as leading indicators; the other
        events are the ones forecast. ``"all"``: every category except ``target``.
    target_categories : sequence of str, optional
        Categories forecast (default: all the fitted events, or all but the leading ones).
    n_trees : int
        Boosting rounds.
    learning_rate : float
        Shrinkage.
    num_leaves : int
        Leaves per tree.
    min_child_samples : int
        Least training rows per leaf.
    zero_fraction : float
        Share of the training rows without any event in their target window that are
        kept, weighted back up by its inverse (an unbiased Poisson likelihood); at least
        100,000 such rows are kept (all of them when there are fewer).
    random_state : int
        Seed of the subsampling and of LightGBM (results are deterministic for a seed).
    n_threads : int, optional
        LightGBM threads (None: all cores). One by default: backtests already run origins
        in parallel processes, and OpenMP threads competing for the same cores are far
        slower than one.

    Notes
    -----
    Fit cost per window length: features O(n_origins x (n_events + n_units x k)) plus
    LightGBM O(n_trees x rows x features); about a second for a city at 600 ft cells.
    """

    name = "boost"

    def __init__(
        self,
        *,
        n_origins: int = 104,
        origin_step_days: float = 7.0,
        lookbacks_days: Sequence[float] = (7.0, 28.0, 91.0, 365.0, 1095.0),
        half_lives_days: Sequence[float] = (14.0, 60.0, 365.0),
        neighbour_scales: Sequence[float] | None = None,
        covariates: Sequence[Any] = (),
        leading_categories: Sequence[str] | str | None = None,
        target_categories: Sequence[str] | str | None = None,
        n_trees: int = 200,
        learning_rate: float = 0.05,
        num_leaves: int = 15,
        min_child_samples: int = 100,
        zero_fraction: float = 0.05,
        random_state: int = 0,
        n_threads: int | None = 1,
    ) -> None:
        self.n_origins = n_origins
        self.origin_step_days = origin_step_days
        self.lookbacks_days = lookbacks_days
        self.half_lives_days = half_lives_days
        self.neighbour_scales = neighbour_scales
        self.covariates = covariates
        self.leading_categories = leading_categories
        self.target_categories = target_categories
        self.n_trees = n_trees
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.zero_fraction = zero_fraction
        self.random_state = random_state
        self.n_threads = n_threads

    # ------------------------------------------------------------------ fit
    def fit(self, events: Events) -> Self:
        """Validate the parameters and keep the events; returns ``self``.

        The boosting itself runs in ``predict``, once per window length and units, since
        the training targets are windows of the forecast's own length.
        """
        _require_lightgbm()
        self.n_origins_ = _positive_int(self.n_origins, "n_origins")
        self.origin_step_days_ = float(check_positive(self.origin_step_days,
                                                      "origin_step_days") or 7.0)
        self.lookbacks_days_ = _positive_list(self.lookbacks_days, "lookbacks_days")
        if len(self.lookbacks_days_) < 2:
            raise ParameterError("lookbacks_days needs at least two look-backs, e.g. 28,365.",
                                 param="lookbacks_days")
        self.half_lives_days_ = _positive_list(self.half_lives_days, "half_lives_days")
        self.neighbour_scales_ = (None if self.neighbour_scales is None
                                  else _positive_list(self.neighbour_scales, "neighbour_scales"))
        _positive_int(self.n_trees, "n_trees")
        _positive_int(self.num_leaves, "num_leaves")
        _positive_int(self.min_child_samples, "min_child_samples")
        check_positive(self.learning_rate, "learning_rate")
        fraction = check_positive(self.zero_fraction, "zero_fraction")
        if fraction is not None and fraction > 1:
            raise ParameterError(f"zero_fraction must be in (0, 1], got {fraction}.",
                                 param="zero_fraction")
        self.covariate_layers_ = _covariate_layers(self.covariates)
        target, leading = _split_categories(events, self.target_categories,
                                            self.leading_categories)
        self.events_ = target
        self.leading_ = leading
        if len(target) == 0:
            chosen = (" of the target categories" if self.target_categories is not None
                      or self.leading_categories is not None else "")
            raise DataError(f"no events{chosen} before the forecast start to learn from: move "
                            "the forecast date later or load earlier events.")
        self.boosters_: dict[tuple[int, float, float], Any] = {}
        self.contexts_: dict[int, tuple[Units, dict[str, Any]]] = {}
        return self

    # ------------------------------------------------------------------ predict
    def predict(self, units: Units, window: TimeWindow) -> Forecast:
        """Expected counts per unit: the boosted model applied to the origin's features."""
        forecast, _ = self._predict(units, window, explain=False)
        return forecast

    def explain(self, units: Units, window: TimeWindow) -> tuple[Forecast, pd.DataFrame]:
        """The forecast and each unit's feature contributions (log scale, LightGBM SHAP).

        Returns
        -------
        forecast : Forecast
        contributions : DataFrame
            One row per unit, one column per feature plus ``bias``; a unit's log
            expected count is the row sum.
        """
        forecast, contributions = self._predict(units, window, explain=True)
        assert contributions is not None
        return forecast, contributions

    def explained_forecast(self, units: Units, window: TimeWindow, *, n_features: int = 3
                           ) -> Forecast:
        """The forecast with, per unit, the ``n_features`` features that raised it most.

        Adds ``details`` columns ``reason_1 .. reason_n`` (feature names) and
        ``effect_1 .. effect_n`` (how many times the expected count that feature
        multiplies it by, relative to an average unit: ``exp`` of its contribution).
        """
        forecast, contributions = self.explain(units, window)
        features = contributions.drop(columns="bias")
        values = features.to_numpy()
        names = np.asarray(features.columns)
        top = np.argsort(-values, axis=1, kind="stable")[:, :n_features]
        rows = np.arange(len(values))[:, None]
        details = {}
        for j in range(top.shape[1]):
            effect = np.exp(values[rows[:, 0], top[:, j]])
            details[f"reason_{j + 1}"] = np.where(effect > 1.0, names[top[:, j]], "")
            details[f"effect_{j + 1}"] = np.round(np.maximum(effect, 1.0), 3)
        return Forecast(units=units, window=window, intensity=forecast.intensity,
                        model=forecast.model, params=forecast.params,
                        details=pd.DataFrame(details))

    def feature_importance(self, units: Units, window: TimeWindow) -> pd.DataFrame:
        """Gain importance of each feature for the booster of ``window``'s length."""
        booster, names = self._booster(units, window)
        gain = booster.feature_importance(importance_type="gain")
        splits = booster.feature_importance(importance_type="split")
        table = pd.DataFrame({"feature": names, "gain": gain, "splits": splits})
        total = table["gain"].sum()
        table["share"] = table["gain"] / total if total > 0 else 0.0
        return table.sort_values("gain", ascending=False, kind="stable").reset_index(drop=True)

    def _predict(self, units: Units, window: TimeWindow, *, explain: bool
                 ) -> tuple[Forecast, pd.DataFrame | None]:
        check_is_fitted(self)
        booster, names = self._booster(units, window)
        context = self._context(units)
        features = self._features(context, np.array([self._days(window.start)]), window.days)
        expected = booster.predict(features.values, num_threads=self._threads())
        intensity = np.clip(np.asarray(expected, dtype=float), 0.0, None)
        contributions = None
        if explain:
            raw = booster.predict(features.values, pred_contrib=True,
                                  num_threads=self._threads())
            contributions = pd.DataFrame(raw, columns=[*names, "bias"])
        forecast = self._make_forecast(units, window, intensity,
                                       n_training_rows=self._last_rows)
        return forecast, contributions

    # ------------------------------------------------------------------ internals
    def _threads(self) -> int:
        if self.n_threads is not None:
            return _positive_int(self.n_threads, "n_threads")
        return max(os.cpu_count() or 1, 1)

    def _days(self, moment: Any) -> float:
        epoch = self._epoch()
        elapsed = np.asarray(np.datetime64(moment, "ns") - epoch, dtype="timedelta64[ns]")
        return float(elapsed.astype(np.int64) / _DAY_NS)

    def _epoch(self) -> np.datetime64:
        return np.datetime64("1970-01-01T00:00:00", "ns")

    def _context(self, units: Units) -> dict[str, Any]:
        cached = self.contexts_.get(id(units))
        if cached is not None and cached[0] is units:
            return cached[1]
        events = self.events_.sorted_by_time()
        scales = self.neighbour_scales_
        if scales is None:
            size = units.typical_size
            scales = [size, 2.0 * size, 4.0 * size]
        neighbours = [(f"{s:.0f}m", Neighbourhood(units, s)) for s in scales]
        auxiliary = []
        if self.leading_ is not None and len(self.leading_):
            lead = self.leading_.sorted_by_time()
            auxiliary.append(("leading", self._times(lead), units.assign(lead.x, lead.y),
                              lead.weights))
        static = None
        if self.covariate_layers_:
            from placecast.covariates import covariate_features

            table = covariate_features(units, self.covariate_layers_)
            static = FeatureSet(list(table.names), np.asarray(table.values, dtype=np.float32))
        context = {
            "times": self._times(events),
            "units": units.assign(events.x, events.y),
            "weights": events.weights,
            "neighbours": neighbours,
            "auxiliary": auxiliary,
            "static": static,
            "n_units": len(units),
        }
        self.contexts_ = {id(units): (units, context)}  # keep only the latest units
        return context

    def _times(self, events: Events) -> np.ndarray:
        return (events.time - self._epoch()) / np.timedelta64(1, "ns") / _DAY_NS

    def _features(self, context: dict[str, Any], origins: np.ndarray,
                  window_days: float, rows: np.ndarray | None = None) -> FeatureSet:
        return space_time_features(
            context["times"], context["units"], context["weights"], origins,
            context["n_units"], lookbacks_days=self.lookbacks_days_,
            half_lives_days=self.half_lives_days_, neighbours=context["neighbours"],
            window_days=window_days, auxiliary=context["auxiliary"], static=context["static"],
            rows=rows)

    def _booster(self, units: Units, window: TimeWindow) -> tuple[Any, list[str]]:
        """Train (or reuse) the booster for this window's length and start."""
        key = (id(units), round(window.days, 6), self._days(window.start))
        if key in self.boosters_:
            booster, names, self._last_rows = self.boosters_[key]
            return booster, names
        import lightgbm

        context = self._context(units)
        times = context["times"]
        t0 = self._days(window.start)
        width = window.days
        first_allowed = times[0] + min(self.lookbacks_days_[1], 28.0)
        origins = t0 - width - self.origin_step_days_ * np.arange(self.n_origins_)
        origins = origins[origins >= first_allowed][::-1]
        if len(origins) == 0:
            raise DataError(
                f"the {window.days:g}-day window from {window} leaves no past origin to learn "
                "from: the boost model needs history of at least one window plus 28 days "
                "before the forecast date."
            )
        target = _window_counts(times, context["units"], context["weights"], origins, width,
                                context["n_units"])
        rng = np.random.default_rng(self.random_state)
        quiet = target == 0
        # subsample the zero rows only where there are many (at least 100,000 are kept)
        fraction = min(1.0, max(float(self.zero_fraction), 100_000 / max(int(quiet.sum()), 1)))
        keep = ~quiet | (rng.random(len(target)) < fraction)
        sample_weight = np.where(quiet, 1.0 / fraction, 1.0)[keep]
        features = self._features(context, origins, width, rows=keep)
        data = lightgbm.Dataset(features.values, label=target[keep], weight=sample_weight,
                                feature_name=[_safe(n) for n in features.names],
                                free_raw_data=True)
        monotone = [_monotone(name) for name in features.names]
        params = {
            "objective": "poisson",
            "monotone_constraints": monotone,
            "learning_rate": float(self.learning_rate),
            "num_leaves": int(self.num_leaves),
            "min_data_in_leaf": int(self.min_child_samples),
            "feature_fraction": 0.8,
            "bagging_fraction": 0.8,
            "bagging_freq": 1,
            "lambda_l2": 1.0,
            "seed": int(self.random_state),
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": self._threads(),
            "verbose": -1,
        }
        booster = lightgbm.train(params, data, num_boost_round=int(self.n_trees))
        self._last_rows = int(keep.sum())
        self.boosters_ = {key: (booster, features.names, self._last_rows)}  # the latest only
        return booster, features.names


def _window_counts(times: np.ndarray, unit_index: np.ndarray, weights: np.ndarray,
                   origins: np.ndarray, width: float, n_units: int) -> np.ndarray:
    """Events of each unit in ``[origin, origin + width)`` for every origin, origin-major."""
    out = np.empty(len(origins) * n_units)
    for k, origin in enumerate(origins):
        lo = int(np.searchsorted(times, origin, side="left"))
        hi = int(np.searchsorted(times, origin + width, side="left"))
        u, w = unit_index[lo:hi], weights[lo:hi]
        ok = u >= 0
        out[k * n_units:(k + 1) * n_units] = np.bincount(u[ok], weights=w[ok], minlength=n_units)
    return out


def _monotone(name: str) -> int:
    """+1: more past events never lower the forecast; -1: nor does a more recent one."""
    if "days_since" in name:
        return -1
    if name.startswith(("count_", "decay_", "nbr")) or "_count_" in name:
        return 1
    return 0


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in name)


def _require_lightgbm() -> None:
    try:
        import lightgbm  # noqa: F401
    except ImportError:  # pragma: no cover - lightgbm is a core dependency
        raise ParameterError(
            "the boost model needs LightGBM: pip install lightgbm"
        ) from None


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
        raise ParameterError(f"{name} must be a positive whole number, got {value!r}.", param=name)
    return int(value)


def _positive_list(values: Any, name: str) -> list[float]:
    if isinstance(values, str):
        values = [v for v in values.replace(";", ",").split(",") if v.strip()]
    if isinstance(values, int | float):
        values = [values]
    out = []
    for value in values:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ParameterError(f"{name} must be positive numbers, got {value!r}.",
                                 param=name) from None
        out.append(float(check_positive(number, name) or 0.0))
    if not out:
        raise ParameterError(f"{name} needs at least one value.", param=name)
    return sorted(set(out))


def _covariate_layers(covariates: Any) -> list[Any]:
    if covariates is None:
        return []
    if isinstance(covariates, str):
        covariates = [c for c in covariates.split(";") if c.strip()]
    layers = []
    for item in covariates:
        if isinstance(item, str):
            from placecast.covariates import parse_covariate

            layers.append(parse_covariate(item))
        else:
            layers.append(item)
    return layers


def _as_list(value: Sequence[str] | str | None) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]


def _split_categories(events: Events, target: Sequence[str] | str | None,
                      leading: Sequence[str] | str | None) -> tuple[Events, Events | None]:
    target_list, leading_list = _as_list(target), _as_list(leading)
    if target_list is None and leading_list is None:
        return events, None
    if events.category is None:
        raise ParameterError(
            "target_categories / leading_categories need events with a category column.",
            param=("target_categories", "leading_categories")
        )
    present = set(events.categories())
    for label, chosen in (("target_categories", target_list),
                          ("leading_categories", leading_list)):
        missing = sorted(set(chosen or []) - present - {"all"})
        if missing:
            raise ParameterError(
                f"{label}: no events of {', '.join(missing)} (categories present: "
                f"{', '.join(sorted(present))}).", param=label
            )
    category = events.category.astype(str)
    if target_list is None:
        assert leading_list is not None
        is_target = ~np.isin(category, leading_list)
    else:
        is_target = np.isin(category, target_list)
    if leading_list is None or leading_list == ["all"]:
        is_leading = ~is_target
    else:
        is_leading = np.isin(category, leading_list) & ~is_target
    return events.select(is_target), events.select(is_leading)

"""Prospective space-time permutation scan statistic (Kulldorff et al. 2005), as SaTScan runs it."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numba
import numpy as np
import pandas as pd

from placecast.exceptions import DataError, ParameterError

__all__ = [
    "EARTH_RADIUS_KM",
    "ScanCluster",
    "ScanData",
    "ScanResult",
    "SpaceTimeScan",
    "scan_data_from_events",
]

#: Sphere radius SaTScan uses for latitude/longitude coordinates, km.
EARTH_RADIUS_KM = 6367.0

_BATCH = 64  # replicates per batch: fixed, so results do not depend on the thread count

#: SaTScan's random number generator: the Park & Miller (1988) "minimal standard" Lehmer
#: generator with multiplier 48271, modulus 2**31 - 1, and SaTScan's default initial seed.
#: Replication ``r`` (1, 2, ...) starts from seed ``SATSCAN_DEFAULT_SEED + r``.
LEHMER_MODULUS = 2_147_483_647
LEHMER_MULTIPLIER = 48_271
SATSCAN_DEFAULT_SEED = 12_345_678

#: SaTScan counts a replication as beating a cluster when its statistic exceeds the
#: cluster's by at least this much (its DBL_CMP_TOLERANCE): ties do not count.
SATSCAN_TOLERANCE = 1e-9

RANDOMIZATIONS = ("numpy", "satscan")
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


# ---------------------------------------------------------------------------- input data
@dataclass(frozen=True)
class ScanData:
    """Cases per location and time interval, ready to scan.

    Parameters
    ----------
    location_ids : ndarray of str
        One id per location (``n_locations``).
    coordinates : ndarray of float
        ``(n_locations, 2)`` planar ``x, y`` (``coordinate_system`` "cartesian") or
        ``latitude, longitude`` in degrees ("latlon").
    case_location : ndarray of int
        Location index of every case (cases with count ``k`` appear ``k`` times).
    case_interval : ndarray of int
        Time-interval index (``0 .. n_intervals - 1``) of every case.
    interval_labels : sequence of (str, str)
        First and last time of each interval, as printed in reports.
    coordinate_system : {"cartesian", "latlon"}
        How to measure distance: Euclidean, or chords on a sphere of radius
        ``EARTH_RADIUS_KM`` (as SaTScan does; radii are reported in km along the surface).
    time_unit : str
        Name of one time unit ("unit", "day").
    interval_length : float
        Time units per interval (the recurrence interval is reported in time units).
    study_period : (str, str)
        First and last time of the study period, as printed.
    crs : str, optional
        CRS of planar coordinates, for GeoJSON output.
    metres_per_unit : float
        Metres per unit of ``crs`` (planar coordinates are in metres; GeoJSON divides by
        this before projecting).
    location_extent : float
        Half the size of the area a location stands for (e.g. half a cell's diagonal);
        added to cluster radii when drawing cluster areas.
    """

    location_ids: np.ndarray
    coordinates: np.ndarray
    case_location: np.ndarray
    case_interval: np.ndarray
    interval_labels: Sequence[tuple[str, str]]
    coordinate_system: str = "cartesian"
    time_unit: str = "unit"
    interval_length: float = 1.0
    study_period: tuple[str, str] = ("", "")
    crs: str | None = None
    metres_per_unit: float = 1.0
    location_extent: float = 0.0

    def __post_init__(self) -> None:
        ids = np.asarray(self.location_ids, dtype=object)
        coords = np.asarray(self.coordinates, dtype=float)
        loc = np.asarray(self.case_location, dtype=np.int64)
        interval = np.asarray(self.case_interval, dtype=np.int64)
        if coords.shape != (len(ids), 2):
            raise DataError(f"scan coordinates must have shape ({len(ids)}, 2), got "
                            f"{coords.shape}.")
        if not np.isfinite(coords).all():
            raise DataError("scan coordinates must be finite numbers.")
        if loc.shape != interval.shape:
            raise DataError("case_location and case_interval differ in length.")
        if len(loc) and (loc.min() < 0 or loc.max() >= len(ids)):
            raise DataError("a case refers to a location index outside the location list.")
        n_int = len(self.interval_labels)
        if len(interval) and (interval.min() < 0 or interval.max() >= n_int):
            raise DataError("a case falls outside the study period's time intervals.")
        if self.coordinate_system not in ("cartesian", "latlon"):
            raise ParameterError(f"coordinate_system must be 'cartesian' or 'latlon', got "
                                 f"{self.coordinate_system!r}.")
        object.__setattr__(self, "location_ids", ids)
        object.__setattr__(self, "coordinates", coords)
        object.__setattr__(self, "case_location", loc)
        object.__setattr__(self, "case_interval", interval)
        object.__setattr__(self, "interval_labels", tuple(tuple(p) for p in self.interval_labels))

    @property
    def n_locations(self) -> int:
        """Number of locations (every one is a circle centre)."""
        return len(self.location_ids)

    @property
    def n_intervals(self) -> int:
        """Number of time intervals in the study period."""
        return len(self.interval_labels)

    @property
    def n_cases(self) -> int:
        """Total number of cases."""
        return len(self.case_location)

    def distance_space(self) -> np.ndarray:
        """Coordinates in which Euclidean distance is the scan distance.

        Planar coordinates as given; latitude/longitude as 3-D points on a sphere of radius
        ``EARTH_RADIUS_KM`` (chord distances, km).
        """
        if self.coordinate_system == "cartesian":
            return self.coordinates
        lat = np.radians(self.coordinates[:, 0])
        lon = np.radians(self.coordinates[:, 1])
        return np.column_stack([
            EARTH_RADIUS_KM * np.cos(lat) * np.cos(lon),
            EARTH_RADIUS_KM * np.cos(lat) * np.sin(lon),
            EARTH_RADIUS_KM * np.sin(lat),
        ])

    def surface_distance(self, chord: np.ndarray | float) -> np.ndarray | float:
        """Turn a scan distance into the reported radius (km along the sphere for lat/lon)."""
        if self.coordinate_system == "cartesian":
            return chord
        ratio = np.clip(np.asarray(chord) / (2 * EARTH_RADIUS_KM), 0.0, 1.0)
        return 2 * EARTH_RADIUS_KM * np.arcsin(ratio)


def parse_step(text: str) -> pd.Timedelta:
    """Parse a time step such as ``"1d"``, ``"7d"``, ``"12h"`` or ``"2w"`` into a Timedelta.

    Uses :func:`placecast.quantities.parse_duration`, so a bare number (``"30"``) is
    refused rather than read in some unit.
    """
    from placecast.quantities import parse_duration

    duration = parse_duration(text, name="time step")
    if duration.unit == "M":
        raise ParameterError(f"time step {text!r}: calendar months differ in length; give "
                             "a fixed step such as 30d or 4w.")
    return pd.Timedelta(days=duration.amount)


def scan_data_from_events(
    events: Any,
    *,
    at: Any = None,
    interval: str = "1d",
    n_intervals: int | None = None,
    units: Any = None,
    round_to: float | None = None,
) -> ScanData:
    """Turn placecast events into scan locations and daily (or longer) time intervals.

    Locations are either the centroids of ``units`` holding the events (events outside
    every unit are an error), or the event coordinates rounded to a ``round_to``-metre
    lattice (exact coordinates when both are ``None``). Intervals of length ``interval``
    are laid back from the analysis time ``at`` (default: the end of the day of the last
    event); the study period is the ``n_intervals`` intervals before ``at`` (default: all
    intervals back to the first event). Events at or after ``at`` are ignored.

    Parameters
    ----------
    events : Events
        The events (projected metres).
    at : date-like, optional
        The analysis time; the study period ends just before it.
    interval : str
        Interval length, e.g. ``"1d"``, ``"7d"``, ``"12h"``, or calendar months
        (``"1M"``: intervals run from the same day of one month to the next).
    n_intervals : int, optional
        Study period length in intervals.
    units : Units, optional
        Area units whose centroids become the locations.
    round_to : float, optional
        Lattice spacing in metres for locations made from coordinates.

    Returns
    -------
    ScanData
        Cartesian coordinates in metres; time unit ``"day"``.
    """
    from placecast.quantities import parse_duration

    duration = parse_duration(interval, name="interval")
    months = int(duration.amount) if duration.unit == "M" else 0
    step = parse_step(interval) if not months else None
    if len(events) == 0:
        raise DataError("there are no events to scan.")
    times = pd.DatetimeIndex(events.time)
    end = pd.Timestamp(at) if at is not None else times.max().normalize() + pd.Timedelta("1D")
    keep = np.asarray(times < end)
    if n_intervals is None:
        if not keep.any():
            n_intervals = 1
        elif months:
            first_time, n_intervals = times[keep].min(), 1
            while end - pd.DateOffset(months=months * n_intervals) > first_time:
                n_intervals += 1
        else:
            n_intervals = int(math.ceil((end - times[keep].min()) / step))
    if n_intervals < 1:
        raise ParameterError(f"n_intervals must be at least 1, got {n_intervals}.")
    month_edges = None
    if months:
        month_edges = pd.DatetimeIndex(
            [end - pd.DateOffset(months=months * (n_intervals - k))
             for k in range(n_intervals + 1)])
        start = month_edges[0]
    else:
        start = end - n_intervals * step
    keep &= np.asarray(times >= start)
    if not keep.any():
        raise DataError(f"no events fall in the study period {start} .. {end}.")
    ev = events.select(keep)
    if month_edges is not None:
        t_index = month_edges.searchsorted(pd.DatetimeIndex(ev.time), side="right") - 1
    else:
        t_index = np.floor((pd.DatetimeIndex(ev.time) - start) / step).astype(np.int64)
    t_index = np.clip(np.asarray(t_index, dtype=np.int64), 0, n_intervals - 1)
    if units is not None:
        unit_index = units.assign(ev.x, ev.y)
        if (unit_index < 0).any():
            raise DataError(f"{int((unit_index < 0).sum())} events fall in no area unit; give "
                            "a region that covers them or drop them first.")
        used, loc = np.unique(unit_index, return_inverse=True)
        coords = units.centroids[used]
        ids = np.asarray(units.unit_id, dtype=object)[used]
        extent = units.typical_size * math.sqrt(0.5)
    else:
        xy = np.column_stack([ev.x, ev.y])
        extent = (round_to or 0.0) * math.sqrt(0.5)
        if round_to:
            if round_to <= 0:
                raise ParameterError(f"round_to must be positive metres, got {round_to}.")
            xy = np.round(xy / round_to) * round_to
        coords, loc = np.unique(xy, axis=0, return_inverse=True)
        ids = np.asarray([f"{x:.0f}_{y:.0f}" for x, y in coords], dtype=object)
    weights = ev.weights
    if not np.allclose(weights, np.round(weights)):
        raise DataError("the scan counts cases: event weights must be whole numbers.")
    reps = np.round(weights).astype(np.int64)
    day = pd.Timedelta("1D")
    labels = []
    for i in range(n_intervals):
        if month_edges is not None:
            first, last = month_edges[i], month_edges[i + 1] - day
            labels.append((first.strftime("%Y/%m/%d"), last.strftime("%Y/%m/%d")))
            continue
        first = start + i * step
        last = first + step - (day if step >= day and step % day == pd.Timedelta(0)
                               else pd.Timedelta(0))
        fmt = "%Y/%m/%d" if step % day == pd.Timedelta(0) else "%Y/%m/%d %H:%M"
        labels.append((first.strftime(fmt), last.strftime(fmt)))
    return ScanData(
        location_ids=ids,
        coordinates=coords,
        case_location=np.repeat(np.ravel(loc), reps),
        case_interval=np.repeat(t_index, reps),
        interval_labels=labels,
        coordinate_system="cartesian",
        time_unit="day",
        # months: their mean length in days (recurrence intervals are in days)
        interval_length=duration.days if months else step / day,
        study_period=(labels[0][0], labels[-1][1]),
        crs=events.crs,
        metres_per_unit=events.spatial_reference.metres_per_unit,
        location_extent=extent,
    )


# ---------------------------------------------------------------------------- results
@dataclass(frozen=True)
class ScanCluster:
    """One reported cluster: a cylinder (circle x time window ending at the study end).

    Attributes
    ----------
    rank : int
        1 for the most likely cluster, then secondary clusters by test statistic.
    centre_id : str
        Location at the circle's centre.
    centre : (float, float)
        Its coordinates (``x, y`` or ``latitude, longitude``).
    radius : float
        Distance to the farthest included location (km for lat/lon).
    location_ids : tuple of str
        Included locations, nearest first.
    start_interval, end_interval : int
        First and last time interval of the window.
    time_frame : (str, str)
        First and last time of the window, as printed.
    observed : int
        Cases in the cylinder, ``n``.
    expected : float
        ``mu = C_z * C_d / C``.
    test_statistic : float
        Log likelihood ratio.
    p_value : float
        Monte Carlo or Gumbel p-value, as ``p_value_method`` says (``nan`` without
        replications).
    recurrence_interval : float
        Expected time between clusters this strong under the null, in time units
        (``interval_length / p_value``: one analysis per interval).
    p_value_method : {"monte_carlo", "gumbel"}
        How ``p_value`` was computed.
    """

    rank: int
    centre_id: str
    centre: tuple[float, float]
    radius: float
    location_ids: tuple[str, ...]
    start_interval: int
    end_interval: int
    time_frame: tuple[str, str]
    observed: int
    expected: float
    test_statistic: float
    p_value: float
    recurrence_interval: float
    p_value_method: str = "monte_carlo"

    @property
    def observed_over_expected(self) -> float:
        """``n / mu``."""
        return self.observed / self.expected if self.expected > 0 else math.inf

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        return {
            "rank": self.rank,
            "centre_id": self.centre_id,
            "centre": list(self.centre),
            "radius": self.radius,
            "location_ids": list(self.location_ids),
            "n_locations": len(self.location_ids),
            "start": self.time_frame[0],
            "end": self.time_frame[1],
            "observed": self.observed,
            "expected": self.expected,
            "observed_over_expected": self.observed_over_expected,
            "test_statistic": self.test_statistic,
            "p_value": self.p_value,
            "p_value_method": self.p_value_method,
            "recurrence_interval": self.recurrence_interval,
        }


@dataclass(frozen=True)
class ScanResult:
    """What a space-time permutation scan found.

    Attributes
    ----------
    clusters : tuple of ScanCluster
        Most likely cluster first, then secondary clusters that share no location with
        any earlier one.
    n_locations, n_cases : int
        Size of the data.
    study_period : (str, str)
        First and last time of the study period.
    n_permutations : int
        Replications run (fewer than requested when the sequential procedure stopped).
    n_permutations_requested : int
        Replications asked for.
    stopped_early : bool
        Whether the sequential Monte Carlo procedure stopped the run.
    simulated_statistics : ndarray
        Maximum log likelihood ratio of each replication.
    coordinate_system : str
        "cartesian" or "latlon".
    time_unit : str
        Name of the time unit of ``recurrence_interval``.
    parameters : dict
        The settings of the scan.
    crs : str, optional
        CRS of planar coordinates.
    """

    clusters: tuple[ScanCluster, ...]
    n_locations: int
    n_cases: int
    study_period: tuple[str, str]
    n_permutations: int
    n_permutations_requested: int
    stopped_early: bool
    simulated_statistics: np.ndarray = field(repr=False)
    coordinate_system: str = "cartesian"
    time_unit: str = "unit"
    parameters: dict[str, Any] = field(default_factory=dict)
    crs: str | None = None
    location_coordinates: dict[str, tuple[float, float]] = field(default_factory=dict,
                                                                 repr=False)
    metres_per_unit: float = 1.0
    location_extent: float = 0.0

    @property
    def most_likely(self) -> ScanCluster | None:
        """The most likely cluster (``None`` when no cylinder has more cases than expected)."""
        return self.clusters[0] if self.clusters else None

    def significant(self, alpha: float = 0.05) -> tuple[ScanCluster, ...]:
        """Clusters with ``p_value <= alpha``."""
        return tuple(c for c in self.clusters if c.p_value <= alpha)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (without the simulated statistics)."""
        return {
            "n_locations": self.n_locations,
            "n_cases": self.n_cases,
            "study_period": list(self.study_period),
            "n_permutations": self.n_permutations,
            "n_permutations_requested": self.n_permutations_requested,
            "stopped_early": self.stopped_early,
            "coordinate_system": self.coordinate_system,
            "time_unit": self.time_unit,
            "parameters": dict(self.parameters),
            "crs": self.crs,
            "clusters": [c.to_dict() for c in self.clusters],
        }

    def to_frame(self) -> pd.DataFrame:
        """One row per cluster (location ids joined by ``;``)."""
        rows = []
        for c in self.clusters:
            row = c.to_dict()
            row["centre_x"], row["centre_y"] = row.pop("centre")
            row["location_ids"] = ";".join(c.location_ids)
            rows.append(row)
        columns = ["rank", "centre_id", "centre_x", "centre_y", "radius", "n_locations",
                   "location_ids", "start", "end", "observed", "expected",
                   "observed_over_expected", "test_statistic", "p_value",
                   "recurrence_interval"]
        return pd.DataFrame(rows, columns=columns)

    def cluster_geometry(self, cluster: ScanCluster, n_vertices: int = 64) -> dict[str, Any]:
        """GeoJSON polygon of the cluster's circle (lon/lat when known, else planar).

        The circle's radius is the cluster radius plus ``location_extent`` (so a cluster of
        one grid cell covers the cell).

        For lat/lon data the circle is drawn on the sphere; for planar data in a known CRS
        it is transformed to WGS 84; for local planar data it stays in data units.
        """
        angles = np.linspace(0, 2 * np.pi, n_vertices, endpoint=False)
        radius = max(cluster.radius, 0.0) + self.location_extent
        if self.coordinate_system == "latlon":
            lat0, lon0 = np.radians(cluster.centre[0]), np.radians(cluster.centre[1])
            d = max(radius, 0.05) / EARTH_RADIUS_KM
            lat = np.arcsin(np.sin(lat0) * np.cos(d) + np.cos(lat0) * np.sin(d) * np.cos(angles))
            lon = lon0 + np.arctan2(np.sin(angles) * np.sin(d) * np.cos(lat0),
                                    np.cos(d) - np.sin(lat0) * np.sin(lat))
            ring = np.column_stack([np.degrees(lon), np.degrees(lat)])
        else:
            r = radius if radius > 0 else 1.0
            ring = np.column_stack([cluster.centre[0] + r * np.cos(angles),
                                    cluster.centre[1] + r * np.sin(angles)])
            if self.crs and not self.crs.startswith("local"):
                from pyproj import Transformer

                tr = Transformer.from_crs(self.crs, "EPSG:4326", always_xy=True)
                lon, lat = tr.transform(ring[:, 0] / self.metres_per_unit,
                                        ring[:, 1] / self.metres_per_unit)
                ring = np.column_stack([lon, lat])
        ring = np.vstack([ring, ring[:1]])
        return {"type": "Polygon", "coordinates": [np.round(ring, 7).tolist()]}

    def to_geojson(self) -> dict[str, Any]:
        """Return a GeoJSON FeatureCollection: one circle per cluster with its numbers."""
        features = []
        for c in self.clusters:
            props = c.to_dict()
            props["location_ids"] = ";".join(c.location_ids)
            props["centre"] = ",".join(str(v) for v in c.centre)
            features.append({"type": "Feature", "properties": props,
                             "geometry": self.cluster_geometry(c)})
        out: dict[str, Any] = {"type": "FeatureCollection", "features": features}
        if self.coordinate_system != "latlon" and (not self.crs or self.crs.startswith("local")):
            out["properties"] = {"coordinates": "planar data units (no CRS)"}
        return out


# ---------------------------------------------------------------------------- kernels
@numba.njit(cache=True)
def _llr(n: float, mu: float, total: float) -> float:
    value = n * math.log(n / mu)
    if total - n > 0:
        value += (total - n) * math.log((total - n) / (total - mu))
    return value


@numba.njit(cache=True)
def _best_per_centre(nb_ptr, nb_idx, tail, loc_total, win_total, total, min_cases):  # noqa: ANN001
    """Best cylinder per centre: O(sum over centres of n_neighbours x n_windows).

    Windows are ordered by length, so counts grow with ``j``. A neighbour with no case in
    the longest window only enlarges ``mu`` (the LLR cannot rise), so it is skipped; the
    window loop stops at the first window with fewer than ``min_cases`` cases.
    """
    n_centres = nb_ptr.shape[0] - 1
    n_windows = tail.shape[1]
    last = n_windows - 1
    best = np.zeros(n_centres)
    best_k = np.full(n_centres, -1, dtype=np.int64)
    best_j = np.full(n_centres, -1, dtype=np.int64)
    cum = np.zeros(n_windows)
    for c in range(n_centres):
        cum[:] = 0.0
        zone = 0.0
        for p in range(nb_ptr[c], nb_ptr[c + 1]):
            loc = nb_idx[p]
            zone += loc_total[loc]
            if tail[loc, last] == 0.0:
                continue
            for j in range(n_windows):
                cum[j] += tail[loc, j]
            for j in range(last, -1, -1):
                n = cum[j]
                if n < min_cases:
                    break
                mu = zone * win_total[j] / total
                if n > mu:
                    value = _llr(n, mu, total)
                    if value > best[c]:
                        best[c] = value
                        best_k[c] = p - nb_ptr[c]
                        best_j[c] = j
    return best, best_k, best_j


@numba.njit(cache=True)
def _tails(case_loc, case_t, n_loc, first, offsets, width):  # noqa: ANN001
    """Cases per location in each window ``[first + offset_j, end)``."""
    counts = np.zeros((n_loc, width))
    for i in range(case_loc.shape[0]):
        t = case_t[i] - first
        if t >= 0:
            counts[case_loc[i], t] += 1.0
    for loc in range(n_loc):
        for t in range(width - 2, -1, -1):
            counts[loc, t] += counts[loc, t + 1]
    tail = np.empty((n_loc, offsets.shape[0]))
    for loc in range(n_loc):
        for j in range(offsets.shape[0]):
            tail[loc, j] = counts[loc, offsets[j]]
    return tail


@numba.njit(parallel=True, cache=True)
def _replicates(perm_loc, case_t, n_loc, first, offsets, width, nb_ptr, nb_idx,  # noqa: ANN001
                loc_total, win_total, total, min_cases):
    """Maximum LLR of each replication (row of ``perm_loc``), in parallel threads."""
    n_rep = perm_loc.shape[0]
    out = np.zeros(n_rep)
    for b in numba.prange(n_rep):
        tail = _tails(perm_loc[b], case_t, n_loc, first, offsets, width)
        best = _best_per_centre(nb_ptr, nb_idx, tail, loc_total, win_total, total,
                                min_cases)[0]
        out[b] = best.max() if best.shape[0] else 0.0
    return out


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


def case_listing(data: ScanData, *, latest_first: bool = False) -> np.ndarray:
    """Order of the cases by time interval, then by location id (UTF-8 byte order).

    SaTScan indexes locations by their ids in byte order and lists cases latest interval
    first (``latest_first=True``); the NumPy replications use the ascending listing so
    that results do not depend on the order of the input rows.
    """
    ids = [str(v).encode("utf-8") for v in data.location_ids]
    location_rank = np.empty(len(ids), dtype=np.int64)
    location_rank[sorted(range(len(ids)), key=ids.__getitem__)] = np.arange(len(ids))
    interval = -data.case_interval if latest_first else data.case_interval
    return np.lexsort((location_rank[data.case_location], interval))


@numba.njit(cache=True)
def lehmer_uniforms(seed: int, n: int) -> np.ndarray:
    """Draw ``n`` single-precision uniforms as SaTScan's generator does from ``seed``.

    Each draw advances ``seed <- 48271 * seed mod (2**31 - 1)`` and returns
    ``float32(seed) / float32(2**31 - 1)`` (SaTScan's ``GetRandomFloat``).

    Parameters
    ----------
    seed : int
        Starting seed, ``0 < seed < 2**31 - 1``.
    n : int
        Number of draws.

    Returns
    -------
    ndarray of float32
        The draws, in (0, 1].

    References
    ----------
    Park S.K. & Miller K.W. (1988). Random number generators: good ones are hard to find.
    Communications of the ACM 31(10), 1192-1201.
    """
    out = np.empty(n, dtype=np.float32)
    modulus = np.float32(LEHMER_MODULUS)
    state = np.int64(seed)
    for k in range(n):
        state = (LEHMER_MULTIPLIER * state) % LEHMER_MODULUS
        out[k] = np.float32(state) / modulus
    return out


@numba.njit(parallel=True, cache=True)
def _satscan_permutations(stationary_loc, recent, seeds):  # noqa: ANN001
    """Locations of the cases in ``recent`` in each replication, as SaTScan permutes them.

    SaTScan lists the cases by time interval (latest first), then location; gives each
    case's time a uniform draw from the replication's own stream; sorts the times by draw
    and hands them back to the list in order. The case at list position ``j`` keeps its
    time in the replication when its draw ranks ``k``-th, and then sits at the location of
    position ``k``. O(C log C) per replication for ``C`` cases; replications in parallel.
    Equal draws (possible in single precision) keep list order; SaTScan's unstable sort
    may order them differently.
    """
    n_cases = stationary_loc.shape[0]
    out = np.empty((seeds.shape[0], recent.shape[0]), dtype=np.int64)
    for b in numba.prange(seeds.shape[0]):
        draws = lehmer_uniforms(seeds[b], n_cases)
        order = np.argsort(draws, kind="mergesort")
        rank = np.empty(n_cases, dtype=np.int64)
        for k in range(n_cases):
            rank[order[k]] = k
        for i in range(recent.shape[0]):
            out[b, i] = stationary_loc[rank[recent[i]]]
    return out


# ---------------------------------------------------------------------------- the scan
class SpaceTimeScan:
    r"""Prospective space-time permutation scan statistic (SaTScan's model 2, analysis 4).

    Cylinders have a circular base centred on each location, growing through its nearest
    neighbours (ties broken by smaller x, then y, as SaTScan does) up to ``max_share`` of
    all cases and ``max_radius``, and a time window that ends at the end of the study
    period and spans ``min_intervals .. max_intervals`` intervals. With ``C`` cases in all,
    ``C_z`` at the circle's locations over the whole period and ``C_d`` anywhere in the
    window, the expected count under no space-time interaction is

    .. math:: \mu = C_z C_d / C

    and a cylinder with ``n > mu`` cases scores the Poisson generalised log likelihood ratio

    .. math:: \mathrm{LLR} = n \ln\frac{n}{\mu} + (C - n)\ln\frac{C - n}{C - \mu}.

    The most likely cluster maximises the LLR. Its p-value is Monte Carlo: case times are
    permuted over cases (keeping every location's and every interval's total) and the
    maximum LLR recomputed, ``p = (1 + #{sim >= obs}) / (1 + R)``; with
    ``early_stop = h`` the sequential procedure of Besag & Clifford (1991) stops at the
    ``h``-th exceedance after ``L`` replications with ``p = h / L`` (SaTScan's default).
    The recurrence interval is ``interval_length / p`` time units (one analysis per
    interval). Secondary clusters: each centre's best cylinder, in decreasing LLR, kept
    when it shares no location with a cluster already kept; their p-values use the same
    simulated maxima, and (as in SaTScan) a secondary cluster is reported only when at
    least one replication's maximum fell below its LLR.

    Two sources of replications (``randomization``):

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
        Largest share of all cases a circle may hold over the study period (0 < s <= 0.5).
    max_radius : float, optional
        Largest circle radius, in coordinate units (km for lat/lon).
    min_intervals : int
        Shortest time window, in intervals.
    max_intervals : int, optional
        Longest time window, in intervals; default half the study period (rounded down).
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
                 p_values: str = "monte_carlo") -> None:
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

    def get_params(self) -> dict[str, Any]:
        """Return the constructor parameters."""
        return {k: getattr(self, k) for k in (
            "max_share", "max_radius", "min_intervals", "max_intervals", "n_permutations",
            "early_stop", "min_cases", "max_clusters", "random_state", "n_jobs",
            "randomization", "p_values")}

    # ------------------------------------------------------------------ validation
    def _check(self, data: ScanData) -> tuple[int, int]:
        if not 0 < self.max_share <= 0.5:
            raise ParameterError(f"max_share must be in (0, 0.5], got {self.max_share}.")
        if self.max_radius is not None and not self.max_radius >= 0:
            raise ParameterError(f"max_radius must be >= 0, got {self.max_radius}.")
        if int(self.n_permutations) < 0:
            raise ParameterError(f"n_permutations must be >= 0, got {self.n_permutations}.")
        if self.early_stop is not None and int(self.early_stop) < 1:
            raise ParameterError(f"early_stop must be >= 1, got {self.early_stop}.")
        if int(self.min_cases) < 1:
            raise ParameterError(f"min_cases must be >= 1, got {self.min_cases}.")
        if self.p_values not in P_VALUE_METHODS:
            raise ParameterError(f"p_values must be one of {', '.join(P_VALUE_METHODS)}, got "
                                 f"{self.p_values!r}.")
        if self.randomization not in RANDOMIZATIONS:
            raise ParameterError(f"randomization must be 'numpy' or 'satscan', got "
                                 f"{self.randomization!r}.")
        if self.randomization == "satscan":
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
        n_int = data.n_intervals
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

    def _neighbours(self, data: ScanData, loc_total: np.ndarray) -> tuple[np.ndarray, ...]:
        """Sorted neighbour lists per centre (CSR), truncated by share and radius.

        One sort per centre (not per cylinder): O(n^2 log n) without a radius, or
        O(n log n + sum_c K_c log K_c) with one (k-d tree).
        """
        from scipy.spatial import cKDTree

        pts = data.distance_space()
        limit = self.max_share * data.n_cases * (1 + 1e-12)
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
            cum = np.cumsum(loc_total[near[order]])
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

    # ------------------------------------------------------------------ run
    def run(self, data: ScanData) -> ScanResult:
        """Scan ``data`` and test the clusters by Monte Carlo.

        Returns
        -------
        ScanResult
            Clusters with their p-values and recurrence intervals.

        Raises
        ------
        ParameterError
            For impossible settings (window lengths, shares, counts).
        DataError
            For fewer than two cases.
        """
        min_len, max_len = self._check(data)
        n_loc, n_int, total = data.n_locations, data.n_intervals, float(data.n_cases)
        loc_total = np.bincount(data.case_location, minlength=n_loc).astype(float)
        int_total = np.bincount(data.case_interval, minlength=n_int).astype(float)
        first = n_int - max_len                      # earliest window start
        lengths = np.arange(min_len, max_len + 1)    # window j spans lengths[j] intervals
        offsets = (max_len - lengths).astype(np.int64)
        win_total = np.cumsum(int_total[::-1])[lengths - 1]
        nb_ptr, nb_idx, nb_dist = self._neighbours(data, loc_total)
        tail = _tails(data.case_location, data.case_interval, n_loc, first, offsets, max_len)
        best, best_k, best_j = _best_per_centre(nb_ptr, nb_idx, tail, loc_total, win_total,
                                                total, float(self.min_cases))
        observed_max = float(best.max()) if len(best) else 0.0

        sims, stopped = self._simulate(data, first, offsets, max_len, nb_ptr, nb_idx,
                                       loc_total, win_total, total, observed_max)
        n_done = len(sims)
        clusters: list[ScanCluster] = []
        taken = np.zeros(n_loc, dtype=bool)
        order = np.argsort(-best, kind="stable")
        for c in order:
            if best[c] <= 0:
                break
            members = nb_idx[nb_ptr[c]:nb_ptr[c] + best_k[c] + 1]
            if taken[members].any():
                continue
            llr = float(best[c])
            if clusters and (llr < 0.001 or (n_done and self._rank(sims, llr) > n_done)):
                continue  # SaTScan reports a secondary cluster only if some replication beat it
            taken[members] = True
            j = int(best_j[c])
            n = float(tail[members, j].sum())
            mu = loc_total[members].sum() * win_total[j] / total
            p, method = self._p_value(sims, llr, stopped, most_likely=not clusters)
            start = n_int - int(lengths[j])
            radius = float(data.surface_distance(nb_dist[nb_ptr[c] + best_k[c]]))
            clusters.append(ScanCluster(
                rank=len(clusters) + 1,
                centre_id=str(data.location_ids[c]),
                centre=(float(data.coordinates[c, 0]), float(data.coordinates[c, 1])),
                radius=radius,
                location_ids=tuple(str(v) for v in data.location_ids[members]),
                start_interval=start,
                end_interval=n_int - 1,
                time_frame=(data.interval_labels[start][0], data.interval_labels[-1][1]),
                observed=int(round(n)),
                expected=float(mu),
                test_statistic=llr,
                p_value=p,
                recurrence_interval=data.interval_length / p if p > 0 else math.inf,
                p_value_method=method,
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

    def _simulate(self, data: ScanData, first: int, offsets: np.ndarray, width: int,
                  nb_ptr: np.ndarray, nb_idx: np.ndarray, loc_total: np.ndarray,
                  win_total: np.ndarray, total: float,
                  observed_max: float) -> tuple[np.ndarray, bool]:
        n_rep = int(self.n_permutations)
        if n_rep == 0:
            return np.zeros(0), False
        # the fixed times of the cases that can fall in a window, and their locations in
        # replications done + 1 .. done + size
        case_t, draw = (self._satscan_draws(data, first) if self.randomization == "satscan"
                        else self._numpy_draws(data, first))
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
                sims = _replicates(draw(done, size), case_t,
                                   data.n_locations, first, offsets, width, nb_ptr, nb_idx,
                                   loc_total, win_total, total, float(self.min_cases))
                if self.early_stop is not None:
                    hits = np.cumsum(self._beats(sims, observed_max)) + exceed
                    if hits[-1] >= self.early_stop:
                        stop = int(np.argmax(hits >= self.early_stop)) + 1
                        out.append(sims[:stop])
                        return np.concatenate(out), True
                    exceed = int(hits[-1])
                out.append(sims)
                done += size
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

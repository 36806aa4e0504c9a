"""Space-time scan statistics as SaTScan runs them: permutation, discrete Poisson, Bernoulli."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cmp_to_key
from typing import Any

import numba
import numpy as np
import pandas as pd

from placecast.clusters import _scan_kernels as _k
from placecast.clusters import _scan_models as _models
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
    population : ndarray of float, optional
        Population of every location, constant over the study period (discrete Poisson
        model: expected cases are proportional to population x time).
    control_location, control_interval : ndarray of int, optional
        Location and interval index of every control (Bernoulli model; a count ``k``
        appears ``k`` times).
    interval_sizes : ndarray of float, optional
        Time units in each interval (default ``interval_length`` each; the first interval
        of a SaTScan study period can be shorter). Used by the Poisson model.
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
    population: np.ndarray | None = None
    control_location: np.ndarray | None = None
    control_interval: np.ndarray | None = None
    interval_sizes: np.ndarray | None = None

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
        if self.population is not None:
            population = np.asarray(self.population, dtype=float)
            if population.shape != (len(ids),):
                raise DataError(f"population must hold one value per location ({len(ids)}), "
                                f"got shape {population.shape}.")
            if not np.isfinite(population).all() or (population < 0).any():
                raise DataError("populations must be finite numbers >= 0.")
            object.__setattr__(self, "population", population)
        if (self.control_location is None) != (self.control_interval is None):
            raise DataError("give both control_location and control_interval, or neither.")
        if self.control_location is not None:
            c_loc = np.asarray(self.control_location, dtype=np.int64)
            c_int = np.asarray(self.control_interval, dtype=np.int64)
            if c_loc.shape != c_int.shape:
                raise DataError("control_location and control_interval differ in length.")
            if len(c_loc) and (c_loc.min() < 0 or c_loc.max() >= len(ids)):
                raise DataError("a control refers to a location index outside the location "
                                "list.")
            if len(c_int) and (c_int.min() < 0 or c_int.max() >= n_int):
                raise DataError("a control falls outside the study period's time intervals.")
            object.__setattr__(self, "control_location", c_loc)
            object.__setattr__(self, "control_interval", c_int)
        if self.interval_sizes is not None:
            sizes = np.asarray(self.interval_sizes, dtype=float)
            if sizes.shape != (n_int,) or not (sizes > 0).all():
                raise DataError(f"interval_sizes must hold {n_int} positive numbers.")
            object.__setattr__(self, "interval_sizes", sizes)
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

    @property
    def n_controls(self) -> int:
        """Total number of controls (0 without controls)."""
        return 0 if self.control_location is None else len(self.control_location)

    def sizes(self) -> np.ndarray:
        """Time units in each interval."""
        if self.interval_sizes is not None:
            return self.interval_sizes
        return np.full(self.n_intervals, float(self.interval_length))

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
    cases: np.ndarray | None = None,
    population: Any = None,
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
    cases : ndarray of bool, optional
        Which events are cases; the others become controls (for the Bernoulli model).
        Default: every event is a case.
    population : mapping or pandas Series, optional
        Population of each unit, by unit id (for the Poisson model; needs ``units``).
        Every unit with a population becomes a location, with or without events; a unit
        with events must have a population.

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
    if cases is not None:
        cases = np.asarray(cases, dtype=bool)
        if cases.shape != (len(events),):
            raise ParameterError(f"cases must hold one flag per event ({len(events)}), got "
                                 f"shape {cases.shape}.")
        cases = cases[keep]
    ev = events.select(keep)
    if month_edges is not None:
        t_index = month_edges.searchsorted(pd.DatetimeIndex(ev.time), side="right") - 1
    else:
        t_index = np.floor((pd.DatetimeIndex(ev.time) - start) / step).astype(np.int64)
    t_index = np.clip(np.asarray(t_index, dtype=np.int64), 0, n_intervals - 1)
    location_population = None
    if population is not None and units is None:
        raise ParameterError("a population per location needs area units (the population "
                             "of each unit); give units.")
    if units is not None:
        unit_index = units.assign(ev.x, ev.y)
        if (unit_index < 0).any():
            raise DataError(f"{int((unit_index < 0).sum())} events fall in no area unit; give "
                            "a region that covers them or drop them first.")
        if population is None:
            used, loc = np.unique(unit_index, return_inverse=True)
        else:
            per_unit = _population_per_unit(population, units)
            # every populated unit is a location, with events or not
            used = np.union1d(np.flatnonzero(per_unit > 0), unit_index)
            loc = np.searchsorted(used, unit_index)
            location_population = per_unit[used]
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
    loc = np.ravel(loc)
    controls: dict[str, Any] = {}
    if cases is not None:
        if not cases.any():
            raise DataError("none of the events in the study period is a case.")
        controls = {"control_location": np.repeat(loc[~cases], reps[~cases]),
                    "control_interval": np.repeat(t_index[~cases], reps[~cases])}
        loc, t_index, reps = loc[cases], t_index[cases], reps[cases]
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
        case_location=np.repeat(loc, reps),
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
        population=location_population,
        **controls,
    )


def _population_per_unit(population: Any, units: Any) -> np.ndarray:
    """Population of every unit (0 for units not listed); unknown ids are an error."""
    items = population.items() if hasattr(population, "items") else population
    position = {str(u): i for i, u in enumerate(units.unit_id)}
    out = np.zeros(len(position))
    unknown = []
    for unit, value in items:
        if str(unit) not in position:
            unknown.append(str(unit))
            continue
        value = float(value)
        if not math.isfinite(value) or value < 0:
            raise DataError(f"the population of unit {unit!r} is {value}; populations must "
                            "be numbers >= 0.")
        out[position[str(unit)]] = value
    if unknown:
        raise DataError(f"{len(unknown)} population id(s) are not area units "
                        f"({', '.join(unknown[:3])}{', ...' if len(unknown) > 3 else ''}); "
                        "use the units' ids.")
    return out


# ---------------------------------------------------------------------------- results
@dataclass(frozen=True)
class ScanCluster:
    """One reported cluster: a cylinder (circle x time window).

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
        Expected cases under the null: ``mu = C_z * C_d / C`` (space-time permutation),
        ``C`` x the cylinder's share of population x time (Poisson), ``N C / N_total``
        for ``N`` cases and controls in the cylinder (Bernoulli).
    test_statistic : float
        Log likelihood ratio.
    p_value : float
        Monte Carlo or Gumbel p-value, as ``p_value_method`` says (``nan`` without
        replications).
    recurrence_interval : float
        Expected time between clusters this strong under the null, in time units
        (``interval_length / p_value``: one analysis per interval); ``nan`` for
        retrospective and purely spatial analyses.
    p_value_method : {"monte_carlo", "gumbel"}
        How ``p_value`` was computed.
    population : float
        Population in the circle (Poisson) or cases plus controls in the cylinder
        (Bernoulli); ``nan`` for the space-time permutation model.
    relative_risk : float
        Estimated risk inside over risk outside: ``(n / mu) / ((C - n) / (C - mu))``, or
        ``(n / N) / ((C - n) / (N_total - N))`` for Bernoulli (``inf`` when every case is
        inside; ``nan`` for the space-time permutation model).
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
    population: float = math.nan
    relative_risk: float = math.nan

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
            "recurrence_interval": _finite_or_none(self.recurrence_interval),
            "population": _finite_or_none(self.population),
            "relative_risk": (None if math.isnan(self.relative_risk)
                              else self.relative_risk),
        }


def _finite_or_none(value: float) -> float | None:
    return None if math.isnan(value) else value


@dataclass(frozen=True)
class ScanResult:
    """What a space-time scan found.

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
    model : {"space_time_permutation", "poisson", "bernoulli"}
        The probability model.
    analysis : {"prospective", "retrospective", "purely_spatial"}
        Which cylinders were scanned.
    total_population : float
        Total population (Poisson) or cases plus controls (Bernoulli); ``nan`` otherwise.
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
    model: str = "space_time_permutation"
    analysis: str = "prospective"
    total_population: float = math.nan

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
            "model": self.model,
            "analysis": self.analysis,
            "total_population": _finite_or_none(self.total_population),
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
                   "location_ids", "start", "end", "population", "observed", "expected",
                   "observed_over_expected", "relative_risk", "test_statistic", "p_value",
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
                                 f"{self.model!r}.")
        if self.analysis not in ANALYSES:
            raise ParameterError(f"analysis must be one of {', '.join(ANALYSES)}, got "
                                 f"{self.analysis!r}.")
        if self.model == "space_time_permutation" and self.analysis == "purely_spatial":
            raise ParameterError("the space-time permutation model needs time windows: use "
                                 "analysis='prospective' or 'retrospective', or the Poisson "
                                 "or Bernoulli model for a purely spatial scan.")
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

        def replicate(done: int, size: int) -> np.ndarray:
            rep_loc, rep_t, rep_n = drawn(size)
            return _k.replicate_drawn(rep_loc, rep_t, rep_n, n_loc, plan.first, plan.n_grid,
                                      *common)

        return replicate

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

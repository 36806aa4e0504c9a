"""The scan's input: locations, cases (and controls or populations) per time interval.

:class:`ScanData` is what every scan model reads; :func:`scan_data_from_events` makes it
from placecast events and, optionally, area units.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from placecast.exceptions import DataError, ParameterError
from placecast.quantities import parse_duration

__all__ = ["EARTH_RADIUS_KM", "ScanData", "scan_data_from_events"]

#: Sphere radius SaTScan uses for latitude/longitude coordinates, km.
EARTH_RADIUS_KM = 6367.0


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
                                 f"{self.coordinate_system!r}.", param="coordinate_system")
        if self.population is not None:
            population = np.asarray(self.population, dtype=float)
            if population.shape != (len(ids),):
                raise DataError(f"population must hold one value per location ({len(ids)}), "
                                f"got shape {population.shape}.", param="population")
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
    duration = parse_duration(interval, name="interval")
    months = int(duration.amount) if duration.unit == "M" else 0
    # fixed-length intervals; with calendar months only ``month_edges`` is used
    step = pd.Timedelta(days=duration.amount)
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
        raise ParameterError(f"n_intervals must be at least 1, got {n_intervals}.",
                             param="n_intervals")
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
                                 f"shape {cases.shape}.", param="cases")
        cases = cases[keep]
    ev = events.select(keep)
    if month_edges is not None:
        t_index = month_edges.searchsorted(pd.DatetimeIndex(ev.time), side="right") - 1
    else:
        t_index = np.floor((pd.DatetimeIndex(ev.time) - start) / step).astype(np.int64)
    t_index = np.clip(np.asarray(t_index, dtype=np.int64), 0, n_intervals - 1)
    location_population = None
    if population is not None and units is None:
        raise ParameterError("a `population` per location needs area units (the population "
                             "of each unit); give `units`.", param=("units", "population"))
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
                raise ParameterError(f"round_to must be positive metres, got {round_to}.",
                                     param="round_to")
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



"""Earthquake catalog set-up for marked space-time ETAS (as the R package ETAS does it).

A *catalog* here is the list of events above a magnitude threshold, up to the end of the
study period, with

* time ``t`` in days since the catalog's first event,
* magnitude stored as ``m - m0`` (``m0`` the threshold),
* location in the reference's flat projection (degrees or km, see ``project_lonlat``),
* a flag: ``1`` for *target* events (inside the study region and period), ``0`` for events
  outside the region, ``-1`` for events before the study start. Only target events enter
  the ``log lambda`` sum of the likelihood; every event triggers.

Reference: Jalilian, A. (2019), ETAS: an R package for fitting the space-time ETAS model
to earthquake data, Journal of Statistical Software 88(1), doi:10.18637/jss.v088.c01.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from placecast.exceptions import DataError, ParameterError

__all__ = [
    "MarkedCatalog",
    "build_catalog",
    "catalog_from_arrays",
    "catalog_from_events",
    "parse_region",
    "point_in_polygon",
    "project_lonlat",
    "polygon_centroid",
]

FloatArray = npt.NDArray[np.float64]

#: km per degree of longitude at the equator / per degree of latitude (reference values).
KM_PER_DEG_LON = 111.32
KM_PER_DEG_LAT = 110.574

_DAY_NS = 86_400e9


@dataclass(frozen=True)
class MarkedCatalog:
    """Events prepared for marked ETAS (all arrays sorted by time).

    Attributes
    ----------
    t : ndarray
        Times in days since ``time_origin``.
    x, y : ndarray
        Projected coordinates (degrees or km, see ``distance_unit``).
    m : ndarray
        Magnitude above the threshold, ``mag - m0`` (>= 0).
    flag : ndarray of int8
        1 target, 0 outside the region, -1 before the study start.
    polygon : ndarray, shape (k + 1, 2)
        Region polygon in the projected plane, anticlockwise and closed.
    t_start, t_end : float
        Study period in days since ``time_origin``.
    m0 : float
        Magnitude threshold.
    distance_unit : str
        ``"degree"`` or ``"km"``.
    time_origin : numpy.datetime64
        Time of the first event of the catalog (t = 0).
    centroid : tuple of float
        (lon, lat) of the region's area centroid (degree projection; nan for km).
    time, lon, lat, magnitude : ndarray
        The original values of the kept events.
    """

    t: FloatArray
    x: FloatArray
    y: FloatArray
    m: FloatArray
    flag: npt.NDArray[np.int8]
    polygon: FloatArray
    t_start: float
    t_end: float
    m0: float
    distance_unit: str
    time_origin: np.datetime64
    centroid: tuple[float, float]
    time: npt.NDArray[np.datetime64]
    lon: FloatArray
    lat: FloatArray
    magnitude: FloatArray

    @property
    def n_events(self) -> int:
        """Number of events (targets and complementary)."""
        return int(self.t.size)

    @property
    def is_target(self) -> npt.NDArray[np.bool_]:
        """Mask of target events."""
        return self.flag == 1

    @property
    def n_targets(self) -> int:
        """Number of target events."""
        return int(np.count_nonzero(self.flag == 1))

    def summary(self) -> dict[str, Any]:
        """Return counts and extents, JSON-ready."""
        return {
            "n_events": self.n_events,
            "n_target": self.n_targets,
            "n_complementary": self.n_events - self.n_targets,
            "n_before_study": int(np.count_nonzero(self.flag == -1)),
            "n_outside_region": int(np.count_nonzero(self.flag == 0)),
            "mag_threshold": self.m0,
            "study_start_days": self.t_start,
            "study_end_days": self.t_end,
            "time_origin": str(self.time_origin),
            "distance_unit": self.distance_unit,
        }


def polygon_centroid(lon: FloatArray, lat: FloatArray) -> tuple[float, float]:
    """Area centroid of a simple polygon (planar formula on the given coordinates)."""
    x = np.asarray(lon, dtype=float)
    y = np.asarray(lat, dtype=float)
    if x[0] == x[-1] and y[0] == y[-1]:
        x, y = x[:-1], y[:-1]
    x1, y1 = np.roll(x, -1), np.roll(y, -1)
    cross = x * y1 - x1 * y
    area = cross.sum() / 2.0
    if area == 0:
        raise DataError("the region polygon has zero area; give at least three vertices "
                        "that are not on one line.")
    cx = ((x + x1) * cross).sum() / (6.0 * area)
    cy = ((y + y1) * cross).sum() / (6.0 * area)
    return float(cx), float(cy)


def project_lonlat(lon: FloatArray, lat: FloatArray, distance_unit: str,
                   centroid: tuple[float, float] | None = None) -> tuple[FloatArray, FloatArray]:
    """Project lon/lat with the reference's flat projection.

    ``degree``: ``x = cos(c_lat) (lon - c_lon)``, ``y = lat - c_lat`` with ``(c_lon, c_lat)``
    the region centroid. ``km``: ``x = 111.32 cos(lat) lon``, ``y = 110.574 lat``.
    """
    lon = np.asarray(lon, dtype=float)
    lat = np.asarray(lat, dtype=float)
    if distance_unit == "degree":
        if centroid is None:
            raise ParameterError("degree projection needs the region centroid.",
                                 param="centroid")
        c_lon, c_lat = centroid
        return np.cos(np.deg2rad(c_lat)) * (lon - c_lon), lat - c_lat
    if distance_unit == "km":
        return KM_PER_DEG_LON * np.cos(np.deg2rad(lat)) * lon, KM_PER_DEG_LAT * lat
    raise ParameterError(f"distance unit {distance_unit!r} is not 'degree' or 'km'.",
                         param="distance_unit")


def point_in_polygon(x: FloatArray, y: FloatArray, polygon: FloatArray) -> npt.NDArray[np.bool_]:
    """Even-odd rule point-in-polygon test; ``polygon`` closed, shape (k + 1, 2). O(n k)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    inside = np.zeros(x.shape, dtype=bool)
    px, py = polygon[:, 0], polygon[:, 1]
    for k in range(len(px) - 1):
        x1, y1, x2, y2 = px[k], py[k], px[k + 1], py[k + 1]
        crosses = (y1 > y) != (y2 > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            xint = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (x < xint)
    return inside


def _orient_close(lon: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
    lon = np.asarray(lon, dtype=float)
    lat = np.asarray(lat, dtype=float)
    if lon[0] == lon[-1] and lat[0] == lat[-1]:
        lon, lat = lon[:-1], lat[:-1]
    if lon.size < 3:
        raise DataError("the region polygon needs at least three vertices.")
    area2 = np.sum(lon * np.roll(lat, -1) - np.roll(lon, -1) * lat)
    if area2 < 0:  # clockwise -> anticlockwise
        lon, lat = lon[::-1], lat[::-1]
    return np.append(lon, lon[0]), np.append(lat, lat[0])


def parse_region(text: str) -> tuple[FloatArray, FloatArray]:
    """Polygon from ``"lon lat, lon lat, ..."`` or from a file (vertex text, GeoJSON, ...).

    Returns lon and lat arrays (not closed, in the order given).
    """
    from pathlib import Path

    path = Path(text)
    if path.suffix and path.exists():
        suffix = path.suffix.lower()
        if suffix in {".txt", ".csv"}:
            content = path.read_text().strip()
            rows = [r for r in content.replace(";", "\n").splitlines() if r.strip()]
            try:
                pts = [[float(v) for v in r.replace(",", " ").split()] for r in rows]
                arr = np.asarray(pts, dtype=float)
            except ValueError:
                # header line?
                try:
                    pts = [[float(v) for v in r.replace(",", " ").split()] for r in rows[1:]]
                    arr = np.asarray(pts, dtype=float)
                except ValueError:
                    raise DataError(f"{path}: every line must be 'lon lat' numbers.") from None
            if arr.ndim != 2 or arr.shape[1] != 2:
                raise DataError(f"{path}: every line must hold two numbers 'lon lat'.")
            return arr[:, 0], arr[:, 1]
        import geopandas as gpd

        try:
            frame = gpd.read_file(path)
        except Exception as exc:  # pragma: no cover - depends on the driver
            raise DataError(f"{path}: cannot read the region file ({exc}).") from None
        if frame.crs is not None and not frame.crs.is_geographic:
            frame = frame.to_crs("EPSG:4326")
        geom = frame.geometry.union_all()
        if geom.geom_type == "MultiPolygon":
            geom = max(geom.geoms, key=lambda g: g.area)
        if geom.geom_type != "Polygon":
            raise DataError(f"{path}: the region must be a polygon (got {geom.geom_type}).")
        coords = np.asarray(geom.exterior.coords)
        return coords[:-1, 0], coords[:-1, 1]
    if path.suffix and not path.exists() and "," not in text:
        raise DataError(f"region file {text!r} does not exist.", param="region")
    items = [item.strip() for item in text.split(",") if item.strip()]
    try:
        pts = [[float(v) for v in item.split()] for item in items]
    except ValueError:
        raise DataError(f"`region` {text!r}: give a polygon file or 'lon lat, lon lat, ...' "
                        "with numbers.", param="region") from None
    if any(len(p) != 2 for p in pts) or len(pts) < 3:
        raise DataError(f"`region` {text!r}: give at least three 'lon lat' pairs separated "
                        "by commas.", param="region")
    arr = np.asarray(pts, dtype=float)
    return arr[:, 0], arr[:, 1]


def _to_datetime64(value: Any, name: str) -> np.datetime64:
    import pandas as pd

    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise ParameterError(f"`{name}` {value!r} is not a date (use YYYY-MM-DD).",
                             param=name) from None
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    out: np.datetime64 = ts.to_datetime64().astype("datetime64[ns]")
    return out


def build_catalog(
    time: Any,
    lon: Any,
    lat: Any,
    magnitude: Any,
    *,
    mag_threshold: float | None = None,
    study_start: Any = None,
    study_end: Any = None,
    region: tuple[Any, Any] | None = None,
    distance_unit: str = "degree",
) -> MarkedCatalog:
    """Set up a catalog as ``ETAS::catalog`` does.

    Parameters
    ----------
    time : array of datetime64 (UTC)
    lon, lat : array of float
        Degrees.
    magnitude : array of float
    mag_threshold : float, optional
        ``m0``; events with ``mag >= m0`` are kept. Default: the smallest magnitude.
    study_start, study_end : date-like, optional
        Study period (default: the first and last event times).
    region : (lon, lat) arrays, optional
        Region polygon vertices. Default: the events' bounding box padded by 1% per side.
    distance_unit : {"degree", "km"}

    Returns
    -------
    MarkedCatalog
        Events with ``mag >= m0`` and ``time <= study_end``, sorted by time; events sharing
        a timestamp have the later one moved forward by one second.
    """
    if distance_unit not in ("degree", "km"):
        raise ParameterError(f"`distance_unit` {distance_unit!r} must be 'degree' or 'km'.",
                             param="distance_unit")
    times = np.asarray(time).astype("datetime64[ns]")
    lon = np.asarray(lon, dtype=float)
    lat = np.asarray(lat, dtype=float)
    mag = np.asarray(magnitude, dtype=float)
    n = times.size
    if not (lon.size == lat.size == mag.size == n):
        raise DataError("time, lon, lat and magnitude must have the same length.")
    if n == 0:
        raise DataError("the catalog has no events.")
    for name, arr in (("longitude", lon), ("latitude", lat), ("magnitude", mag)):
        bad = np.flatnonzero(~np.isfinite(arr))
        if bad.size:
            raise DataError(f"{name} is missing or not a number in row {bad[0] + 1} "
                            f"({bad.size} rows); fix or drop those rows.")
    if np.isnat(times).any():
        bad = np.flatnonzero(np.isnat(times))
        raise DataError(f"time is missing in row {bad[0] + 1}; fix or drop those rows.")
    order = np.argsort(times, kind="stable")
    times, lon, lat, mag = times[order], lon[order], lat[order], mag[order]
    time_origin = times[0]
    m0 = float(mag.min()) if mag_threshold is None else float(mag_threshold)
    end = times[-1] if study_end is None else _to_datetime64(study_end, "study_end")
    start = time_origin if study_start is None else _to_datetime64(study_start, "study_start")
    if end <= start:
        raise ParameterError(f"the study end {end} must be after the study start {start}.",
                             param=("study_end", "study_start"))
    keep = (mag >= m0 - 1e-9) & (times <= end) & (times >= time_origin)
    times, lon, lat, mag = times[keep], lon[keep], lat[keep], mag[keep]
    if times.size == 0:
        raise DataError(f"no event has magnitude >= {m0} before the study end.")
    # ties: move the later of each pair forward by one second
    tnum = times.astype("int64").copy()
    for i in range(1, tnum.size):
        if tnum[i] <= tnum[i - 1]:
            tnum[i] = tnum[i - 1] + 1_000_000_000
    times = tnum.astype("datetime64[ns]")

    if region is None:
        pad_x = 0.01 * (lon.max() - lon.min())
        pad_y = 0.01 * (lat.max() - lat.min())
        x0, x1 = lon.min() - pad_x, lon.max() + pad_x
        y0, y1 = lat.min() - pad_y, lat.max() + pad_y
        rlon = np.array([x0, x1, x1, x0])
        rlat = np.array([y0, y0, y1, y1])
    else:
        rlon, rlat = (np.asarray(v, dtype=float) for v in region)
        if rlon.size != rlat.size:
            raise DataError("the region polygon needs as many longitudes as latitudes.")
    rlon, rlat = _orient_close(rlon, rlat)
    if distance_unit == "degree":
        centroid = polygon_centroid(rlon, rlat)
    else:
        centroid = (float("nan"), float("nan"))
    px, py = project_lonlat(rlon, rlat, distance_unit, centroid)
    polygon = np.column_stack([px, py])
    x, y = project_lonlat(lon, lat, distance_unit, centroid)

    t = (times - time_origin).astype("int64") / _DAY_NS
    t_start = float((start - time_origin).astype("int64") / _DAY_NS)
    t_end = float((end - time_origin).astype("int64") / _DAY_NS)
    inside = point_in_polygon(x, y, polygon)
    flag = np.where(inside, 1, 0).astype(np.int8)
    flag[t < t_start] = -1
    if not np.any(flag == 1):
        raise DataError("no target event: none lies inside the region during the study "
                        "period; check `region`, `study_start`/`study_end` and the "
                        "magnitude threshold.",
                        param=("region", "study_start", "study_end", "mag_threshold"))
    return MarkedCatalog(
        t=t, x=np.ascontiguousarray(x), y=np.ascontiguousarray(y), m=mag - m0, flag=flag,
        polygon=polygon, t_start=t_start, t_end=t_end, m0=m0, distance_unit=distance_unit,
        time_origin=time_origin, centroid=centroid, time=times, lon=lon, lat=lat,
        magnitude=mag,
    )


def catalog_from_events(events: Any, **kwargs: Any) -> MarkedCatalog:
    """``build_catalog`` from ``placecast.events.Events`` read with ``project=False``.

    ``events.x``/``events.y`` must be longitude/latitude in degrees and ``events.mark``
    the magnitude.
    """
    if getattr(events, "mark", None) is None:
        raise DataError("the catalog has no magnitude column; name it with `mark`.",
                        param="mark")
    return build_catalog(events.time, events.x, events.y, events.mark, **kwargs)


def catalog_from_arrays(t: Any, x: Any, y: Any, magnitude: Any, *, m0: float,
                        polygon: Any, t_start: float, t_end: float,
                        distance_unit: str = "km") -> MarkedCatalog:
    """Build a catalog from projected coordinates and times in days (e.g. simulations).

    Events are sorted by time; those after ``t_end`` or below ``m0`` are dropped; targets
    are inside ``polygon`` (any orientation, closed or not) at ``t >= t_start``.
    """
    t = np.asarray(t, dtype=float)
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    mag = np.asarray(magnitude, dtype=float)
    keep = (t <= t_end) & (mag >= m0)
    order = np.argsort(t[keep], kind="stable")
    t, x, y, mag = (a[keep][order] for a in (t, x, y, mag))
    if t.size == 0:
        raise DataError("no event above the threshold before the study end.")
    poly = np.asarray(polygon, dtype=float)
    px, py = _orient_close(poly[:, 0], poly[:, 1])
    polygon_c = np.column_stack([px, py])
    flag = np.where(point_in_polygon(x, y, polygon_c), 1, 0).astype(np.int8)
    flag[t < t_start] = -1
    origin = np.datetime64("1970-01-01T00:00:00", "ns")
    times = origin + (t * _DAY_NS).astype("int64").astype("timedelta64[ns]")
    return MarkedCatalog(
        t=t, x=x, y=y, m=mag - m0, flag=flag, polygon=polygon_c, t_start=float(t_start),
        t_end=float(t_end), m0=float(m0), distance_unit=distance_unit, time_origin=origin,
        centroid=(float("nan"), float("nan")), time=times, lon=x, lat=y, magnitude=mag,
    )

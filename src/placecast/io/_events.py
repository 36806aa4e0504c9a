"""Read point events from CSV, Parquet, GeoJSON, GeoPackage and shapefiles.

Only the mapped columns (time, location, category, weight, incident id, mark) are read;
every other column is left in the file and never stored.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from placecast.events import Events, LoadReport, SpatialReference, to_datetime64
from placecast.exceptions import DataError, ParameterError

__all__ = ["ColumnMap", "choose_local_crs", "read_events", "read_table_header"]

TABLE_SUFFIXES = {".csv", ".txt", ".tsv", ".parquet", ".pq"}
VECTOR_SUFFIXES = {".geojson", ".json", ".gpkg", ".shp", ".fgb", ".zip"}

# Common column names, in order of preference (compared case-insensitively).
CANDIDATES: dict[str, tuple[str, ...]] = {
    "time": ("occ_date", "datetime", "date_time", "timestamp", "date_single", "occurred",
             "occurred_on", "occurrence_date", "incident_date", "date", "time", "t"),
    "x": ("x", "x_coordina", "x_coord", "x_coordinate", "xcoord", "easting", "point_x"),
    "y": ("y", "y_coordina", "y_coord", "y_coordinate", "ycoord", "northing", "point_y"),
    "lon": ("longitude", "lon", "long", "lng"),
    "lat": ("latitude", "lat"),
    "category": ("category", "offense_type", "offense", "crime_type", "primary_type",
                 "call_type", "event_type"),
    "incident_id": ("uid", "incident_id", "incident_number", "case_number", "event_id",
                    "record_id"),
    "weight": ("weight",),
    "mark": ("magnitude", "mag", "mark"),
}


@dataclass(frozen=True, slots=True)
class ColumnMap:
    """Which source column feeds which event field (``None``: auto-detect or absent).

    ``time`` may name two columns joined by a comma (``"date,time"``): their values are
    joined with a space before parsing.
    """

    time: str | None = None
    x: str | None = None
    y: str | None = None
    lon: str | None = None
    lat: str | None = None
    category: str | None = None
    weight: str | None = None
    incident_id: str | None = None
    mark: str | None = None


def _suffix(path: Path) -> str:
    return path.suffix.lower()


def read_table_header(path: Path) -> list[str]:
    """Return the column names of a tabular or vector file without reading its rows."""
    suffix = _suffix(path)
    if suffix in {".csv", ".txt", ".tsv"}:
        sep = "\t" if suffix == ".tsv" else ","
        try:
            header = pd.read_csv(path, nrows=0, sep=sep)
        except pd.errors.EmptyDataError:
            raise DataError(
                f"{path}: the file is empty; expected a header line such as "
                "'time,x,y' followed by one row per event."
            ) from None
        except UnicodeDecodeError:
            raise DataError(
                f"{path}: not a text CSV file (could not decode it as UTF-8)."
            ) from None
        return [str(c) for c in header.columns]
    if suffix in {".parquet", ".pq"}:
        import pyarrow.parquet as pq

        geometry = _geoparquet_columns(path)
        return [n for n in pq.read_schema(path).names if n not in geometry]
    import pyogrio

    info = pyogrio.read_info(path)
    return [str(f) for f in info["fields"]]


def _find(columns: Sequence[str], names: Iterable[str]) -> str | None:
    lower = {c.lower(): c for c in columns}
    for name in names:
        if name in lower:
            return lower[name]
    return None


def _resolve_columns(
    path: Path, columns: list[str], given: ColumnMap, has_geometry: bool
) -> tuple[dict[str, str], list[str]]:
    """Map event fields to source columns; returns (mapping, auto-detected fields)."""
    mapping: dict[str, str] = {}
    detected: list[str] = []
    available = set(columns)

    def check(field_name: str, column: str) -> None:
        for part in column.split(","):
            if part.strip() not in available:
                close = [c for c in columns if c.lower() == part.strip().lower()]
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise DataError(
                    f"{path}: there is no column {part.strip()!r} for the event {field_name} "
                    f"(columns: {', '.join(columns)}).{hint} "
                    f"Pass the right name with --{field_name.replace('_', '-')}."
                )

    for field_name in ("time", "x", "y", "lon", "lat", "category", "weight",
                       "incident_id", "mark"):
        value = getattr(given, field_name)
        if value:
            check(field_name, value)
            mapping[field_name] = value

    if "time" not in mapping:
        lower = {c.lower(): c for c in columns}
        if "date" in lower and "time" in lower:
            mapping["time"] = f"{lower['date']},{lower['time']}"
            detected.append("time")
        else:
            found = _find(columns, CANDIDATES["time"])
            if found is None:
                raise DataError(
                    f"{path}: no time column found (columns: {', '.join(columns)}). "
                    "Name it with --time COLUMN."
                )
            mapping["time"] = found
            detected.append("time")

    explicit_lonlat = "lon" in mapping or "lat" in mapping
    explicit_xy = "x" in mapping or "y" in mapping
    if explicit_lonlat and explicit_xy:
        raise ParameterError("give either --x/--y or --lon/--lat, not both.")
    if not has_geometry and not explicit_lonlat and not explicit_xy:
        x, y = _find(columns, CANDIDATES["x"]), _find(columns, CANDIDATES["y"])
        lon, lat = _find(columns, CANDIDATES["lon"]), _find(columns, CANDIDATES["lat"])
        if x and y:
            mapping.update(x=x, y=y)
            detected += ["x", "y"]
        elif lon and lat:
            mapping.update(lon=lon, lat=lat)
            detected += ["lon", "lat"]
        else:
            raise DataError(
                f"{path}: no coordinate columns found (columns: {', '.join(columns)}). "
                "Name them with --x/--y (projected, with --crs) or --lon/--lat."
            )
    for a, b in (("x", "y"), ("lon", "lat")):
        if (a in mapping) != (b in mapping):
            missing = b if a in mapping else a
            raise ParameterError(f"--{a} and --{b} go together: --{missing} is missing.")

    for field_name in ("category", "incident_id", "mark", "weight"):
        if field_name not in mapping:
            found = _find(columns, CANDIDATES[field_name])
            used = {p for v in mapping.values() for p in v.split(",")}
            if found is not None and found not in used:
                mapping[field_name] = found
                detected.append(field_name)
    return mapping, detected


def choose_local_crs(lon: np.ndarray, lat: np.ndarray) -> str:
    """Return the UTM zone (WGS 84) holding the centre of the points, as ``"EPSG:326xx"``.

    Examples
    --------
    >>> choose_local_crs(np.array([-73.9]), np.array([40.7]))
    'EPSG:32618'
    """
    from pyproj.aoi import AreaOfInterest
    from pyproj.database import query_utm_crs_info

    lon_c = float(np.median(lon))
    lat_c = float(np.median(lat))
    infos = query_utm_crs_info(
        datum_name="WGS 84",
        area_of_interest=AreaOfInterest(lon_c, lat_c, lon_c, lat_c),
    )
    if infos:
        return f"{infos[0].auth_name}:{infos[0].code}"
    zone = int((lon_c + 180) // 6) + 1
    return f"EPSG:{32600 + zone if lat_c >= 0 else 32700 + zone}"


def _spatial_reference_for(crs: str) -> SpatialReference:
    """Check a projected CRS and find its metres-per-unit factor."""
    if crs.startswith("local:"):
        unit = crs.split(":", 1)[1] or "m"
        from placecast.quantities import METRES_PER_UNIT

        if unit not in METRES_PER_UNIT:
            raise ParameterError(
                f"--crs {crs}: unknown local unit {unit!r} (use local:m, local:km or local:ft)."
            )
        return SpatialReference(crs, METRES_PER_UNIT[unit], crs)
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    try:
        parsed = CRS.from_user_input(crs)
    except CRSError:
        raise ParameterError(
            f"--crs {crs!r} is not a coordinate reference system pyproj knows "
            "(e.g. EPSG:2913, EPSG:26971)."
        ) from None
    if not parsed.is_projected:
        raise ParameterError(
            f"--crs {crs} is geographic (degrees); for lon/lat columns use --lon/--lat, "
            "which projects them to a local metric CRS."
        )
    factor = float(parsed.axis_info[0].unit_conversion_factor)
    name = parsed.to_string()
    return SpatialReference(name, factor, name)


def _read_rows(path: Path, columns: list[str]) -> pd.DataFrame:
    suffix = _suffix(path)
    if suffix in {".csv", ".txt", ".tsv"}:
        sep = "\t" if suffix == ".tsv" else ","
        try:
            return pd.read_csv(path, usecols=columns, dtype=str, sep=sep, keep_default_na=False,
                               na_values=[""])
        except pd.errors.ParserError as exc:
            raise DataError(f"{path}: the CSV is malformed ({exc}). Check quoting and "
                            "the number of fields per line.") from None
    if suffix in {".parquet", ".pq"}:
        return pd.read_parquet(path, columns=columns)
    raise AssertionError(suffix)


def _geoparquet_columns(path: Path) -> list[str]:
    """The geometry columns a GeoParquet file declares, primary first (``[]``: plain)."""
    import json

    import pyarrow.parquet as pq

    try:
        meta = (pq.read_schema(path).metadata or {}).get(b"geo")
        if not meta:
            return []
        info = json.loads(meta)
        primary = info.get("primary_column")
        # The primary geometry column first.
        return sorted(info["columns"], key=lambda name: name != primary)
    except (ValueError, KeyError, TypeError, AttributeError):
        raise DataError(f"{path}: its GeoParquet metadata ('geo') is malformed; write the "
                        "file again, or drop the metadata and give --x/--y.") from None


def _read_geoparquet(path: Path, columns: list[str]) -> Any:
    """Read the wanted columns and the primary geometry of a GeoParquet file."""
    import geopandas as gpd

    try:
        return gpd.read_parquet(path, columns=[*columns, _geoparquet_columns(path)[0]])
    except Exception as exc:  # pyarrow / shapely errors on a damaged file
        raise DataError(f"{path}: could not read it as GeoParquet ({exc}).") from None


def _read_vector(path: Path, columns: list[str]) -> tuple[pd.DataFrame, str | None]:
    import pyogrio

    try:
        if _suffix(path) in {".parquet", ".pq"}:
            frame = _read_geoparquet(path, columns)
        else:
            frame = pyogrio.read_dataframe(path, columns=columns)
    except DataError:
        raise
    except Exception as exc:  # pyogrio raises several GDAL-derived types
        raise DataError(f"{path}: could not read it as a vector file ({exc}).") from None
    geometry = frame.geometry
    if len(frame) and not (geometry.geom_type.dropna() == "Point").all():
        kinds = sorted(set(geometry.geom_type.dropna()))
        raise DataError(
            f"{path}: events must be points, found {', '.join(kinds)}. Convert polygons "
            "to points (e.g. centroids) before reading."
        )
    crs = frame.crs.to_string() if frame.crs is not None else None
    out = pd.DataFrame(frame.drop(columns=frame.geometry.name))
    empty = geometry.isna() | geometry.is_empty
    out["__x"] = np.where(empty, np.nan, geometry.x.where(~empty))
    out["__y"] = np.where(empty, np.nan, geometry.y.where(~empty))
    return out, crs


def _parse_times(
    raw: pd.Series, time_format: str | None, timezone: str | None
) -> tuple[np.ndarray, str | None]:
    """Parse times; returns (datetime64[ns] with NaT for bad values, timezone)."""
    if pd.api.types.is_datetime64_any_dtype(raw):
        parsed = pd.to_datetime(raw)
    elif time_format and time_format.startswith("days since "):
        origin = to_datetime64(time_format.removeprefix("days since "), name="--time-format")
        numbers = pd.to_numeric(raw, errors="coerce")
        parsed = pd.Series(origin + (numbers.to_numpy() * 86400e9).astype("timedelta64[ns]"))
        parsed = parsed.where(numbers.notna().to_numpy())
    else:
        fmt = time_format or "ISO8601"
        text = raw.astype("string").str.strip()
        try:
            parsed = pd.to_datetime(text, format=fmt, errors="coerce")
        except (ValueError, TypeError):
            parsed = pd.to_datetime(text, format=fmt, errors="coerce", utc=True)
        if fmt == "ISO8601" and parsed.isna().any() and text[parsed.isna()].notna().any():
            # ISO8601 mode rejects "mixed" date/datetime strings in some pandas versions.
            retry = pd.to_datetime(text[parsed.isna()], format="mixed", errors="coerce",
                                   dayfirst=False)
            parsed = parsed.astype("datetime64[ns]" if parsed.dt.tz is None else parsed.dtype)
            if retry.dt.tz is None and parsed.dt.tz is None:
                parsed[parsed.isna()] = retry
    tz = getattr(parsed.dt, "tz", None)
    if tz is not None:
        target = timezone or "UTC"
        try:
            parsed = parsed.dt.tz_convert(target).dt.tz_localize(None)
        except Exception:
            raise ParameterError(f"--timezone {timezone!r} is not a known time zone "
                                 "(use an IANA name such as America/Los_Angeles).") from None
        timezone = target
    elif timezone is not None:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ParameterError(f"--timezone {timezone!r} is not a known time zone "
                                 "(use an IANA name such as America/Los_Angeles).") from None
    return np.asarray(parsed, dtype="datetime64[ns]"), timezone


def _row_label(path: Path, index: int, tabular_csv: bool) -> str:
    # CSV rows: line number in the file (header is line 1). Others: 1-based feature number.
    return f"row {index + 2}" if tabular_csv else f"feature {index + 1}"


def read_events(
    path: str | os.PathLike[str],
    *,
    columns: ColumnMap | None = None,
    crs: str | None = None,
    time_format: str | None = None,
    timezone: str | None = None,
    categories: Iterable[str] | None = None,
    since: Any = None,
    until: Any = None,
    skip_bad_rows: bool = False,
    project: bool = True,
) -> Events:
    """Read point events from a file, keeping only the mapped columns.

    Parameters
    ----------
    path : path-like
        A ``.csv``/``.tsv``, ``.parquet``, ``.geojson``, ``.gpkg``, ``.shp`` or ``.fgb`` file.
    columns : ColumnMap, optional
        Source columns for each event field; unset fields are auto-detected from common
        names (``occ_date``, ``x_coordina``, ``X``, ``longitude``, ...) and reported in
        ``Events.report.detected``.
    crs : str, optional
        CRS of projected ``x``/``y`` columns (``"EPSG:2913"``; ``"local:m"``/``"local:km"``
        for an unreferenced planar grid). Vector files carry their own CRS. Lon/lat input
        is projected to the UTM zone of its centre.
    time_format : str, optional
        A ``strftime`` format such as ``"%m/%d/%Y %H:%M"``, or ``"days since 1960-01-01"``
        for numeric times. Default: ISO 8601, with or without time of day and offset.
    timezone : str, optional
        IANA zone. Times carrying an offset are converted to it (default UTC); naive times
        are taken to be in it.
    categories : iterable of str, optional
        Keep only these categories (case-insensitive).
    since, until : date-like, optional
        Keep events with ``since <= time < until``.
    skip_bad_rows : bool
        Drop rows with a bad time or coordinate, counting them by reason in the report,
        instead of failing on the first one.
    project : bool
        Project lon/lat to a local UTM CRS (default). ``False`` keeps degrees (for models
        defined on lon/lat, such as the earthquake ETAS); ``x``=lon and ``y``=lat then.

    Returns
    -------
    Events
        With ``report`` describing columns used, rows dropped and the CRS chosen.

    Raises
    ------
    DataError
        For a missing or empty file, a missing column, an unparseable date, a missing or
        non-numeric coordinate, or lon/lat out of range (naming file, row and column).
    ParameterError
        For contradictory or unknown options.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file. Check the path (relative paths start at "
                        f"{Path.cwd()}).")
    if path.is_dir():
        raise DataError(f"{path}: is a folder; give the events file inside it.")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty; expected one row per event.")
    suffix = _suffix(path)
    if suffix not in TABLE_SUFFIXES | VECTOR_SUFFIXES:
        raise DataError(
            f"{path}: unknown file type {suffix!r}; placecast reads .csv, .tsv, .parquet, "
            ".geojson, .gpkg, .shp and .fgb."
        )
    given = columns or ColumnMap()
    is_vector = suffix in VECTOR_SUFFIXES or (suffix in {".parquet", ".pq"}
                                              and bool(_geoparquet_columns(path)))
    is_csv = suffix in {".csv", ".txt", ".tsv"}
    header = read_table_header(path)
    has_geometry = is_vector and not (given.x or given.lon)
    mapping, detected = _resolve_columns(path, header, given, has_geometry)
    wanted = sorted({p.strip() for v in mapping.values() for p in v.split(",")})

    file_crs: str | None = None
    if is_vector:
        frame, file_crs = _read_vector(path, wanted)
    else:
        frame = _read_rows(path, wanted)
    n_rows = len(frame)
    if n_rows == 0:
        raise DataError(f"{path}: the file has a header but no rows of events.")

    # ---- time
    time_columns = [p.strip() for p in mapping["time"].split(",")]
    raw_time = frame[time_columns[0]]
    for extra in time_columns[1:]:
        raw_time = raw_time.astype("string") + " " + frame[extra].astype("string")
    times, timezone = _parse_times(raw_time, time_format, timezone)

    bad: dict[str, np.ndarray] = {}
    first_bad: dict[str, str] = {}

    def flag(reason: str, mask: np.ndarray, column: str, values: pd.Series, fix: str) -> None:
        if mask.any():
            bad[reason] = mask
            i = int(np.flatnonzero(mask)[0])
            value = values.iloc[i]
            shown = "missing" if pd.isna(value) else repr(str(value))
            first_bad[reason] = (
                f"{path} {_row_label(path, i, is_csv)}, column {column!r}: {shown} "
                f"{reason}. {fix}"
            )

    flag("is not a date", np.isnat(times), mapping["time"], raw_time,
         "Expected ISO 8601 (e.g. 2016-12-01 or 2016-12-01T14:30); give another format "
         "with --time-format (e.g. '%m/%d/%Y').")

    # ---- coordinates
    if "lon" in mapping or (is_vector and "x" not in mapping):
        if is_vector and "lon" not in mapping:
            xs = frame["__x"].to_numpy(dtype=float)
            ys = frame["__y"].to_numpy(dtype=float)
            xcol, ycol = "geometry", "geometry"
            xraw = yraw = pd.Series(np.isfinite(xs)).map({True: "point", False: None})
            source_crs = file_crs or crs  # a file without a CRS (local:m exports) takes crs=
        else:
            xcol, ycol = mapping["lon"], mapping["lat"]
            xraw, yraw = frame[xcol], frame[ycol]
            xs = pd.to_numeric(xraw, errors="coerce").to_numpy(dtype=float)
            ys = pd.to_numeric(yraw, errors="coerce").to_numpy(dtype=float)
            source_crs = "EPSG:4326"
    else:
        xcol, ycol = mapping["x"], mapping["y"]
        xraw, yraw = frame[xcol], frame[ycol]
        xs = pd.to_numeric(xraw, errors="coerce").to_numpy(dtype=float)
        ys = pd.to_numeric(yraw, errors="coerce").to_numpy(dtype=float)
        source_crs = crs
        if source_crs is None:
            raise DataError(
                f"{path}: columns {xcol!r}/{ycol!r} hold projected coordinates but no CRS "
                "was given. Pass --crs EPSG:xxxx (e.g. EPSG:2913 for Oregon North feet, "
                "EPSG:26971 for Illinois East metres), or --crs local:m / local:km for an "
                "unreferenced planar grid."
            )
    bad_x, bad_y = ~np.isfinite(xs), ~np.isfinite(ys)
    if (bad_x | bad_y).any():
        first = int(np.flatnonzero(bad_x | bad_y)[0])
        column, raw = (xcol, xraw) if bad_x[first] else (ycol, yraw)
        flag("is not a number", bad_x | bad_y, column, raw,
             "Coordinates must be numbers; fix or remove the row.")

    if source_crs is None:
        raise DataError(f"{path}: the file has no CRS; pass --crs EPSG:xxxx.")
    geographic = source_crs == "EPSG:4326" or _is_geographic(source_crs)
    if geographic:
        out_lon = np.isfinite(xs) & ((xs < -180) | (xs > 180))
        flag("is outside longitude range -180..180", out_lon, xcol, xraw,
             "Check that longitude and latitude are not swapped (--lon/--lat).")
        out_lat = np.isfinite(ys) & ((ys < -90) | (ys > 90))
        flag("is outside latitude range -90..90", out_lat, ycol, yraw,
             "Check that longitude and latitude are not swapped (--lon/--lat).")

    any_bad = np.zeros(n_rows, dtype=bool)
    for mask in bad.values():
        any_bad |= mask
    dropped: dict[str, int] = {}
    if any_bad.any():
        if not skip_bad_rows:
            reason = next(iter(first_bad))
            others = int(any_bad.sum())
            more = f" ({others} rows in all have problems.)" if others > 1 else ""
            raise DataError(
                f"{first_bad[reason]}{more} Use --skip-bad-rows to drop such rows; they "
                "are counted and reported."
            )
        dropped = {reason: int(mask.sum()) for reason, mask in bad.items()}
    keep = ~any_bad
    xs, ys, times = xs[keep], ys[keep], times[keep]
    if not keep.any():
        raise DataError(f"{path}: every row was bad ({dropped}); nothing to read.")

    # ---- CRS
    if geographic:
        if project:
            target = choose_local_crs(xs, ys)
            sref = SpatialReference(target, 1.0, "EPSG:4326" if source_crs == "EPSG:4326"
                                    else source_crs)
            mx, my = sref.from_crs_coordinates(xs, ys, source=source_crs)
            crs_note = f"lon/lat projected to {target} (UTM zone of the data's centre), metres"
        else:
            sref = SpatialReference("EPSG:4326", float("nan"), "EPSG:4326")
            mx, my = xs, ys
            crs_note = "lon/lat kept in degrees (project=False)"
    else:
        sref = _spatial_reference_for(source_crs)
        mx, my = xs * sref.metres_per_unit, ys * sref.metres_per_unit
        crs_note = (f"{sref.crs} as given, units x {sref.metres_per_unit:g} = metres"
                    if sref.metres_per_unit != 1 else f"{sref.crs} as given, metres")

    def optional(field_name: str, numeric: bool = False) -> np.ndarray | None:
        if field_name not in mapping:
            return None
        values = frame[mapping[field_name]][keep]
        if numeric:
            numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
            if not np.isfinite(numbers).all():
                i = int(np.flatnonzero(~np.isfinite(numbers))[0])
                row = int(np.flatnonzero(keep)[i])
                raise DataError(
                    f"{path} {_row_label(path, row, is_csv)}, column {mapping[field_name]!r}: "
                    f"{values.iloc[i]!r} is not a number (the event {field_name})."
                )
            return numbers
        return values.astype("string").fillna("").to_numpy(dtype=object)

    weight = optional("weight", numeric=True)
    if weight is not None and (weight < 0).any():
        i = int(np.flatnonzero(weight < 0)[0])
        raise DataError(f"{path}: column {mapping['weight']!r} has a negative weight "
                        f"({weight[i]}); weights must be >= 0.")
    events = Events(
        time=times,
        x=mx,
        y=my,
        spatial_reference=sref,
        category=optional("category"),
        weight=weight,
        incident_id=optional("incident_id"),
        mark=optional("mark", numeric=True),
        timezone=timezone,
    )

    filtered: dict[str, int] = {}
    if categories is not None:
        wanted_categories = [c for c in categories if str(c).strip()]
        before = len(events)
        events = events.of_categories(wanted_categories)
        filtered["categories"] = before - len(events)
    if since is not None or until is not None:
        before = len(events)
        events = events.between(since, until)
        filtered["since/until"] = before - len(events)

    report = LoadReport(
        source=str(path),
        n_rows=n_rows,
        n_kept=len(events),
        columns=dict(mapping),
        detected=tuple(detected),
        dropped=dropped,
        filtered=filtered,
        ignored_columns=tuple(c for c in header if c not in wanted),
        crs_note=crs_note,
    )
    from dataclasses import replace

    return replace(events, report=report)


def _is_geographic(crs: str) -> bool:
    if crs.startswith("local:"):
        return False
    from pyproj import CRS

    try:
        return bool(CRS.from_user_input(crs).is_geographic)
    except Exception:
        return False

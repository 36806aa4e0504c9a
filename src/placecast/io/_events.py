"""Read point events from CSV, Parquet, GeoJSON, GeoPackage and shapefiles.

Only the mapped columns (time, location, category, weight, incident id, mark) are read;
every other column is left in the file and never stored.
"""

from __future__ import annotations

import functools
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


_SEPARATORS = {"\\t": "\t", "tab": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}


def _csv_format(path: Path, sep: str | None, encoding: str | None) -> tuple[str, str]:
    """The delimiter and encoding to read a CSV with (checked, defaults filled in)."""
    if sep is None:
        sep = "\t" if _suffix(path) == ".tsv" else ","
    sep = _SEPARATORS.get(sep.lower() if len(sep) > 1 else sep, sep)
    if len(sep) != 1 or sep in "\"\r\n":
        raise ParameterError(f"delimiter {sep!r}: give one character such as ',', ';' or "
                             "'\\t' (tab).", param="sep")
    encoding = encoding or "utf-8"
    import codecs

    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ParameterError(f"encoding {encoding!r} is not one Python knows (e.g. utf-8, "
                             "latin-1, cp1252).", param="encoding") from None
    return sep, encoding


def _first_undecodable(path: Path, encoding: str) -> tuple[int, str]:
    """Line number and a description of the first bytes ``encoding`` cannot decode.

    Runs only after a read failed, so a plain loop over the lines is fine here.
    """
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                raw.decode(encoding)
            except UnicodeDecodeError as exc:
                shown = raw.rstrip(b"\r\n").decode(encoding, errors="replace")
                bad = raw[exc.start:exc.start + 1].hex()
                return number, f"byte 0x{bad} in {shown[:80]!r}"
            except UnicodeError as exc:  # e.g. UTF-16 without a byte-order mark
                return number, f"the text ({exc})"
    return 1, "the text"


def _encoding_error(path: Path, encoding: str) -> DataError:
    line, where = _first_undecodable(path, encoding)
    return DataError(
        f"{path} line {line}: {where} is not valid {encoding} text. The file is probably in "
        "another encoding: give it with `encoding` (latin-1, or cp1252 for files saved by "
        "Windows programs).", param="encoding"
    )


def _header_fields(path: Path, sep: str, encoding: str) -> list[str]:
    """The header line split into fields exactly as written (duplicates kept)."""
    import csv
    import io

    with path.open("rb") as handle:
        head = handle.readline(1 << 20)
    # the header already decoded when pandas read it; undecodable bytes cannot be here
    text = head.decode(encoding, errors="replace")
    text = text.removeprefix("\ufeff")
    first = io.StringIO(text)
    try:
        return [f.strip() for f in next(csv.reader(first, delimiter=sep))]
    except (StopIteration, csv.Error):
        return []


def read_table_header(
    path: Path, *, sep: str | None = None, encoding: str | None = None
) -> list[str]:
    """Return the column names of a tabular or vector file without reading its rows.

    Raises
    ------
    DataError
        If a CSV is empty, cannot be decoded, or its header looks split by another
        delimiter than the one given.
    """
    suffix = _suffix(path)
    if suffix in {".csv", ".txt", ".tsv"}:
        sep, encoding = _csv_format(path, sep, encoding)
        try:
            header = pd.read_csv(path, nrows=0, sep=sep, encoding=encoding)
        except pd.errors.EmptyDataError:
            raise DataError(
                f"{path}: the file is empty; expected a header line such as "
                "'time,x,y' followed by one row per event."
            ) from None
        except UnicodeError:
            raise _encoding_error(path, encoding) from None
        except pd.errors.ParserError as exc:
            raise DataError(f"{path} line 1: the header cannot be read ({exc}). Check its "
                            "quoting.") from None
        columns = [str(c) for c in header.columns]
        if len(columns) == 1:
            for other, name in ((";", "semicolons"), ("\t", "tabs"), ("|", "pipes"),
                                (",", "commas")):
                if other != sep and other in columns[0]:
                    shown = "\\t" if other == "\t" else other
                    raise DataError(
                        f"{path} line 1: the header {columns[0][:60]!r} is one column when "
                        f"split at {sep!r}, but it holds {name}: the delimiter looks "
                        f"wrong. Read it with `sep` '{shown}'.", param="sep"
                    )
        return columns
    if suffix in {".parquet", ".pq"}:
        import pyarrow.parquet as pq

        try:
            geometry = _geoparquet_columns(path)
            return [n for n in pq.read_schema(path).names if n not in geometry]
        except DataError:
            raise
        except Exception as exc:  # pyarrow raises several types for a broken file
            raise DataError(f"{path}: could not read it as Parquet ({exc}).") from None
    import pyogrio

    try:
        info = pyogrio.read_info(path)
    except Exception as exc:  # pyogrio raises several GDAL-derived types
        raise DataError(f"{path}: could not read it as a vector file ({exc}).") from None
    return [str(f) for f in info["fields"]]


def _check_duplicates(path: Path, fields: list[str], mapping: dict[str, str]) -> None:
    """Refuse a header that names a column the events use more than once."""
    used = {p.strip().lower() for v in mapping.values() for p in v.split(",")}
    seen: dict[str, list[int]] = {}
    for position, name in enumerate(fields, start=1):
        seen.setdefault(name.lower(), []).append(position)
    for name, positions in seen.items():
        base = name
        if len(positions) > 1 and (base in used or any(u.rsplit(".", 1)[0] == base
                                                         for u in used)):
            shown = fields[positions[0] - 1]
            raise DataError(
                f"{path} line 1: the header names column {shown!r} {len(positions)} times "
                f"(fields {', '.join(map(str, positions))}), so it is unclear which one "
                "holds the events' values. Rename the duplicates."
            )


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
                    f"Pass the right name with `{field_name}`.", param=field_name
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
                    "Name it with `time` COLUMN.", param="time"
                )
            mapping["time"] = found
            detected.append("time")

    explicit_lonlat = "lon" in mapping or "lat" in mapping
    explicit_xy = "x" in mapping or "y" in mapping
    if explicit_lonlat and explicit_xy:
        raise ParameterError("give either `x`/`y` or `lon`/`lat`, not both.",
                             param=("x", "y", "lon", "lat"))
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
                "Name them with `x`/`y` (projected, with `crs`) or `lon`/`lat`.",
                param=("x", "y", "crs", "lon", "lat"),
            )
    for a, b in (("x", "y"), ("lon", "lat")):
        if (a in mapping) != (b in mapping):
            missing = b if a in mapping else a
            raise ParameterError(f"`{a}` and `{b}` go together: `{missing}` is missing.",
                                 param=(missing, a if missing == b else b))

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


def spatial_reference_for(crs: str) -> SpatialReference:
    """Check a projected CRS and find its metres-per-unit factor."""
    if crs.startswith("local:"):
        unit = crs.split(":", 1)[1] or "m"
        from placecast.quantities import METRES_PER_UNIT

        if unit not in METRES_PER_UNIT:
            raise ParameterError(
                f"`crs` {crs}: unknown local unit {unit!r} (use local:m, local:km or local:ft).",
                param="crs",
            )
        return SpatialReference(crs, METRES_PER_UNIT[unit], crs)
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    try:
        parsed = CRS.from_user_input(crs)
    except CRSError:
        raise ParameterError(
            f"`crs` {crs!r} is not a coordinate reference system pyproj knows "
            "(e.g. EPSG:2913, EPSG:26971).", param="crs"
        ) from None
    if not parsed.is_projected:
        raise ParameterError(
            f"`crs` {crs} is geographic (degrees); for lon/lat columns use `lon`/`lat`, "
            "which projects them to a local metric CRS.", param=("crs", "lon", "lat")
        )
    factor = float(parsed.axis_info[0].unit_conversion_factor)
    name = parsed.to_string()
    return SpatialReference(name, factor, name)


def _read_rows(path: Path, columns: list[str], sep: str | None = None,
               encoding: str | None = None, n_fields: int = 0) -> pd.DataFrame:
    suffix = _suffix(path)
    if suffix in {".csv", ".txt", ".tsv"}:
        sep, encoding = _csv_format(path, sep, encoding)
        try:
            frame = pd.read_csv(path, usecols=columns, dtype=str, sep=sep, encoding=encoding,
                                keep_default_na=False, na_values=[""])
        except UnicodeError:
            raise _encoding_error(path, encoding) from None
        except pd.errors.ParserError as exc:
            raise _parser_error(path, exc) from None
        _check_line_breaks(path, frame)
        _check_field_counts(path, sep, encoding, n_fields)
        return frame
    if suffix in {".parquet", ".pq"}:
        try:
            return pd.read_parquet(path, columns=columns)
        except Exception as exc:  # pyarrow raises several types for a broken file
            raise DataError(f"{path}: could not read it as Parquet ({exc}).") from None
    raise AssertionError(suffix)


def _check_field_counts(path: Path, sep: str, encoding: str, n_fields: int) -> None:
    """Refuse a line with more fields than the header.

    pandas silently drops the extra fields of such a line when only some columns are
    read, and an unquoted delimiter inside a value shifts the values after it into the
    wrong columns. Fields are counted with vectorised byte operations (a delimiter or
    line end counts only outside double quotes, by the parity of the quotes before it),
    in chunks; a line flagged that way is confirmed by parsing it alone.
    """
    import codecs

    if codecs.lookup(encoding).name not in _ASCII_COMPATIBLE:
        return  # delimiter bytes cannot be found without decoding
    delimiter, quote, newline = ord(sep), ord('"'), ord("\n")
    parity = 0  # quotes seen so far, mod 2
    pending = 0  # delimiters on the line still open at the chunk's end
    line_base = 0  # complete lines before the chunk
    checked = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 24):
            data = np.frombuffer(chunk, dtype=np.uint8)
            inside = (np.cumsum(data == quote, dtype=np.uint8) + parity) & 1
            parity = int(inside[-1])
            outside = inside == 0
            ends = np.flatnonzero((data == newline) & outside)
            delimiters = np.flatnonzero((data == delimiter) & outside)
            counts = np.bincount(np.searchsorted(ends, delimiters), minlength=len(ends) + 1)
            counts[0] += pending
            pending = int(counts[-1])
            for line in np.flatnonzero(counts[:-1] >= n_fields)[:20]:
                checked += 1
                _confirm_extra_fields(path, sep, encoding, n_fields, line_base + int(line) + 1)
                if checked >= 20:
                    return
            line_base += len(ends)
    if pending >= n_fields:
        _confirm_extra_fields(path, sep, encoding, n_fields, line_base + 1)


_ASCII_COMPATIBLE = {"utf-8", "ascii", "latin-1", "iso8859-1", "cp1252", "iso8859-15",
                     "cp1250", "cp1251", "mac-roman", "utf-8-sig"}


def _confirm_extra_fields(path: Path, sep: str, encoding: str, n_fields: int,
                          line_number: int) -> None:
    """Parse line ``line_number`` alone; raise if it really has more than ``n_fields``."""
    import csv
    import itertools

    with path.open(encoding=encoding, errors="replace", newline="") as handle:
        line = next(itertools.islice(handle, line_number - 1, None), "")
    fields = next(csv.reader([line], delimiter=sep), [])
    if len(fields) > n_fields:
        raise DataError(
            f"{path} line {line_number}: {len(fields)} fields where the header has "
            f"{n_fields}, so values would land in the wrong columns. Quote values that "
            "contain the delimiter, or check the delimiter (`sep`).", param="sep"
        )


def _parser_error(path: Path, exc: Exception) -> DataError:
    import re

    text = str(exc)
    quote = re.search(r"EOF inside string starting at row (\d+)", text)
    if quote:
        return DataError(
            f"{path} line {int(quote.group(1)) + 1}: a quote (\") opens a field that is never "
            "closed, so the rest of the file would be read as one value. Close or remove "
            "the quote on that line."
        )
    fields = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", text)
    if fields:
        return DataError(
            f"{path} line {fields.group(2)}: {fields.group(3)} fields where the header has "
            f"{fields.group(1)}. Quote values that contain the delimiter, or check the "
            "delimiter (`sep`).", param="sep"
        )
    return DataError(f"{path}: the CSV is malformed ({text}). Check quoting and the number "
                     "of fields per line.")


def _check_line_breaks(path: Path, frame: pd.DataFrame) -> None:
    """Refuse values holding a line break: the sign of a quote that swallowed lines."""
    for column in frame.columns:
        values = frame[column]
        if values.dtype != object and not pd.api.types.is_string_dtype(values):
            continue
        broken = values.str.contains("\n", regex=False, na=False).to_numpy()
        if broken.any():
            i = int(np.flatnonzero(broken)[0])
            line = i + 2 + int(frame.iloc[:i].map(
                lambda v: str(v).count("\n") if isinstance(v, str) else 0).to_numpy().sum())
            raise DataError(
                f"{path} line {line}, column {column!r}: the value "
                f"{str(values.iloc[i])[:60]!r} runs over several lines, which usually "
                "means an unbalanced quote (\") joined rows together. Close or remove the "
                "quote."
            )


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
                        "file again, or drop the metadata and give `x`/`y`.",
                        param=("x", "y")) from None


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


#: The dates datetime64[ns] holds, rounded inwards to whole days.
FIRST_DATE = np.datetime64("1677-09-22")
LAST_DATE = np.datetime64("2262-04-11")

# An ISO 8601 date with a day (2017-03-01, 2017-3-1, 20170301), optionally followed by a time.
_ISO_DATE = r"^[+-]?\d{4}-\d{1,2}-\d{1,2}(?:[T ]|$)|^\d{8}(?:T|$)"
# A UTC offset at the end (Z, +01:00, -0800, +05), after a time of day (\d:\d\d): two
# simple patterns run much faster over a column than one that says both.
_OFFSET = r"(?:Z|[+-]\d{2}(?::?\d{2})?)$"
_TIME_OF_DAY = r"\d:\d\d"
# day/month/year or month/day/year (slashes or dots), four-digit year, anything after.
_SLASH_DATE = r"^(\d{1,2})[/.](\d{1,2})[/.](\d{4})(.*)$"
_SLASH_START = r"^\d{1,2}[/.]\d{1,2}[/.]\d{4}"
# year/month/day with slashes or dots: unambiguous, read as ISO.
_YMD_SLASH = r"^(\d{4})[/.](\d{1,2})[/.](\d{1,2})"
_YMD_SLASH_START = r"^\d{4}[/.]\d{1,2}[/.]\d{1,2}"


@dataclass(frozen=True, slots=True)
class _TimeColumn:
    """Where a time column came from, for error messages."""

    path: Path
    column: str
    label: Any  # Callable[[int], str]: row index -> "row 7"

    def at(self, index: int, value: Any) -> str:
        return f"{self.path} {self.label(index)}, column {self.column!r}: {str(value)!r}"


def _to_ns(values: Any) -> tuple[np.ndarray, np.ndarray]:
    """Datetimes of any resolution as datetime64[ns]; out-of-range values become NaT.

    Returns the times and a mask of the values that were outside 1677-09-22..2262-04-11
    (datetime64[ns] cannot hold them; a plain cast would wrap them to other dates).
    """
    array = np.asarray(values)
    if array.dtype.kind != "M":
        array = array.astype("datetime64[ns]")
    nat = np.isnat(array)
    outside = ~nat & ((array < FIRST_DATE) | (array >= LAST_DATE))
    if outside.any():
        array = array.copy()
        array[outside] = np.datetime64("NaT")
    return array.astype("datetime64[ns]"), outside


def _check_timezone(timezone: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ParameterError(f"`timezone` {timezone!r} is not a known time zone "
                             "(use an IANA name such as America/Los_Angeles).",
                             param="timezone") from None


def _to_wall_clock(parsed: pd.Series, timezone: str | None) -> pd.Series:
    """Offset-aware times converted to ``timezone`` (default UTC), offsets dropped."""
    if getattr(parsed.dt, "tz", None) is None:
        return parsed
    return parsed.dt.tz_convert(timezone or "UTC").dt.tz_localize(None)


def _slash_dates_to_iso(text: pd.Series, where: _TimeColumn) -> pd.Series:
    """Rewrite d/m/yyyy or m/d/yyyy dates as ISO, with one reading for the whole column.

    Refuses a column where both readings fit (``01/02/2017``: 1 February or 2 January?)
    or neither does, rather than guessing row by row.
    """
    if not text.str.contains(_SLASH_START, regex=True, na=False).any():
        return text  # the usual case, found by one vectorised match
    parts = text.str.extract(_SLASH_DATE)
    is_slash = parts[0].notna().to_numpy()
    first = parts[0][is_slash].astype(int).to_numpy()
    second = parts[1][is_slash].astype(int).to_numpy()
    rows = np.flatnonzero(is_slash)
    month_first = bool((first <= 12).all())
    day_first = bool((second <= 12).all())
    fix = ("Give the format with `time_format` '%d/%m/%Y' (day first) or '%m/%d/%Y' "
           "(month first), adding ' %H:%M' if there is a time of day.")
    if month_first and day_first and (first != second).any():
        i = rows[int(np.flatnonzero(first != second)[0])]
        raise DataError(
            f"{where.at(i, text.iloc[i])} and every other slash date in the column read as "
            "a valid date both day-first and month-first, so the dates are ambiguous. "
            + fix, param="time_format")
    if not month_first and not day_first:
        i = rows[int(np.flatnonzero(first > 12)[0])]
        j = rows[int(np.flatnonzero(second > 12)[0])]
        raise DataError(
            f"{where.at(i, text.iloc[i])} can only be day-first but {where.label(j)} "
            f"{str(text.iloc[j])!r} can only be month-first: the column mixes both orders. "
            + fix, param="time_format")
    month, day = (parts[0], parts[1]) if month_first else (parts[1], parts[0])
    iso = (parts[2] + "-" + month.str.zfill(2) + "-" + day.str.zfill(2) + parts[3])
    out = text.copy()
    out[is_slash] = iso[is_slash]
    return out


def _parse_times(
    raw: pd.Series, time_format: str | None, timezone: str | None, where: _TimeColumn
) -> tuple[np.ndarray, str | None, np.ndarray]:
    """Parse times exactly, never guessing a format row by row.

    Returns
    -------
    times : ndarray of datetime64[ns]
        Wall-clock times in ``timezone``, NaT where a value is missing or not a date.
    timezone : str or None
        The zone of the times (UTC when they carried offsets and none was given).
    outside : ndarray of bool
        Values that are dates but outside 1678-2261, which placecast cannot hold.
    """
    if timezone is not None:
        _check_timezone(timezone)
    if pd.api.types.is_datetime64_any_dtype(raw):
        parsed = pd.Series(raw)
        if getattr(parsed.dt, "tz", None) is not None:
            timezone = timezone or "UTC"
        times, outside = _to_ns(_to_wall_clock(parsed, timezone))
        return times, timezone, outside
    if time_format and time_format.startswith("days since "):
        origin = to_datetime64(time_format.removeprefix("days since "), name="time_format")
        numbers = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
        finite = np.isfinite(numbers)
        seconds = origin.astype("datetime64[s]")  # nanoseconds would overflow here
        low = (FIRST_DATE - seconds) / np.timedelta64(1, "D")
        high = (LAST_DATE - seconds) / np.timedelta64(1, "D")
        outside = finite & ((numbers < low) | (numbers >= high))
        ok = finite & ~outside
        times = np.full(len(numbers), np.datetime64("NaT"), dtype="datetime64[ns]")
        times[ok] = origin + np.round(numbers[ok] * 86400e9).astype("timedelta64[ns]")
        return times, timezone, outside

    text = raw.astype("string").str.strip()
    if time_format:
        try:
            parsed = pd.to_datetime(text, format=time_format, errors="coerce")
        except (ValueError, TypeError):
            parsed = pd.to_datetime(text, format=time_format, errors="coerce", utc=True)
        if getattr(parsed.dt, "tz", None) is not None:
            timezone = timezone or "UTC"
        times, outside = _to_ns(_to_wall_clock(parsed, timezone))
        return times, timezone, outside

    text = _slash_dates_to_iso(text, where)
    if text.str.contains(_YMD_SLASH_START, regex=True, na=False).any():
        text = text.str.replace(_YMD_SLASH, r"\1-\2-\3", regex=True)
    iso = text.str.contains(_ISO_DATE, regex=True, na=False).to_numpy()
    offset = (iso & text.str.contains(_OFFSET, regex=True, na=False).to_numpy()
              & text.str.contains(_TIME_OF_DAY, regex=True, na=False).to_numpy())
    naive = iso & ~offset
    if offset.any() and naive.any():
        if timezone is None:
            i, j = int(np.flatnonzero(naive)[0]), int(np.flatnonzero(offset)[0])
            raise DataError(
                f"{where.at(i, text.iloc[i])} has no UTC offset but {where.label(j)} "
                f"{str(text.iloc[j])!r} has one: the column mixes local and offset times. "
                "Give the zone of the times without an offset with `timezone` (e.g. "
                "America/Los_Angeles); times with an offset are converted to it.",
                param="timezone",
            )
    times = np.full(len(text), np.datetime64("NaT"), dtype="datetime64[ns]")
    outside = np.zeros(len(text), dtype=bool)
    if offset.any():
        timezone = timezone or "UTC"
        aware = pd.to_datetime(text[offset], format="ISO8601", errors="coerce", utc=True)
        times[offset], outside[offset] = _to_ns(_to_wall_clock(aware, timezone))
    if naive.any():
        try:
            local = pd.to_datetime(text[naive], format="ISO8601", errors="coerce")
        except (ValueError, TypeError):
            # some value carries a zone written in a way the offset pattern missed
            bad = int(np.flatnonzero(naive)[0])
            raise DataError(
                f"{where.at(bad, text.iloc[bad])}: the column mixes times with and without "
                "a time zone in a form placecast cannot separate. Write offsets as +01:00 "
                "or Z, or give the format with `time_format`.", param="time_format"
            ) from None
        if getattr(local.dt, "tz", None) is not None:
            local = _to_wall_clock(local, timezone)
        times[naive], outside[naive] = _to_ns(local)
    return times, timezone, outside


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
    encoding: str | None = None,
    sep: str | None = None,
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
        for numeric times. Default: ISO 8601 with a full date, with or without time of day
        and offset; dates written ``d/m/yyyy`` or ``m/d/yyyy`` are read only when one order
        fits every such date in the column (never guessed row by row).
    timezone : str, optional
        IANA zone. Times carrying an offset are converted to it (default UTC); naive times
        are taken to be in it. A column mixing both needs it.
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
    encoding : str, optional
        Text encoding of a CSV (default UTF-8), e.g. ``"latin-1"``.
    sep : str, optional
        Field delimiter of a CSV (default ``","``, tab for ``.tsv``).

    Returns
    -------
    Events
        With ``report`` describing columns used, rows dropped and the CRS chosen.

    Raises
    ------
    DataError
        For a missing or empty file, bytes the encoding cannot decode, an unbalanced
        quote, a delimiter that looks wrong, a missing or duplicated column, an
        unparseable or ambiguous date or one outside 1678-2261, a column mixing local and
        offset times without ``timezone``, a missing, non-numeric or infinite coordinate,
        lon/lat out of range, or coordinates outside the area where ``crs`` is used
        (naming file, row and column; most of the rows outside is a wrong CRS).
    ParameterError
        For contradictory or unknown options.

    Notes
    -----
    Bad rows are flagged with vectorised checks; only error messages look at single rows.
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
    header = read_table_header(path, sep=sep, encoding=encoding)
    has_geometry = is_vector and not (given.x or given.lon)
    mapping, detected = _resolve_columns(path, header, given, has_geometry)
    if is_csv:
        _check_duplicates(path, _header_fields(path, *_csv_format(path, sep, encoding)),
                          mapping)
    _check_swapped_names(mapping, detected)
    if crs is not None and not is_vector and "x" in mapping and not _is_geographic(crs):
        spatial_reference_for(crs)  # an unknown or geographic CRS fails before any work
    wanted = sorted({p.strip() for v in mapping.values() for p in v.split(",")})

    file_crs: str | None = None
    if is_vector:
        frame, file_crs = _read_vector(path, wanted)
    else:
        frame = _read_rows(path, wanted, sep=sep, encoding=encoding, n_fields=len(header))
    n_rows = len(frame)
    if n_rows == 0:
        raise DataError(f"{path}: the file has a header but no rows of events.")

    # ---- time
    time_columns = [p.strip() for p in mapping["time"].split(",")]
    raw_time = frame[time_columns[0]]
    for extra in time_columns[1:]:
        raw_time = raw_time.astype("string") + " " + frame[extra].astype("string")
    times, timezone, outside_dates = _parse_times(
        raw_time, time_format, timezone,
        _TimeColumn(path, mapping["time"], lambda i: _row_label(path, i, is_csv)))

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

    flag("is not a date", np.isnat(times) & ~outside_dates, mapping["time"], raw_time,
         "Expected ISO 8601 with a full date (e.g. 2016-12-01 or 2016-12-01T14:30); give "
         "another format with `time_format` (e.g. '%m/%d/%Y').")
    flag("is outside the years 1678-2261", outside_dates, mapping["time"], raw_time,
         "placecast holds times in nanoseconds, which reach only that far; fix the date or "
         "remove the row.")

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
                "was given. Pass `crs` EPSG:xxxx (e.g. EPSG:2913 for Oregon North feet, "
                "EPSG:26971 for Illinois East metres), or `crs` local:m / local:km for an "
                "unreferenced planar grid.", param="crs"
            )
    def flag_either(reason: str, bad_x: np.ndarray, bad_y: np.ndarray, fix: str) -> None:
        if (bad_x | bad_y).any():
            first = int(np.flatnonzero(bad_x | bad_y)[0])
            column, raw = (xcol, xraw) if bad_x[first] else (ycol, yraw)
            flag(reason, bad_x | bad_y, column, raw, fix)

    flag_either("is not a number", np.isnan(xs), np.isnan(ys),
                "Coordinates must be numbers; fix or remove the row.")
    flag_either("is infinite", np.isinf(xs), np.isinf(ys),
                "Coordinates must be finite numbers; fix or remove the row.")

    if source_crs is None:
        raise DataError(f"{path}: the file has no CRS; pass `crs` EPSG:xxxx.", param="crs")
    geographic = source_crs == "EPSG:4326" or _is_geographic(source_crs)
    if not geographic:
        sref = spatial_reference_for(source_crs)
        if sref.is_local:
            far = 2e7 / sref.metres_per_unit  # 20,000 km: half the Earth's circumference
            flag_either("is not a plausible coordinate (more than 20,000 km from the "
                        "origin)", np.isfinite(xs) & (np.abs(xs) > far),
                        np.isfinite(ys) & (np.abs(ys) > far),
                        "Fix or remove the row.")
        else:
            outside = _outside_crs_area(path, source_crs, xs, ys, xcol, ycol)
            if outside is not None:
                flag_either(f"lies outside the area where {source_crs} is used",
                            outside[0], outside[1],
                            "Fix or remove the row (a coordinate of 0 often stands for "
                            "'unknown').")
    if geographic:
        out_lon = np.isfinite(xs) & ((xs < -180) | (xs > 180))
        flag("is outside longitude range -180..180", out_lon, xcol, xraw,
             "Check that longitude and latitude are not swapped (`lon`/`lat`).")
        out_lat = np.isfinite(ys) & ((ys < -90) | (ys > 90))
        flag("is outside latitude range -90..90", out_lat, ycol, yraw,
             "Check that longitude and latitude are not swapped (`lon`/`lat`).")

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
                f"{first_bad[reason]}{more} Use `skip_bad_rows` to drop such rows; they "
                "are counted and reported.",
                # the fixes of the row checks above may name these too
                param=("skip_bad_rows", "time_format", "lon", "lat"),
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
                    f"{values.iloc[i]!r} is not a number (the event {field_name}).",
                    param=field_name,
                )
            return numbers
        return values.astype("string").fillna("").to_numpy(dtype=object)

    weight = optional("weight", numeric=True)
    if weight is not None and (weight < 0).any():
        i = int(np.flatnonzero(weight < 0)[0])
        raise DataError(f"{path}: column {mapping['weight']!r} has a negative weight "
                        f"({weight[i]}); weights must be >= 0.", param="weight")
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


def _check_swapped_names(mapping: dict[str, str], detected: list[str]) -> None:
    """Refuse ``lon``/``lat`` (or ``x``/``y``) given columns whose names say the opposite."""
    for a, b, names_a, names_b in (("lon", "lat", CANDIDATES["lon"], CANDIDATES["lat"]),
                                   ("x", "y", CANDIDATES["x"], CANDIDATES["y"])):
        if a not in mapping or a in detected:
            continue
        col_a, col_b = mapping[a].lower(), mapping[b].lower()
        if col_a in names_b or col_b in names_a:
            raise ParameterError(
                f"`{a}` {mapping[a]!r} and `{b}` {mapping[b]!r} look swapped: the column "
                f"names say {mapping[a]!r} is a {b} and {mapping[b]!r} a {a}. Give "
                f"`{a}` {mapping[b]} `{b}` {mapping[a]}.", param=(a, b)
            )


@functools.lru_cache(maxsize=32)
def _crs_area(crs: str) -> tuple[tuple[float, float, float, float], str] | None:
    """Where ``crs`` is used, in its own units and widened by a margin, and its name.

    The margin is half the area's width and height (at least 100 km), so data just over
    a zone's edge pass while data in another part of the world do not.
    """
    from pyproj import CRS, Transformer

    try:
        parsed = CRS.from_user_input(crs)
        area = parsed.area_of_use
        if area is None or area.west > area.east:  # unknown, or across the antimeridian
            return None
        to_crs = Transformer.from_crs("EPSG:4326", parsed, always_xy=True)
        xmin, ymin, xmax, ymax = to_crs.transform_bounds(area.west, area.south, area.east,
                                                         area.north, densify_pts=21)
        unit = float(parsed.axis_info[0].unit_conversion_factor)
    except Exception:  # pyproj raises several types for CRSs without a usable area
        return None
    if not all(np.isfinite([xmin, ymin, xmax, ymax])) or xmin >= xmax or ymin >= ymax:
        return None
    margin = 100_000.0 / unit
    dx = max(0.5 * (xmax - xmin), margin)
    dy = max(0.5 * (ymax - ymin), margin)
    return (xmin - dx, ymin - dy, xmax + dx, ymax + dy), (
        f"{parsed.name}: {' - '.join(area.name.split(' - ')[:2])}")


def _outside_crs_area(
    path: Path, crs: str, xs: np.ndarray, ys: np.ndarray, xcol: str, ycol: str
) -> tuple[np.ndarray, np.ndarray] | None:
    """Masks of x and y values outside where ``crs`` is used (None if it has no area).

    Raises
    ------
    DataError
        When most of the coordinates lie outside: the CRS is wrong, not a few rows.
    """
    found = _crs_area(crs)
    if found is None:
        return None
    (xmin, ymin, xmax, ymax), name = found
    finite = np.isfinite(xs) & np.isfinite(ys)
    out_x = finite & ((xs < xmin) | (xs > xmax))
    out_y = finite & ((ys < ymin) | (ys > ymax))
    n_out, n = int((out_x | out_y).sum()), int(finite.sum())
    if n and n_out > 0.5 * n:
        fx, fy = xs[finite], ys[finite]
        hints = []
        if (np.abs(fx) <= 180).all() and (np.abs(fy) <= 90).all():
            hints.append("the numbers look like degrees: read them with `lon`/`lat` "
                         "instead of `x`/`y` and `crs`")
        inside_swapped = ((fy >= xmin) & (fy <= xmax) & (fx >= ymin) & (fx <= ymax)).mean()
        if inside_swapped > 0.5:
            hints.append(f"with x and y swapped they would fit: give `x` {ycol} `y` {xcol}")
        hint = ("; " + "; ".join(hints)) if hints else ""
        raise DataError(
            f"{path}: {n_out:,} of {n:,} events lie outside the area where {crs} ({name}) "
            f"is used. The events span x {fx.min():,.0f} .. {fx.max():,.0f}, y "
            f"{fy.min():,.0f} .. {fy.max():,.0f}; {crs} covers about x {xmin:,.0f} .. "
            f"{xmax:,.0f}, y {ymin:,.0f} .. {ymax:,.0f} (both in {crs}'s units, with a "
            f"margin). The coordinates are probably in another CRS: check `crs`{hint}.",
            param=("crs", "x", "y", "lon", "lat"),
        )
    return out_x, out_y

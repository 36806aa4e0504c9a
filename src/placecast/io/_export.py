"""Exports for the tools users already have: GeoPackage, shapefile, GeoParquet, NIJ, ...

* GeoPackage (``.gpkg``) and shapefile (``.shp``, or ``.zip`` for a zipped one) open in
  QGIS and ArcGIS; GeoParquet (``.parquet``) in GeoPandas, DuckDB, QGIS 3.30+; GeoJSON
  (``.geojson``) anywhere; events also as CSV (``.csv``).
* Every events export reads back with ``read_events`` (and ``placecast ingest``) to the
  same events: times, coordinates, category, weight, incident id and mark (precision and
  time zones: see ``export_events``).
* The NIJ Real-Time Crime Forecasting Challenge submission format: a shapefile of every
  cell with an integer field ``hotspot`` (1 = forecast hot spot, 0 = not), in the
  challenge's projection EPSG:2913 (NAD 1983 HARN StatePlane Oregon North, international
  feet), with cells of 62,500-360,000 sq ft flagging 0.25-0.75 sq mi in all
  (National Institute of Justice, 2017, Table 2 and FAQ Q-1).

Forecast layers have ``unit_id, intensity, rank`` and, when a hot-spot area is given,
``hotspot``; event layers have ``time`` and the event fields present. Files appear only
when complete: every component of a shapefile is written in a temporary folder first.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from placecast.events import Events
from placecast.exceptions import ParameterError
from placecast.forecast import Forecast
from placecast.io._atomic import atomic_path
from placecast.quantities import SQUARE_METRES_PER_UNIT, parse_area

__all__ = ["EXPORT_FORMATS", "NIJ_CRS", "export_events", "export_forecast", "nij_check"]

#: Format name -> what it writes.
EXPORT_FORMATS = {
    "gpkg": "GeoPackage layer",
    "shp": "ESRI shapefile (.shp + .shx/.dbf/.prj/.cpg; .zip for one zipped file)",
    "geoparquet": "GeoParquet (WKB geometry, CRS in the metadata)",
    "geojson": "GeoJSON (GDAL; coordinates in the output CRS, named in the file)",
    "csv": "CSV of events: time, x/y (or longitude/latitude), fields (events only)",
    "nij": "NIJ challenge submission: shapefile of all cells with hotspot = 1/0, EPSG:2913",
}
_SUFFIXES = {".gpkg": "gpkg", ".shp": "shp", ".zip": "shp", ".parquet": "geoparquet",
             ".geoparquet": "geoparquet", ".geojson": "geojson", ".csv": "csv"}
_SHAPEFILE_PARTS = (".shp", ".shx", ".dbf", ".prj", ".cpg")

#: The NIJ challenge's projection (Oregon North, international feet).
NIJ_CRS = "EPSG:2913"
#: NIJ limits, square metres: each cell 62,500-360,000 sq ft; total 0.25-0.75 sq mi.
NIJ_CELL_AREA = (62_500 * SQUARE_METRES_PER_UNIT["sqft"], 360_000 * SQUARE_METRES_PER_UNIT["sqft"])
NIJ_TOTAL_AREA = (0.25 * SQUARE_METRES_PER_UNIT["sqmi"], 0.75 * SQUARE_METRES_PER_UNIT["sqmi"])


def _resolve_format(path: Path, format: str | None) -> str:
    if format is not None:
        kind = format.lower().lstrip(".")
        kind = {"parquet": "geoparquet", "shapefile": "shp"}.get(kind, kind)
        if kind not in EXPORT_FORMATS:
            raise ParameterError(
                f"unknown export format {format!r}; use one of {', '.join(EXPORT_FORMATS)}.",
                param="format",
            )
        return kind
    suffix_kind = _SUFFIXES.get(path.suffix.lower())
    if suffix_kind is None:
        raise ParameterError(
            f"{path}: cannot tell the export format from {path.suffix!r}; use .gpkg, .shp, "
            ".zip (zipped shapefile), .parquet, .geojson or .csv, or give the format "
            f"({', '.join(EXPORT_FORMATS)}).", param="format"
        )
    return suffix_kind


def hotspot_flags(forecast: Forecast, area: str | float) -> np.ndarray:
    """1 for the highest-ranked units whose total area stays within ``area``, else 0.

    ``area`` is anything ``parse_area`` takes (``"0.25sqmi"``, ``"1%"``, square metres).
    """
    budget = parse_area(area, name="hot-spot area").resolve(forecast.units.region_area)
    flags = np.zeros(len(forecast.units), dtype=np.int32)
    flags[forecast.top_units(budget)] = 1
    return flags


def nij_check(forecast: Forecast, flags: np.ndarray) -> list[str]:
    """Ways a forecast with hot spots ``flags`` breaks the NIJ submission rules (none: ``[]``).

    Checks that every cell is 62,500-360,000 sq ft and that the flagged cells cover
    0.25-0.75 sq mi.
    """
    problems = []
    area = forecast.units.area
    lo, hi = NIJ_CELL_AREA
    bad = (area < lo * (1 - 1e-9)) | (area > hi * (1 + 1e-9))
    if bad.any():
        sqft = area[bad] / SQUARE_METRES_PER_UNIT["sqft"]
        problems.append(
            f"{int(bad.sum())} cells are outside NIJ's 62,500-360,000 sq ft (e.g. "
            f"{sqft[0]:,.0f} sq ft); use a cell size between 250ft and 600ft."
        )
    flagged = float(area[flags.astype(bool)].sum())
    if not NIJ_TOTAL_AREA[0] * (1 - 1e-9) <= flagged <= NIJ_TOTAL_AREA[1] * (1 + 1e-9):
        problems.append(
            f"the hot spots cover {flagged / SQUARE_METRES_PER_UNIT['sqmi']:.4f} sq mi, "
            "outside NIJ's 0.25-0.75 sq mi; give an area between 0.25sqmi and 0.75sqmi "
            "that holds at least 0.25 sq mi of whole cells."
        )
    return problems


def export_forecast(
    forecast: Forecast,
    path: str | os.PathLike[str],
    *,
    format: str | None = None,
    hotspot_area: str | float | None = None,
    crs: str | None = None,
) -> Path:
    """Write a forecast for GIS tools or as an NIJ challenge submission.

    Parameters
    ----------
    forecast : Forecast
        The forecast.
    path : path-like
        Output file; the format follows the suffix (``.gpkg``, ``.shp``, ``.zip``,
        ``.parquet``) unless ``format`` is given.
    format : {"gpkg", "shp", "geoparquet", "nij"}, optional
        ``"nij"`` writes the NIJ submission shapefile (``.shp`` or ``.zip``).
    hotspot_area : str or float, optional
        Add ``hotspot`` = 1 for the top-ranked units within this area (``"0.25sqmi"``,
        ``"1%"``, m²). Required for ``"nij"``.
    crs : str, optional
        CRS of the output geometry; default the CRS the events came in (NIJ: EPSG:2913).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ParameterError
        For an unknown format, or an NIJ export that breaks the challenge's rules (cell
        sizes, flagged area) or lacks ``hotspot_area``.
    """
    path = Path(path)
    kind = _resolve_format(path, format)
    if kind == "csv":
        raise ParameterError(f"{path}: CSV export is for events; export a forecast as .gpkg, "
                             ".shp, .parquet or .geojson (or use the forecast command's CSV).")
    flags = None
    if kind == "nij":
        if hotspot_area is None:
            raise ParameterError(
                "the NIJ format needs the hot-spot area: give `hotspot_area` between 0.25sqmi "
                "and 0.75sqmi.", param="hotspot_area"
            )
        if path.suffix.lower() not in (".shp", ".zip"):
            raise ParameterError(f"{path}: an NIJ submission is a shapefile; name it .shp "
                                 "or .zip.")
        flags = hotspot_flags(forecast, hotspot_area)
        problems = nij_check(forecast, flags)
        if problems:
            raise ParameterError("not a valid NIJ submission: " + " ".join(problems))
        crs = crs or NIJ_CRS
    elif hotspot_area is not None:
        flags = hotspot_flags(forecast, hotspot_area)
    gdf = forecast.units.to_geodataframe(crs)
    _check_geojson_crs(kind, None if gdf.crs is None else str(gdf.crs), path)
    gdf["intensity"] = forecast.intensity
    gdf["rank"] = forecast.rank
    if flags is not None:
        gdf["hotspot"] = flags
    if kind == "nij":
        gdf = gdf[["unit_id", "hotspot", "intensity", "rank", "geometry"]]
    else:
        gdf = gdf.sort_values("rank", kind="stable").reset_index(drop=True)
    _write(gdf, path, "shp" if kind == "nij" else kind, layer="forecast")
    return path


def export_events(events: Events, path: str | os.PathLike[str], *, format: str | None = None,
                  crs: str | None = None) -> Path:
    """Write events as points (``.gpkg``, ``.shp``/``.zip``, ``.parquet``, ``.geojson``) or CSV.

    Every format reads back with ``placecast.io.read_events`` to the same events.

    Parameters
    ----------
    events : Events
        The events.
    path : path-like
        Output file; the format follows the suffix unless ``format`` is given.
    format : {"gpkg", "shp", "geoparquet", "geojson", "csv"}, optional
        The format.
    crs : str, optional
        CRS of the output coordinates (default the CRS the events came in).

    Returns
    -------
    Path
        ``path``.

    Notes
    -----
    Fields are ``time``, ``category``, ``weight``, ``incident_id`` (``uid`` in a
    shapefile, whose names stop at 10 characters) and ``mark``, when the events have
    them. Times are the events' wall-clock times without a zone (read them back with the
    same time zone when the events had one); GeoPackage keeps milliseconds, shapefile and
    CSV whole seconds unless a time has a fraction (CSV then keeps it). A CSV holds
    ``longitude``/``latitude`` for a geographic output CRS, else ``x``/``y`` in the output
    CRS, which the reader must then be told (``crs=``, ``--crs``): a CSV cannot name it.
    Coordinates are written with full precision (GeoJSON: 15 significant digits).

    Raises
    ------
    ParameterError
        For an unknown format or the NIJ format (forecasts only).
    """
    import geopandas as gpd

    path = Path(path)
    kind = _resolve_format(path, format)
    if kind == "nij":
        raise ParameterError("the NIJ format is for forecasts (cells), not events.",
                             param="format")
    sref = events.spatial_reference
    target = crs or sref.source_crs
    x, y = sref.to_crs_coordinates(events.x, events.y, None if target == sref.crs else target)
    data: dict[str, Any] = {"time": pd.to_datetime(events.time)}
    if kind in ("shp", "csv"):
        whole = bool((data["time"] == data["time"].floor("s")).all())
        data["time"] = data["time"].strftime("%Y-%m-%dT%H:%M:%S" if whole
                                             else "%Y-%m-%dT%H:%M:%S.%f")
    for name in ("category", "weight", "incident_id", "mark"):
        value = getattr(events, name)
        if value is not None:
            data["uid" if kind == "shp" and name == "incident_id" else name] = value
    if kind == "csv":
        _write_csv(data, x, y, target, path)
        return path
    _check_geojson_crs(kind, target, path)
    gdf = gpd.GeoDataFrame(data, geometry=gpd.points_from_xy(x, y),
                           crs=None if target.startswith("local:") else target)
    _write(gdf, path, kind, layer="events")
    return path


def _write_csv(data: dict[str, Any], x: np.ndarray, y: np.ndarray, crs: str,
               path: Path) -> None:
    from pyproj import CRS

    geographic = not crs.startswith("local:") and CRS.from_user_input(crs).is_geographic
    names = ("longitude", "latitude") if geographic else ("x", "y")
    frame = pd.DataFrame({"time": data.pop("time"), names[0]: x, names[1]: y, **data})
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def _check_geojson_crs(kind: str, crs: str | None, path: Path) -> None:
    """GeoJSON without a CRS means longitude/latitude: refuse unreferenced coordinates."""
    if kind == "geojson" and (crs is None or crs.startswith("local:")):
        raise ParameterError(
            f"{path}: GeoJSON cannot hold unreferenced ({crs or 'local'}) coordinates: a "
            "reader would take them as longitude/latitude. Export to .gpkg, .parquet or "
            ".csv instead.")


def _write(gdf: Any, path: Path, kind: str, *, layer: str) -> None:
    import warnings

    with warnings.catch_warnings():
        # Unreferenced (local:) coordinates are written without a CRS on purpose.
        warnings.filterwarnings("ignore", message="'crs' was not provided")
        _write_file(gdf, path, kind, layer=layer)


def _write_file(gdf: Any, path: Path, kind: str, *, layer: str) -> None:
    if kind in ("gpkg", "geoparquet", "geojson"):
        with atomic_path(path) as tmp:
            if kind == "gpkg":
                gdf.to_file(tmp, driver="GPKG", layer=layer)
            elif kind == "geojson":
                gdf.to_file(tmp, driver="GeoJSON", COORDINATE_PRECISION=15)
            else:
                gdf.to_parquet(tmp, index=False)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{path.stem}.", dir=path.parent) as folder:
        shp = Path(folder) / f"{path.stem}.shp"
        gdf.to_file(shp, driver="ESRI Shapefile", encoding="UTF-8")
        parts = [shp.with_suffix(s) for s in _SHAPEFILE_PARTS if shp.with_suffix(s).exists()]
        if path.suffix.lower() == ".zip":
            with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w",
                                                           zipfile.ZIP_DEFLATED) as archive:
                for part in parts:
                    archive.write(part, part.name)
            return
        for part in parts:  # the .shp last, so a reader never sees it without its parts
            if part.suffix != ".shp":
                shutil.move(part, path.with_suffix(part.suffix))
        shutil.move(shp, path)

"""Write forecasts: CSV (WKT in the input CRS), GeoPackage, GeoParquet, GeoJSON (WGS 84)."""

from __future__ import annotations

import os
from pathlib import Path

from placecast.exceptions import ParameterError
from placecast.forecast import Forecast
from placecast.io._atomic import atomic_path

__all__ = ["FORECAST_FORMATS", "write_forecast"]

FORECAST_FORMATS = {".csv": "csv", ".gpkg": "gpkg", ".parquet": "geoparquet",
                    ".geoparquet": "geoparquet", ".geojson": "geojson", ".json": "geojson"}


def write_forecast(forecast: Forecast, path: str | os.PathLike[str]) -> Path:
    """Write a forecast; the format follows the file suffix.

    Columns are ``unit_id, geometry, intensity, rank`` (rank 1 = highest), then the
    forecast's ``details`` columns if any (e.g. explanations). CSV holds WKT
    in the CRS the events came in; GeoPackage and GeoParquet keep that CRS; GeoJSON is
    WGS 84 lon/lat, as RFC 7946 requires. The file appears only when complete.

    Raises
    ------
    ParameterError
        For an unknown suffix.
    """
    path = Path(path)
    kind = FORECAST_FORMATS.get(path.suffix.lower())
    if kind is None:
        raise ParameterError(
            f"{path}: unknown output format {path.suffix!r}; use .csv, .gpkg, .parquet or "
            ".geojson."
        )
    with atomic_path(path) as tmp:
        if kind == "csv":
            forecast.to_frame(geometry=True).to_csv(tmp, index=False, float_format="%.6g")
            return path
        crs = "EPSG:4326" if kind == "geojson" else None
        frame = forecast.to_frame()
        gdf = forecast.units.to_geodataframe(crs)
        gdf = gdf.merge(frame, on="unit_id").sort_values("rank", kind="stable")
        extra = [] if forecast.details is None else list(forecast.details.columns)
        gdf = gdf[["unit_id", "geometry", "intensity", "rank", *extra]]
        if kind == "geoparquet":
            gdf.to_parquet(tmp, index=False)
        elif kind == "gpkg":
            gdf.to_file(tmp, driver="GPKG", layer="forecast")
        else:
            gdf.to_file(tmp, driver="GeoJSON")
    return path

"""Emerging hot spot results as files: written by ``placecast hotspots``, read by the report.

Every format :func:`write_hotspots` writes, :func:`read_hotspots` reads back into the
table the report takes (``unit_id``, ``category``), so ``placecast hotspots -o FILE`` can
be the ``--hotspots`` input of ``placecast report``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from placecast.exceptions import DataError, ParameterError

__all__ = ["HOTSPOT_FORMATS", "read_hotspots", "write_hotspots"]

#: Suffixes :func:`write_hotspots` writes (GeoJSON and GeoPackage with the unit polygons).
HOTSPOT_FORMATS = (".geojson", ".gpkg", ".csv")
#: Suffixes :func:`read_hotspots` reads: those, plus a Parquet table.
_READABLE = (*HOTSPOT_FORMATS, ".parquet")


def _suffix(path: Path, allowed: tuple[str, ...], param: str) -> str:
    suffix = path.suffix.lower()
    if suffix not in allowed:
        raise ParameterError(f"{path}: a hot spot file ends in {', '.join(allowed)}; give "
                             f"`{param}` one of these suffixes.", param=param)
    return suffix


def write_hotspots(result: Any, path: str | os.PathLike[str]) -> Path:
    """Write an emerging hot spot result, one row per unit, atomically.

    Parameters
    ----------
    result : EmergingHotSpotResult
        What :func:`emerging_hot_spots` found (with units, for the map formats).
    path : path-like
        ``.csv`` (the table of :meth:`EmergingHotSpotResult.to_frame`: ``unit_id``,
        ``pattern``, trend and shares), ``.geojson`` or ``.gpkg`` (the same columns on the
        unit polygons).

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    ParameterError
        For another suffix, or a map format without units.
    """
    from placecast.io._atomic import atomic_path

    path = Path(path)
    suffix = _suffix(path, HOTSPOT_FORMATS, "path")
    with atomic_path(path) as tmp:
        if suffix == ".csv":
            result.to_frame().to_csv(tmp, index=False)
        else:
            gdf = result.to_geodataframe()
            # the layer is named, not taken from the temporary file's name (GDAL refuses
            # the dots in it for a GeoPackage layer)
            gdf.to_file(tmp, driver="GeoJSON" if suffix == ".geojson" else "GPKG",
                        layer="hotspots")
    return path


def read_hotspots(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a hot spot file into the table the report takes: ``unit_id``, ``category``.

    Reads every format :func:`write_hotspots` writes (``.csv``, ``.geojson``, ``.gpkg``)
    and a ``.parquet`` table; the ``pattern`` column becomes ``category`` (a table that
    already has ``category`` and no ``pattern`` is taken as it is). Other columns are kept;
    geometries are not read.

    Parameters
    ----------
    path : path-like
        The file.

    Returns
    -------
    DataFrame
        ``unit_id`` (text), ``category``, then the file's other columns.

    Raises
    ------
    DataError
        If the file is missing or unreadable, lacks ``unit_id`` or a pattern column, or
        names a unit twice.
    ParameterError
        For a suffix it does not read.
    """
    path = Path(path)
    suffix = _suffix(path, _READABLE, "path")
    if not path.is_file():
        raise DataError(f"{path}: no such hot spot file.")
    try:
        if suffix == ".csv":
            frame = pd.read_csv(path, dtype={"unit_id": str})
        elif suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            import pyogrio

            frame = pd.DataFrame(pyogrio.read_dataframe(path, read_geometry=False))
    except Exception as exc:  # a reader failing on a damaged file
        raise DataError(f"{path}: could not read the hot spot file ({exc}).") from None
    if "pattern" in frame.columns:
        if "category" in frame.columns:
            raise DataError(f"{path}: has both a pattern and a category column, so which "
                            "one to map is unclear; keep one of them.")
        frame = frame.rename(columns={"pattern": "category"})
    missing = [c for c in ("unit_id", "category") if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: a hot spot file needs columns unit_id and pattern (as "
                        "`placecast hotspots` writes it); missing "
                        f"{', '.join(missing)} (has: {', '.join(map(str, frame.columns))}).")
    frame["unit_id"] = frame["unit_id"].astype(str)
    repeated = frame["unit_id"].duplicated()
    if repeated.any():
        raise DataError(f"{path}: unit {frame['unit_id'][repeated].iloc[0]!r} appears more "
                        "than once; a hot spot file has one row per unit.")
    others = [c for c in frame.columns if c not in ("unit_id", "category")]
    return frame[["unit_id", "category", *others]].reset_index(drop=True)

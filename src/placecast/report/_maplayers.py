"""Context for maps: an offline PMTiles basemap and reference layers (districts, streets).

Both are optional and given by the user; placecast ships no map data. The report and the
dashboard draw them with the vendored ``protomaps-leaflet`` (vector tiles) or ``pmtiles``
(raster tiles) libraries under ``placecast/service/static/vendor/``.

>>> import pathlib, tempfile
>>> path = pathlib.Path(tempfile.mkdtemp()) / "bad.pmtiles"
>>> _ = path.write_bytes(b"not a tile archive")
>>> read_basemap(path)
Traceback (most recent call last):
...
placecast.exceptions.DataError: ...bad.pmtiles: not a PMTiles archive (it is 18 bytes, ...
"""

from __future__ import annotations

import base64
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from placecast.exceptions import DataError, ParameterError

__all__ = ["DEFAULT_MAX_INLINE_BYTES", "Basemap", "ReferenceLayer", "inline_basemap",
           "read_basemap", "read_reference_layer", "vendor_dir"]

#: Largest basemap a report inlines by default (the HTML grows by 4/3 of it).
DEFAULT_MAX_INLINE_BYTES = 30_000_000
#: Most features one reference layer may hold (the page draws every one of them).
MAX_REFERENCE_FEATURES = 100_000

_HEADER = struct.Struct("<7sB QQ QQ QQ QQ QQQ BBBBBB iiii B ii")
_TILE_TYPES = {1: "mvt", 2: "png", 3: "jpeg", 4: "webp", 5: "avif"}
_EXTRACT_HINT = ("cut a smaller area or fewer zoom levels first, e.g. `pmtiles extract "
                 "big.pmtiles city.pmtiles --bbox=MINLON,MINLAT,MAXLON,MAXLAT --maxzoom=14`")


def vendor_dir() -> Path:
    """The folder of the vendored map libraries (``protomaps-leaflet.js``, ``pmtiles.js``)."""
    return Path(__file__).resolve().parents[1] / "service" / "static" / "vendor"


def _megabytes(n_bytes: int) -> str:
    return f"{n_bytes / 1e6:.1f} MB"


@dataclass(frozen=True, slots=True)
class Basemap:
    """A PMTiles (version 3) archive checked for use as a basemap.

    Attributes
    ----------
    path : Path
        The archive.
    n_bytes : int
        Its size in bytes.
    tile_type : str
        ``"mvt"`` (vector tiles, drawn with protomaps-leaflet's light style, which expects
        the Protomaps basemap layers ``earth``, ``water``, ``roads``, ...) or ``"png"``,
        ``"jpeg"``, ``"webp"``, ``"avif"`` (raster tiles, drawn as images).
    min_zoom, max_zoom : int
        Zoom levels held; the map shows the deepest level over-zoomed beyond ``max_zoom``.
    bounds : tuple of float
        ``(min_lon, min_lat, max_lon, max_lat)`` in degrees (WGS 84).
    """

    path: Path
    n_bytes: int
    tile_type: str
    min_zoom: int
    max_zoom: int
    bounds: tuple[float, float, float, float]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (no path: a served page need not know it)."""
        return {"name": self.path.name, "n_bytes": self.n_bytes, "tile_type": self.tile_type,
                "min_zoom": self.min_zoom, "max_zoom": self.max_zoom,
                "bounds": list(self.bounds)}


def read_basemap(path: str | os.PathLike[str]) -> Basemap:
    """Check that ``path`` is a PMTiles version 3 archive a map can draw, and describe it.

    Only the 127-byte header is read. O(1).

    Parameters
    ----------
    path : path-like
        A ``.pmtiles`` file, e.g. an extract of the Protomaps daily build for a city.

    Returns
    -------
    Basemap

    Raises
    ------
    DataError
        If the file is missing, not a PMTiles v3 archive, truncated, or holds tiles the map
        cannot draw (unknown type or MapLibre tiles).
    """
    path = Path(path)
    try:
        n_bytes = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(_HEADER.size)
    except OSError as exc:
        raise DataError(f"{path}: cannot read the basemap ({exc.strerror or exc}).") from None
    if head[:2] == b"PM" and len(head) > 2 and head[2] in (1, 2):
        raise DataError(f"{path}: a PMTiles version {head[2]} archive; the map libraries read "
                        "version 3: convert it with `pmtiles convert OLD.pmtiles NEW.pmtiles`.")
    if len(head) < _HEADER.size or head[:7] != b"PMTiles":
        raise DataError(f"{path}: not a PMTiles archive (it is {n_bytes:,} bytes, a PMTiles "
                        f"header alone is {_HEADER.size}, and starts with 'PMTiles'); make one "
                        "with `pmtiles extract` or `pmtiles convert` from an MBTiles file.")
    fields = _HEADER.unpack(head)
    version = fields[1]
    if version != 3:
        raise DataError(f"{path}: PMTiles version {version}; the map libraries read version 3.")
    tile_data_offset, tile_data_length = fields[8], fields[9]
    if tile_data_offset + tile_data_length > n_bytes:
        raise DataError(f"{path}: truncated PMTiles archive (the header points to byte "
                        f"{tile_data_offset + tile_data_length:,}, the file has {n_bytes:,}); "
                        "copy or download it again.")
    tile_type_code = fields[16]
    if tile_type_code not in _TILE_TYPES:
        kind = "MapLibre (mlt)" if tile_type_code == 6 else f"unknown (code {tile_type_code})"
        raise DataError(f"{path}: its tiles are of type {kind}; a basemap needs vector tiles "
                        "(mvt) or raster tiles (png, jpeg, webp, avif).")
    min_zoom, max_zoom = fields[17], fields[18]
    bounds = tuple(round(v / 1e7, 7) for v in fields[19:23])
    return Basemap(path=path, n_bytes=n_bytes, tile_type=_TILE_TYPES[tile_type_code],
                   min_zoom=int(min_zoom), max_zoom=int(max_zoom),
                   bounds=bounds)


def inline_basemap(basemap: Basemap, max_bytes: int = DEFAULT_MAX_INLINE_BYTES) -> str:
    """The archive as base64 text, to embed in a self-contained HTML file.

    Parameters
    ----------
    basemap : Basemap
        From :func:`read_basemap`.
    max_bytes : int
        Refuse archives larger than this (default 30 MB): the page holds all of it in
        memory and the HTML file grows by 4/3 of the archive.

    Raises
    ------
    ParameterError
        If the archive is larger than ``max_bytes``.
    """
    if not isinstance(max_bytes, int) or max_bytes <= 0:
        raise ParameterError(f"max_basemap_bytes must be a positive integer, got {max_bytes!r}.")
    if basemap.n_bytes > max_bytes:
        raise ParameterError(
            f"basemap {basemap.path} is {_megabytes(basemap.n_bytes)}; a report inlines at "
            f"most {_megabytes(max_bytes)} (max_basemap_bytes) because the whole archive goes "
            f"into the HTML file: {_EXTRACT_HINT}, or raise the limit.")
    return base64.b64encode(basemap.path.read_bytes()).decode("ascii")


@dataclass(frozen=True, slots=True)
class ReferenceLayer:
    """A vector file reprojected to WGS 84 for drawing under the forecast.

    Attributes
    ----------
    name : str
        Shown in the layer switcher (the file name without suffix by default).
    geojson : dict
        FeatureCollection of geometries in longitude/latitude (6 decimals); attributes
        are not kept (the layer is drawn for context only).
    n_features : int
        Features drawn.
    n_without_geometry : int
        Rows of the file that had no geometry and are not drawn.
    """

    name: str
    geojson: dict[str, Any]
    n_features: int
    n_without_geometry: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for a page."""
        return {"name": self.name, "n_features": self.n_features,
                "n_without_geometry": self.n_without_geometry, "geojson": self.geojson}


def read_reference_layer(path: str | os.PathLike[str], *, name: str | None = None,
                         max_features: int = MAX_REFERENCE_FEATURES) -> ReferenceLayer:
    """Read any vector file GDAL reads (GeoPackage, GeoJSON, shapefile, FlatGeobuf, ...).

    Parameters
    ----------
    path : path-like
        The file; it must declare its CRS (GeoJSON is WGS 84 by definition).
    name : str, optional
        Layer name (default the file name without suffix).
    max_features : int
        Refuse files with more features (default 100,000): every one is drawn.

    Returns
    -------
    ReferenceLayer

    Raises
    ------
    DataError
        If the file cannot be read, has no CRS, has no geometry at all, or too many
        features.
    """
    import geopandas as gpd
    import numpy as np
    import shapely

    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: reference layer not found.")
    try:
        frame = gpd.read_file(path)
    except Exception as exc:  # pyogrio raises several types for unreadable files
        raise DataError(f"{path}: cannot read it as a vector file ({exc}); give a "
                        "GeoPackage, GeoJSON, shapefile or FlatGeobuf.") from None
    if frame.crs is None:
        raise DataError(f"{path}: the file declares no CRS, so it cannot be placed on the "
                        "map; set it (e.g. `ogr2ogr -a_srs EPSG:2913 out.gpkg in.shp`).")
    if len(frame) > max_features:
        raise DataError(f"{path}: {len(frame):,} features; a reference layer holds at most "
                        f"{max_features:,} (simplify or clip it to the region first).")
    missing = frame.geometry.isna().to_numpy() | frame.geometry.is_empty.to_numpy()
    frame = frame.loc[~missing]
    if not len(frame):
        raise DataError(f"{path}: no feature has a geometry.")
    geometry = shapely.transform(frame.to_crs("EPSG:4326").geometry.to_numpy(),
                                 lambda xy: np.round(xy, 6))
    features = [{"type": "Feature", "geometry": json.loads(text), "properties": {}}
                for text in shapely.to_geojson(geometry).tolist()]
    return ReferenceLayer(name=name or path.stem,
                          geojson={"type": "FeatureCollection", "features": features},
                          n_features=len(features), n_without_geometry=int(missing.sum()))

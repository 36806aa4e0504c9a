"""Small PMTiles basemaps and reference layers that the tests build themselves.

The vector archive uses layer names of the Protomaps basemap schema, so protomaps-leaflet's
``light`` style paints it: ``earth`` (land, #e2dfda), ``water`` (#80deea) and ``roads``.
Here ``water`` covers the whole area around the data, so wherever the basemap is drawn and
no forecast cell covers it the map shows that exact water colour.
"""

from __future__ import annotations

import io
import math
import warnings
from pathlib import Path

#: protomaps-leaflet's light style (5.1.0): water colour.
WATER_RGB = (0x80, 0xDE, 0xEA)
#: The archives' credit line: HTML that the page must show as plain text.
ATTRIBUTION = '<a href="https://example.org/">&copy; placecast test tiles</a><img src=x>'
#: Colour of the raster test tiles.
RASTER_RGB = (0x3A, 0xB0, 0x4F)


def lonlat_bounds(shared_data: Path, name: str) -> tuple[float, float, float, float]:
    """Bounds (lon/lat) of a region file under the shared data."""
    import geopandas as gpd

    return tuple(gpd.read_file(shared_data / name).to_crs("EPSG:4326").total_bounds)


def _tile_range(bounds: tuple[float, float, float, float], z: int) -> tuple[range, range]:
    def tx(lon: float) -> int:
        return int((lon + 180) / 360 * 2**z)

    def ty(lat: float) -> int:
        r = math.radians(lat)
        return int((1 - math.log(math.tan(r) + 1 / math.cos(r)) / math.pi) / 2 * 2**z)

    lon0, lat0, lon1, lat1 = bounds
    x0, x1 = sorted((tx(lon0), tx(lon1)))
    y0, y1 = sorted((ty(lat1), ty(lat0)))
    return range(x0, min(x1, 2**z - 1) + 1), range(y0, min(y1, 2**z - 1) + 1)


def _tile_bounds_mercator(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    size = 2 * math.pi * 6378137 / 2**z
    origin = math.pi * 6378137
    return (x * size - origin, origin - (y + 1) * size, (x + 1) * size - origin,
            origin - y * size)


def write_pmtiles(path: Path, bounds: tuple[float, float, float, float], *,
                  raster: bool = False, max_zoom: int = 12, pad: float = 0.5) -> Path:
    """Write a small PMTiles v3 archive over ``bounds`` (lon/lat) padded by ``pad``.

    Vector (default): layers ``earth`` and ``water`` (polygons over the padded box) and
    ``roads`` (a highway across it). Raster: solid PNG tiles of ``RASTER_RGB``.
    """
    import mapbox_vector_tile
    import shapely
    from pmtiles.tile import Compression, TileType, zxy_to_tileid
    from pmtiles.writer import write
    from pyproj import Transformer

    lon0, lat0, lon1, lat1 = bounds
    dx, dy = (lon1 - lon0) * pad, (lat1 - lat0) * pad
    box_ll = (lon0 - dx, lat0 - dy, lon1 + dx, lat1 + dy)
    to_merc = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)
    mx0, my0 = to_merc.transform(box_ll[0], box_ll[1])
    mx1, my1 = to_merc.transform(box_ll[2], box_ll[3])
    area = shapely.box(mx0, my0, mx1, my1)
    road = shapely.LineString([(mx0, my0), (mx1, my1)])
    png = None
    if raster:
        from PIL import Image

        buffer = io.BytesIO()
        Image.new("RGB", (256, 256), RASTER_RGB).save(buffer, format="PNG")
        png = buffer.getvalue()
    with write(path) as writer:
        tiles = []
        for z in range(max_zoom + 1):
            xs, ys = _tile_range(box_ll, z)
            tiles += [(zxy_to_tileid(z, x, y), z, x, y) for x in xs for y in ys]
        for tile_id, z, x, y in sorted(tiles):
            if png is not None:
                writer.write_tile(tile_id, png)
                continue
            tb = _tile_bounds_mercator(z, x, y)
            clip = shapely.box(*tb).buffer((tb[2] - tb[0]) / 32, join_style="mitre")
            layers = [
                {"name": "earth", "features": [{"geometry": area.intersection(clip).wkt,
                                                 "properties": {"kind": "earth"}}]},
                {"name": "water", "features": [{"geometry": area.intersection(clip).wkt,
                                                 "properties": {"kind": "water"}}]},
            ]
            part = road.intersection(clip)
            if not part.is_empty:
                layers.append({"name": "roads", "features": [
                    {"geometry": part.wkt, "properties": {"kind": "highway"}}]})
            with warnings.catch_warnings():  # mapbox-vector-tile 2.2 calls shapely.ops.transform
                warnings.simplefilter("ignore", DeprecationWarning)
                data = mapbox_vector_tile.encode(layers, default_options={
                    "quantize_bounds": tb, "extents": 4096})
            writer.write_tile(tile_id, data)
        e7 = [round(v * 1e7) for v in box_ll]
        header = {
            "tile_type": TileType.PNG if raster else TileType.MVT,
            "tile_compression": Compression.NONE,
            "min_lon_e7": e7[0], "min_lat_e7": e7[1], "max_lon_e7": e7[2], "max_lat_e7": e7[3],
            "center_zoom": max_zoom // 2,
        }
        metadata = {"name": "placecast test basemap", "attribution": ATTRIBUTION, "vector_layers": [
            {"id": name, "fields": {"kind": "String"}} for name in ("earth", "water", "roads")]}
        writer.finalize(header, metadata)
    return path


def write_reference_layer(path: Path, bounds: tuple[float, float, float, float],
                          crs: str = "EPSG:2913") -> Path:
    """A GeoPackage in a projected CRS: two 'districts' splitting the area and a 'street'."""
    import geopandas as gpd
    import shapely

    lon0, lat0, lon1, lat1 = bounds
    mid = (lon0 + lon1) / 2
    frame = gpd.GeoDataFrame(
        {"name": ["West district", "East district", "Main street"]},
        geometry=[shapely.box(lon0, lat0, mid, lat1), shapely.box(mid, lat0, lon1, lat1),
                  shapely.LineString([(lon0, (lat0 + lat1) / 2), (lon1, (lat0 + lat1) / 2)])],
        crs="EPSG:4326").to_crs(crs)
    frame.to_file(path, driver="GPKG")
    return path

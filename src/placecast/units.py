"""Area units: square grids, H3 hexagons and user polygons; masks and aggregation.

Every ``Units`` is a set of polygons in internal metres with an id each, the region they
cover, and a vectorised ``assign(x, y)`` that maps points to the unit holding them.
Aggregating events into units x time bins is one ``numpy.bincount``: O(n_events).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely

from placecast.events import Events, SpatialReference, to_datetime64
from placecast.exceptions import DataError, ParameterError

__all__ = [
    "GridSpec",
    "Raster",
    "Units",
    "aggregate",
    "default_region",
    "hex_grid",
    "polygon_units",
    "read_region",
    "square_grid",
]


@dataclass(frozen=True, slots=True)
class GridSpec:
    """Geometry of a square grid.

    Attributes
    ----------
    origin : (float, float)
        Lower-left corner of cell (0, 0), metres.
    cell_size : float
        Side of a cell, metres.
    n_cols, n_rows : int
        Grid extent in cells.
    rotation : float
        Counter-clockwise rotation of the grid about ``origin``, degrees.
    """

    origin: tuple[float, float]
    cell_size: float
    n_cols: int
    n_rows: int
    rotation: float = 0.0

    def to_grid_frame(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Coordinates relative to the origin in the grid's own (unrotated) axes."""
        dx, dy = x - self.origin[0], y - self.origin[1]
        if self.rotation:
            theta = np.deg2rad(self.rotation)
            c, s = np.cos(theta), np.sin(theta)
            dx, dy = c * dx + s * dy, -s * dx + c * dy
        return dx, dy


@dataclass(frozen=True, slots=True)
class Raster:
    """A fine raster over the region, each pixel tagged with the unit holding its centre.

    Attributes
    ----------
    origin : (float, float)
        Lower-left corner, metres.
    pixel_size : float
        Side of a pixel, metres.
    shape : (int, int)
        ``(n_rows, n_cols)``.
    unit_index : ndarray of int, shape ``shape``
        Index of the unit holding each pixel centre, -1 outside every unit.
    """

    origin: tuple[float, float]
    pixel_size: float
    shape: tuple[int, int]
    unit_index: np.ndarray

    def centres(self) -> tuple[np.ndarray, np.ndarray]:
        """Pixel-centre coordinates, each of shape ``shape``."""
        rows, cols = self.shape
        xs = self.origin[0] + (np.arange(cols) + 0.5) * self.pixel_size
        ys = self.origin[1] + (np.arange(rows) + 0.5) * self.pixel_size
        return np.meshgrid(xs, ys)

    def bin_points(self, x: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None
                   ) -> np.ndarray:
        """Histogram of points over pixels (points off the raster are ignored)."""
        rows, cols = self.shape
        c = np.floor((x - self.origin[0]) / self.pixel_size).astype(np.int64)
        r = np.floor((y - self.origin[1]) / self.pixel_size).astype(np.int64)
        ok = (c >= 0) & (c < cols) & (r >= 0) & (r < rows)
        flat = r[ok] * cols + c[ok]
        w = None if weights is None else weights[ok]
        return np.bincount(flat, weights=w, minlength=rows * cols).reshape(rows, cols).astype(
            float
        )

    def sum_by_unit(self, values: np.ndarray, n_units: int) -> np.ndarray:
        """Sum pixel ``values`` into units (pixels outside all units are dropped)."""
        index = self.unit_index.ravel()
        inside = index >= 0
        return np.bincount(index[inside], weights=values.ravel()[inside], minlength=n_units)


@dataclass(frozen=True, eq=False)
class Units:
    """Area units (cells, hexagons or polygons) over a region, in internal metres.

    Attributes
    ----------
    kind : {"grid", "hex", "polygons"}
        How the units were made.
    unit_id : ndarray
        One id per unit (``"c<col>_r<row>"`` for grids, H3 index for hexes, the user's id
        for polygons).
    geometry : ndarray of shapely.Polygon
        Unit polygons in metres.
    region : shapely geometry
        The region the units cover (the forecast area), metres.
    spatial_reference : SpatialReference
        CRS of the coordinates.
    grid : GridSpec, optional
        For square grids, the grid geometry.
    description : dict
        How the units were built, for reports.
    """

    kind: str
    unit_id: np.ndarray
    geometry: np.ndarray
    region: Any
    spatial_reference: SpatialReference
    grid: GridSpec | None = None
    grid_cells: np.ndarray | None = None  # (n_units, 2) col, row for grids
    description: dict[str, Any] = field(default_factory=dict)
    _cache: dict[Any, Any] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return int(len(self.unit_id))

    @property
    def n_units(self) -> int:
        """Number of units."""
        return len(self)

    @property
    def area(self) -> np.ndarray:
        """Area of each unit, square metres (the whole cell, as flagged on the ground)."""
        if "area" not in self._cache:
            self._cache["area"] = shapely.area(self.geometry)
        return self._cache["area"]

    @property
    def region_area(self) -> float:
        """Area of the region, square metres."""
        return float(shapely.area(self.region))

    @property
    def centroids(self) -> np.ndarray:
        """Unit centroids, ``(n_units, 2)`` metres."""
        if "centroids" not in self._cache:
            self._cache["centroids"] = shapely.get_coordinates(shapely.centroid(self.geometry))
        return self._cache["centroids"]

    @property
    def typical_size(self) -> float:
        """Side of a square with the median unit area, metres."""
        return float(np.sqrt(np.median(self.area)))

    def assign(self, x: npt.ArrayLike, y: npt.ArrayLike) -> np.ndarray:
        """Index of the unit holding each point; -1 for points in no unit.

        O(n) for square grids (arithmetic), O(n log u) for hexes and polygons
        (H3 indexing or an STRtree).
        """
        xs = np.asarray(x, dtype=float)
        ys = np.asarray(y, dtype=float)
        if self.kind == "grid" and self.grid is not None:
            return self._assign_grid(xs, ys)
        if self.kind == "hex":
            return self._assign_hex(xs, ys)
        return self._assign_polygons(xs, ys)

    def _assign_grid(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        grid = self.grid
        assert grid is not None and self.grid_cells is not None
        if "lookup" not in self._cache:
            lookup = np.full((grid.n_rows, grid.n_cols), -1, dtype=np.int64)
            lookup[self.grid_cells[:, 1], self.grid_cells[:, 0]] = np.arange(len(self))
            self._cache["lookup"] = lookup
        lookup = self._cache["lookup"]
        dx, dy = grid.to_grid_frame(x, y)
        col = np.floor(dx / grid.cell_size).astype(np.int64)
        row = np.floor(dy / grid.cell_size).astype(np.int64)
        ok = (col >= 0) & (col < grid.n_cols) & (row >= 0) & (row < grid.n_rows)
        out = np.full(x.shape, -1, dtype=np.int64)
        out[ok] = lookup[row[ok], col[ok]]
        return out

    def _assign_hex(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        import h3

        resolution = int(self.description["h3_resolution"])
        lon, lat = self.spatial_reference.to_crs_coordinates(x, y, "EPSG:4326")
        if "positions" not in self._cache:
            self._cache["positions"] = {str(u): i for i, u in enumerate(self.unit_id)}
        positions = self._cache["positions"]
        cells = [h3.latlng_to_cell(b, a, resolution) for a, b in zip(lon, lat, strict=True)]
        return np.fromiter((positions.get(c, -1) for c in cells), dtype=np.int64, count=len(cells))

    def _assign_polygons(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        if "tree" not in self._cache:
            self._cache["tree"] = shapely.STRtree(self.geometry)
        tree = self._cache["tree"]
        points = shapely.points(x, y)
        point_idx, unit_idx = tree.query(points, predicate="intersects")
        out = np.full(x.shape, -1, dtype=np.int64)
        # first unit wins where polygons touch or overlap
        order = np.lexsort((unit_idx, point_idx))
        point_idx, unit_idx = point_idx[order], unit_idx[order]
        first = np.ones(len(point_idx), dtype=bool)
        first[1:] = point_idx[1:] != point_idx[:-1]
        out[point_idx[first]] = unit_idx[first]
        return out

    def raster(self, pixel_size: float | None = None, *, margin: float = 0.0) -> Raster:
        """A fine raster over the units' extent with each pixel's unit (cached).

        Parameters
        ----------
        pixel_size : float, optional
            Pixel side in metres; default a quarter of the typical unit size. Raised when
            needed to keep the raster within 2,000 pixels a side.
        margin : float
            Metres added around the units' extent, so that points just outside the units
            can still be binned (their pixels belong to no unit).
        """
        if pixel_size is None:
            pixel_size = self.typical_size / 4.0
        xmin, ymin, xmax, ymax = shapely.total_bounds(self.geometry)
        span = max(xmax - xmin, ymax - ymin) + 2 * margin
        pixel_size = max(float(pixel_size), span / 2000.0)
        # a whole number of pixels, so pixel edges stay aligned with the units' extent
        margin = float(np.ceil(margin / pixel_size) * pixel_size)
        xmin, ymin, xmax, ymax = xmin - margin, ymin - margin, xmax + margin, ymax + margin
        key = ("raster", round(pixel_size, 6), round(float(margin), 3))
        if key not in self._cache:
            n_cols = int(np.ceil((xmax - xmin) / pixel_size)) + 1
            n_rows = int(np.ceil((ymax - ymin) / pixel_size)) + 1
            proto = Raster((xmin, ymin), pixel_size, (n_rows, n_cols),
                           np.empty((0, 0), dtype=np.int64))
            cx, cy = proto.centres()
            index = self.assign(cx.ravel(), cy.ravel()).reshape(n_rows, n_cols)
            self._cache[key] = Raster((xmin, ymin), pixel_size, (n_rows, n_cols), index)
        return self._cache[key]

    def to_geodataframe(self, target_crs: str | None = None) -> Any:
        """Units as a GeoDataFrame in ``target_crs`` (default: the input CRS)."""
        import geopandas as gpd

        geometry = self.geometry_in(target_crs)
        crs = target_crs or self.spatial_reference.source_crs
        return gpd.GeoDataFrame(
            {"unit_id": self.unit_id}, geometry=geometry,
            crs=None if crs.startswith("local:") else crs,
        )

    def geometry_in(self, target_crs: str | None = None) -> np.ndarray:
        """Unit polygons in ``target_crs`` (default: the input CRS's units)."""
        sref = self.spatial_reference
        target = target_crs or sref.source_crs

        def convert(coords: np.ndarray) -> np.ndarray:
            tx, ty = sref.to_crs_coordinates(coords[:, 0], coords[:, 1],
                                             None if target == sref.crs else target)
            return np.column_stack([tx, ty])

        return shapely.transform(self.geometry, convert)


# ---------------------------------------------------------------------- regions
def read_region(path: str | os.PathLike[str], spatial_reference: SpatialReference) -> Any:
    """Read a region polygon (any vector format) as one geometry in internal metres.

    Raises
    ------
    DataError
        If the file is missing, unreadable, or holds no polygon.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such region file. Give a polygon file (.shp, .gpkg, "
                        ".geojson) with `region`.", param="region")
    import pyogrio

    try:
        frame = pyogrio.read_dataframe(path)
    except Exception as exc:
        raise DataError(f"{path}: could not read the region as a vector file ({exc}).",
                        param="region") from None
    geoms = frame.geometry
    polygonal = geoms[geoms.geom_type.isin(["Polygon", "MultiPolygon"])]
    if len(polygonal) == 0:
        kinds = ", ".join(sorted(set(geoms.geom_type.dropna()))) or "nothing"
        raise DataError(f"{path}: the region file holds no polygon (found {kinds}). "
                        "Give a file of polygons, such as district boundaries.", param="region")
    region = shapely.union_all(shapely.make_valid(polygonal.to_numpy()))
    source = frame.crs.to_string() if frame.crs is not None else None
    if source is None and not spatial_reference.is_local:
        raise DataError(f"{path}: the region file has no CRS (.prj missing?); add one.",
                        param="region")
    if source is not None and not spatial_reference.is_local:
        def convert(coords: np.ndarray) -> np.ndarray:
            mx, my = spatial_reference.from_crs_coordinates(coords[:, 0], coords[:, 1], source)
            return np.column_stack([mx, my])

        region = shapely.transform(region, convert)
    else:
        region = shapely.transform(region, lambda c: c * spatial_reference.metres_per_unit)
    return region


def default_region(events: Events, buffer: float) -> Any:
    """The events' convex hull buffered by ``buffer`` metres."""
    if len(events) == 0:
        raise DataError("no events to build a default region from; give `region` FILE.",
                        param="region")
    hull = shapely.convex_hull(shapely.multipoints(events.xy))
    return shapely.buffer(hull, buffer)


# ---------------------------------------------------------------------- builders
def square_grid(
    region: Any,
    cell_size: float,
    spatial_reference: SpatialReference,
    *,
    origin: tuple[float, float] | None = None,
    rotation: float = 0.0,
) -> Units:
    """Square cells of ``cell_size`` metres over ``region``, keeping cells that touch it.

    Parameters
    ----------
    region : shapely geometry
        Forecast region in metres.
    cell_size : float
        Cell side, metres.
    spatial_reference : SpatialReference
        CRS of the coordinates.
    origin : (float, float), optional
        Lower-left corner of the grid; default the region's bounding-box corner.
    rotation : float
        Counter-clockwise rotation about ``origin``, degrees.

    Returns
    -------
    Units
        With ``kind="grid"``; ids ``c<col>_r<row>``.
    """
    if not cell_size > 0:
        raise ParameterError(f"cell size must be positive, got {cell_size}.", param="cell_size")
    if shapely.is_empty(region) or shapely.area(region) <= 0:
        raise DataError("the region is empty (zero area); check the region file or events.")
    xmin, ymin, xmax, ymax = shapely.bounds(region)
    if origin is None:
        origin = (float(xmin), float(ymin))
    spec0 = GridSpec(origin, cell_size, 1, 1, rotation)
    corners = shapely.get_coordinates(shapely.envelope(region))
    gx, gy = spec0.to_grid_frame(corners[:, 0], corners[:, 1])
    c0 = int(np.floor(gx.min() / cell_size))
    r0 = int(np.floor(gy.min() / cell_size))
    c1 = int(np.ceil(gx.max() / cell_size))
    r1 = int(np.ceil(gy.max() / cell_size))
    if c0 < 0 or r0 < 0:  # move the origin so that all cells have non-negative indices
        theta = np.deg2rad(rotation)
        shift_x, shift_y = c0 * cell_size, r0 * cell_size
        origin = (origin[0] + np.cos(theta) * shift_x - np.sin(theta) * shift_y,
                  origin[1] + np.sin(theta) * shift_x + np.cos(theta) * shift_y)
        c1, r1 = c1 - c0, r1 - r0
    n_cols, n_rows = max(c1, 1), max(r1, 1)
    n_cells = n_cols * n_rows
    if n_cells > 25_000_000:
        raise ParameterError(
            f"a {cell_size:g} m grid over this region has {n_cells:,} cells; use a larger "
            "cell size.", param="cell_size"
        )
    spec = GridSpec((float(origin[0]), float(origin[1])), float(cell_size), n_cols, n_rows,
                    float(rotation))
    col_grid, row_grid = np.meshgrid(np.arange(n_cols), np.arange(n_rows))
    cols, rows = col_grid.ravel(), row_grid.ravel()
    boxes = _cell_polygons(spec, cols, rows)
    shapely.prepare(region)
    keep = shapely.intersects(region, boxes)
    cols, rows, boxes = cols[keep], rows[keep], boxes[keep]
    if len(boxes) == 0:
        raise DataError("no grid cell overlaps the region.")
    ids = np.array([f"c{c}_r{r}" for c, r in zip(cols, rows, strict=True)], dtype=object)
    return Units(
        kind="grid",
        unit_id=ids,
        geometry=boxes,
        region=region,
        spatial_reference=spatial_reference,
        grid=spec,
        grid_cells=np.column_stack([cols, rows]),
        description={"kind": "square grid", "cell_size_m": float(cell_size),
                     "rotation_deg": float(rotation), "origin_m": list(spec.origin),
                     "n_units": int(len(boxes))},
    )


def _cell_polygons(spec: GridSpec, cols: np.ndarray, rows: np.ndarray) -> np.ndarray:
    size = spec.cell_size
    corners_x = np.stack([cols, cols + 1, cols + 1, cols, cols], axis=1) * size
    corners_y = np.stack([rows, rows, rows + 1, rows + 1, rows], axis=1) * size
    if spec.rotation:
        theta = np.deg2rad(spec.rotation)
        c, s = np.cos(theta), np.sin(theta)
        corners_x, corners_y = c * corners_x - s * corners_y, s * corners_x + c * corners_y
    corners_x = corners_x + spec.origin[0]
    corners_y = corners_y + spec.origin[1]
    coords = np.stack([corners_x, corners_y], axis=2)
    return shapely.polygons(coords)


def hex_grid(region: Any, cell_size: float, spatial_reference: SpatialReference) -> Units:
    """H3 hexagons over ``region``, at the resolution whose cell area is nearest cell_size².

    Hexagons overlapping the region are kept.

    Raises
    ------
    DataError
        If the data have no real CRS (H3 needs lon/lat).
    """
    import h3

    if spatial_reference.is_local:
        raise DataError("H3 hexagons need a real CRS; the data are on a local grid.")
    target_area = cell_size**2
    resolution = int(np.argmin([abs(h3.average_hexagon_area(r, unit="m^2") - target_area)
                                for r in range(16)]))
    lonlat_region = shapely.transform(
        region,
        lambda c: np.column_stack(spatial_reference.to_crs_coordinates(c[:, 0], c[:, 1],
                                                                        "EPSG:4326")),
    )
    cells: set[str] = set()
    polys = getattr(lonlat_region, "geoms", [lonlat_region])
    for poly in polys:
        shape = h3.geo_to_h3shape(shapely.geometry.mapping(poly))
        cells.update(h3.h3shape_to_cells_experimental(shape, resolution, contain="overlap"))
    if not cells:
        raise DataError("no H3 hexagon overlaps the region; use a smaller cell size.",
                        param="cell_size")
    ids = np.array(sorted(cells), dtype=object)
    rings = [np.array(h3.cell_to_boundary(cell)) for cell in ids]
    sizes = np.array([len(r) for r in rings])
    latlng = np.concatenate(rings)
    mx, my = spatial_reference.from_crs_coordinates(latlng[:, 1], latlng[:, 0], "EPSG:4326")
    ring_index = np.repeat(np.arange(len(rings)), sizes)
    boundaries = shapely.polygons(shapely.linearrings(np.column_stack([mx, my]),
                                                      indices=ring_index))
    return Units(
        kind="hex",
        unit_id=ids,
        geometry=np.asarray(boundaries, dtype=object),
        region=region,
        spatial_reference=spatial_reference,
        description={"kind": "H3 hexagons", "h3_resolution": resolution,
                     "mean_area_m2": float(h3.average_hexagon_area(resolution, unit="m^2")),
                     "n_units": len(ids)},
    )


def polygon_units(
    path: str | os.PathLike[str], spatial_reference: SpatialReference, *,
    id_column: str | None = None, region: Any = None,
) -> Units:
    """User polygons (beats, districts, tracts) from a vector file as units.

    Parameters
    ----------
    path : path-like
        Any vector format pyogrio reads.
    spatial_reference : SpatialReference
        CRS of the events; polygons are transformed to it.
    id_column : str, optional
        Column holding unit ids; default the row number.
    region : shapely geometry, optional
        Forecast region; default the union of the polygons.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such polygon file.")
    import pyogrio

    frame = pyogrio.read_dataframe(path)
    frame = frame[frame.geometry.geom_type.isin(["Polygon", "MultiPolygon"])]
    if len(frame) == 0:
        raise DataError(f"{path}: holds no polygons to use as units.")
    if id_column is not None and id_column not in frame.columns:
        raise DataError(f"{path}: no column {id_column!r} for unit ids (columns: "
                        f"{', '.join(map(str, frame.columns))}).")
    source = frame.crs.to_string() if frame.crs is not None else None
    geoms = shapely.make_valid(frame.geometry.to_numpy())
    if source is not None and not spatial_reference.is_local:
        geoms = shapely.transform(
            geoms,
            lambda c: np.column_stack(spatial_reference.from_crs_coordinates(
                c[:, 0], c[:, 1], source)),
        )
    ids = (frame[id_column].astype(str).to_numpy(dtype=object) if id_column
           else np.array([str(i) for i in range(len(frame))], dtype=object))
    return Units(
        kind="polygons",
        unit_id=ids,
        geometry=np.asarray(geoms, dtype=object),
        region=region if region is not None else shapely.union_all(geoms),
        spatial_reference=spatial_reference,
        description={"kind": "polygons", "source": str(path), "n_units": len(ids),
                     "id_column": id_column},  # None: ids are the row numbers 0..n-1
    )


# ---------------------------------------------------------------------- aggregation
def aggregate(
    events: Events,
    units: Units,
    bin_edges: npt.ArrayLike | None = None,
    *,
    unit_index: np.ndarray | None = None,
    weighted: bool = True,
) -> np.ndarray:
    """Count events per unit (and per time bin).

    Parameters
    ----------
    events : Events
        The events.
    units : Units
        The area units.
    bin_edges : array of datetime64, optional
        Increasing edges of ``n_bins`` time bins ``[edge_i, edge_i+1)``; events outside
        are not counted. Without edges, one count per unit.
    unit_index : ndarray of int, optional
        A precomputed ``units.assign(events.x, events.y)``.
    weighted : bool
        Sum event weights rather than count events.

    Returns
    -------
    ndarray of float
        Shape ``(n_units,)`` or ``(n_units, n_bins)``.

    Notes
    -----
    O(n_events + n_units x n_bins): one ``searchsorted`` and one ``bincount``.
    """
    index = units.assign(events.x, events.y) if unit_index is None else unit_index
    weights = events.weights if weighted else np.ones(len(events))
    if bin_edges is None:
        ok = index >= 0
        return np.bincount(index[ok], weights=weights[ok], minlength=len(units)).astype(float)
    edges = np.asarray([to_datetime64(e) for e in np.asarray(bin_edges)], dtype="datetime64[ns]")
    if len(edges) < 2 or (np.diff(edges) <= np.timedelta64(0, "ns")).any():
        raise ParameterError("time bin edges must be increasing, with at least two edges.")
    n_bins = len(edges) - 1
    b = np.searchsorted(edges, events.time, side="right") - 1
    ok = (index >= 0) & (b >= 0) & (b < n_bins)
    flat = index[ok] * n_bins + b[ok]
    counts = np.bincount(flat, weights=weights[ok], minlength=len(units) * n_bins)
    return counts.reshape(len(units), n_bins).astype(float)

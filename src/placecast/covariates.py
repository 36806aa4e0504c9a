"""Covariate layers (risk terrain): per-unit features from the user's vector layers.

A covariate layer is a vector file of points (bars, schools, transit stops), lines (streets,
rail) or polygons (zoning, parks). It is read in any format pyogrio reads, reprojected from
its own CRS into the events' internal metres, and summarised per area unit:

- points, ``count``: points within ``r`` of the unit polygon (``<name>_count_<r>m``);
- points, ``distance``: metres from the unit centroid to the nearest point (``<name>_dist``);
- points, ``density``: mean Gaussian kernel density (standard deviation ``r``) over the
  unit, points per km² (``<name>_density_<r>m``);
- lines, ``length``: metres of line inside the unit (``<name>_len``) and within ``r`` of
  the unit (``<name>_len_<r>m``);
- lines, ``distance``: metres from the unit centroid to the nearest line (``<name>_dist``);
- polygons, ``share``: share of the unit covered, 0-1 (``<name>_share``);
- polygons, ``distance``: metres from the unit centroid to the nearest polygon, 0 inside
  one (``<name>_dist``);
- polygons, ``mean`` (with ``attr=COLUMN``): area-weighted mean of the column over the
  covered part of the unit, 0 where uncovered (``<name>_<column>_mean``), with the share.

``auto`` (the default) is ``count + distance + density`` for points, ``length + distance``
for lines, ``share + distance`` for polygons, and ``mean`` (with its share) for polygons
with ``attr=COLUMN``. The scales ``r`` default to 1, 2 and 4 times the typical unit size
(``Units.typical_size``), rounded to a metre.

The functions here are pure: :func:`parse_covariate` turns a ``FILE[:how][:SCALES]`` text
into a :class:`CovariateLayer`, :func:`read_covariate` reads and checks its geometry, and
:func:`covariate_features` computes a :class:`CovariateTable` of ``n_units x n_features``.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import shapely
from scipy import ndimage
from scipy.spatial import cKDTree

from placecast.events import SpatialReference
from placecast.exceptions import DataError, DataQualityWarning, ParameterError
from placecast.quantities import parse_length
from placecast.units import Units

__all__ = [
    "CovariateData",
    "CovariateLayer",
    "CovariateTable",
    "covariate_features",
    "parse_covariate",
    "read_covariate",
]

#: Every ``how`` and the geometry families it applies to.
HOWS: dict[str, tuple[str, ...]] = {
    "auto": ("points", "lines", "polygons"),
    "count": ("points",),
    "distance": ("points", "lines", "polygons"),
    "density": ("points",),
    "length": ("lines",),
    "share": ("polygons",),
    "mean": ("polygons",),
}
_HOW_ALIASES = {"dist": "distance", "len": "length", "cover": "share", "coverage": "share"}
#: ``how`` values that use scales.
_SCALED = {"auto", "count", "density", "length"}
_FAMILIES = {
    "Point": "points", "MultiPoint": "points",
    "LineString": "lines", "MultiLineString": "lines", "LinearRing": "lines",
    "Polygon": "polygons", "MultiPolygon": "polygons",
}
_DEFAULT_SCALE_FACTORS = (1.0, 2.0, 4.0)
_MAX_PAIRS = 2_000_000  # point-unit pairs held at once in the radius counts
_LINE_PIECES = 8.0  # lines are cut into pieces of at most r / _LINE_PIECES for "within r"
_TILE_UNITS = 8  # large polygons are cut into tiles of this many unit sizes before clipping
_MAX_VERTICES = 64  # polygons with more vertices than this are cut into tiles
_MAX_PIECES = 2_000_000  # at most about this many line pieces per scale


# ---------------------------------------------------------------------- layer specs
@dataclass(frozen=True, slots=True)
class CovariateLayer:
    """One covariate layer and how to summarise it per unit.

    Attributes
    ----------
    path : Path
        The vector file (any format pyogrio reads: .gpkg, .shp, .geojson, ...).
    how : str
        ``"auto"`` (default), ``"count"``, ``"distance"``, ``"density"``, ``"length"``,
        ``"share"`` or ``"mean"``; see the module docstring for what each computes.
    scales : tuple of float
        Radii (``count``, ``length``) or kernel standard deviations (``density``), metres;
        empty for the defaults (1, 2 and 4 times the typical unit size). Texts with a unit
        (``"600ft"``) and a single number are accepted and stored as a tuple of metres.
    attribute : str, optional
        Numeric column of a polygon layer to average by area share (``how="mean"``).
    name : str
        Prefix of the feature names; default the file stem, lower-cased, with anything
        but letters, digits and ``_`` replaced by ``_``.
    layer : str, optional
        Layer inside a multi-layer file (GeoPackage); needed when the file holds several.

    Raises
    ------
    ParameterError
        For an unknown ``how``, a non-positive scale, scales on a ``how`` that takes none,
        ``how="mean"`` without ``attribute``, or an attribute with a ``how`` other than
        ``auto``/``mean``.
    """

    path: Path
    how: str = "auto"
    scales: tuple[float, ...] = ()
    attribute: str | None = None
    name: str = ""
    layer: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))
        how = _HOW_ALIASES.get(str(self.how).lower(), str(self.how).lower())
        if how not in HOWS:
            raise ParameterError(
                f"covariate {self.path}: unknown how {self.how!r} (use one of "
                f"{', '.join(HOWS)}).", param="covariates"
            )
        object.__setattr__(self, "how", how)
        given = (self.scales,) if isinstance(self.scales, int | float | str) else self.scales
        scales = tuple(_parse_scale(s, str(self.path)) if isinstance(s, str) else float(s)
                       for s in given)
        if any(not np.isfinite(s) or s <= 0 for s in scales):
            raise ParameterError(f"covariate {self.path}: scales must be positive lengths, "
                                 f"got {scales}.", param="covariates")
        if len(set(_scale_label(s) for s in scales)) != len(scales):
            raise ParameterError(f"covariate {self.path}: two scales round to the same metre "
                                 f"({', '.join(_scale_label(s) for s in scales)}).",
                                 param="covariates")
        object.__setattr__(self, "scales", scales)
        if scales and how not in _SCALED:
            raise ParameterError(f"covariate {self.path}: how={how!r} takes no scales; drop "
                                 "them or use count, density or length.", param="covariates")
        if how == "mean" and not self.attribute:
            raise ParameterError(f"covariate {self.path}: how='mean' needs attr=COLUMN, the "
                                 "numeric column to average.", param="covariates")
        if self.attribute and how not in ("auto", "mean"):
            raise ParameterError(f"covariate {self.path}: attr={self.attribute} averages a "
                                 f"polygon column by area share; it does not go with "
                                 f"how={how!r}.", param="covariates")
        if self.attribute and scales:
            raise ParameterError(f"covariate {self.path}: attr={self.attribute} takes no "
                                 "scales (it is averaged over each unit).", param="covariates")
        name = _sanitise(self.name or self.path.stem)
        object.__setattr__(self, "name", name)


def _sanitise(text: str) -> str:
    name = re.sub(r"[^0-9a-zA-Z_]+", "_", text).strip("_").lower()
    if not name:
        return "layer"
    return f"cov_{name}" if name[0].isdigit() else name


def _scale_label(metres: float) -> str:
    return f"{round(metres):d}m"


def parse_covariate(spec: str) -> CovariateLayer:
    """Parse ``FILE[:how][:SCALES][:attr=COLUMN][:name=LABEL][:layer=NAME]``.

    Parameters
    ----------
    spec : str
        The file, then options separated by ``:`` in any order: a ``how`` (``auto``,
        ``count``, ``distance``/``dist``, ``density``, ``length``/``len``,
        ``share``/``cover``, ``mean``), comma-separated scales that each carry a unit
        (``100m,400m``, ``600ft``, ``0.5km``), ``attr=COLUMN``, ``name=LABEL`` (feature-name
        prefix) and ``layer=NAME`` (a layer of a multi-layer file).

    Returns
    -------
    CovariateLayer

    Raises
    ------
    ParameterError
        For an empty spec, an unknown option, two ``how`` values, a scale without a unit,
        or a spec whose file part is ambiguous.

    Notes
    -----
    The file is the part of ``spec`` before the first ``:``, unless a file whose own name
    contains ``:`` exists: every prefix of ``spec`` that ends just before a ``:`` (and
    ``spec`` itself) is tried, and the one naming an existing file is the path. When two do
    (``a.gpkg`` and ``a.gpkg:count`` both exist) the spec is refused as ambiguous. When none
    does, the path is the part before the first ``:`` and reading it reports the missing
    file. The file is not read here.

    Examples
    --------
    >>> layer = parse_covariate("bars.gpkg:count:100m,400m")
    >>> layer.how, layer.scales, layer.name
    ('count', (100.0, 400.0), 'bars')
    >>> parse_covariate("zoning.gpkg:attr=commercial_share").attribute
    'commercial_share'
    >>> parse_covariate("streets.shp:len").how
    'length'
    """
    text = str(spec).strip()
    if not text:
        raise ParameterError("a covariate needs a file, e.g. bars.gpkg or bars.gpkg:count.",
                             param="covariates")
    cuts = [m.start() for m in re.finditer(":", text)] + [len(text)]
    existing = [c for c in cuts if Path(text[:c]).is_file()]
    if len(existing) > 1:
        names = " and ".join(repr(text[:c]) for c in existing)
        raise ParameterError(f"covariate {text!r} is ambiguous: both {names} are files. "
                             "Rename the file whose name contains ':'.", param="covariates")
    cut = existing[0] if existing else cuts[0]
    path, rest = text[:cut], text[cut + 1:]
    if not path:
        raise ParameterError(f"covariate {text!r} has no file before ':'.", param="covariates")
    options: dict[str, Any] = {}
    for token in (t.strip() for t in rest.split(":")) if rest else ():
        if not token:
            raise ParameterError(f"covariate {text!r}: empty option between ':'.",
                                 param="covariates")
        key, sep, value = token.partition("=")
        if sep and key.lower() in ("attr", "name", "layer"):
            field_name = "attribute" if key.lower() == "attr" else key.lower()
            if not value or field_name in options:
                raise ParameterError(f"covariate {text!r}: give {key}= once, with a value.",
                                     param="covariates")
            options[field_name] = value
        elif token[0].isdigit() or token[0] in ".+-":
            if "scales" in options:
                raise ParameterError(f"covariate {text!r}: give the scales once, comma "
                                     "separated (e.g. 100m,400m).", param="covariates")
            options["scales"] = tuple(_parse_scale(s, text) for s in token.split(","))
        elif _HOW_ALIASES.get(token.lower(), token.lower()) in HOWS:
            if "how" in options:
                raise ParameterError(f"covariate {text!r}: two ways to summarise "
                                     f"({options['how']!r} and {token!r}); give one, or the "
                                     "file twice.", param="covariates")
            options["how"] = token
        else:
            raise ParameterError(
                f"covariate {text!r}: unknown option {token!r}. Options are a how "
                f"({', '.join(HOWS)}), scales with units (100m,400m), attr=COLUMN, "
                "name=LABEL or layer=NAME.", param="covariates"
            )
    return CovariateLayer(path=Path(path), **options)


def _parse_scale(token: str, spec: str) -> float:
    token = token.strip()
    if re.fullmatch(r"[-+]?\d*\.?\d+(?:[eE][-+]?\d+)?", token):
        raise ParameterError(f"covariate {spec!r}: scale {token!r} has no unit; add one "
                             f"(e.g. {token}m or {token}ft).", param="covariates")
    return parse_length(token, name=f"covariate {spec!r} scale")


# ---------------------------------------------------------------------- reading
@dataclass(frozen=True, eq=False)
class CovariateData:
    """A covariate layer read and checked, in the events' internal metres.

    Attributes
    ----------
    layer : CovariateLayer
        What was asked for.
    family : {"points", "lines", "polygons"}
        The geometry family of every feature in the file.
    geometry : ndarray of shapely geometries
        Single-part geometries (multi-part features are split into their parts), metres.
    values : ndarray of float, optional
        The ``layer.attribute`` column, one value per geometry part; None without one.
    spatial_reference : SpatialReference
        The CRS the geometry was converted to.
    source_crs : str or None
        The layer's own CRS (None when it had none and the events are on a local grid).
    n_features : int
        Features (rows) in the file.
    """

    layer: CovariateLayer
    family: str
    geometry: np.ndarray
    values: np.ndarray | None
    spatial_reference: SpatialReference
    source_crs: str | None
    n_features: int


def read_covariate(layer: CovariateLayer, spatial_reference: SpatialReference
                   ) -> CovariateData:
    """Read a covariate layer and reproject it into the events' internal metres.

    Parameters
    ----------
    layer : CovariateLayer
        The layer (see :func:`parse_covariate`).
    spatial_reference : SpatialReference
        The events' CRS; the layer is reprojected from its own CRS to it and scaled to
        metres (``metres_per_unit``, e.g. 0.3048 for EPSG:2913 in feet).

    Returns
    -------
    CovariateData

    Raises
    ------
    DataError
        Naming the file, when it is missing or unreadable, holds several layers and none
        was chosen, has no features, has features without geometry, mixes points, lines
        and polygons, has a geometry family that ``layer.how`` does not apply to, has no
        CRS (unless the events are on a local grid) or a CRS while the events are on a
        local grid, has coordinates the reprojection cannot place, or lacks
        ``layer.attribute`` as a numeric column without missing values.

    Notes
    -----
    O(n_vertices) after reading: one vectorised ``shapely.transform``.
    """
    path = layer.path
    if not path.exists():
        raise DataError(f"{path}: no such covariate file. Give a vector file (.gpkg, .shp, "
                        ".geojson) of points, lines or polygons.", param="covariates")
    import pyogrio

    try:
        layers = [str(row[0]) for row in pyogrio.list_layers(path)]
    except Exception as exc:
        raise DataError(f"{path}: could not read the covariate layer as a vector file "
                        f"({exc}).", param="covariates") from None
    if layer.layer is not None and layer.layer not in layers:
        raise DataError(f"{path}: no layer {layer.layer!r} (layers: {', '.join(layers)}).",
                        param="covariates")
    if layer.layer is None and len(layers) > 1:
        raise DataError(f"{path}: holds {len(layers)} layers ({', '.join(layers)}); choose "
                        f"one with layer=NAME, e.g. {path}:layer={layers[0]}.", param="covariates")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            frame = pyogrio.read_dataframe(path, layer=layer.layer)
    except Exception as exc:
        raise DataError(f"{path}: could not read the covariate layer as a vector file "
                        f"({exc}).", param="covariates") from None
    n_features = len(frame)
    if n_features == 0:
        raise DataError(f"{path}: the covariate layer has no features; give a file with at "
                        "least one point, line or polygon.", param="covariates")
    geoms = np.asarray(frame.geometry.to_numpy(), dtype=object)
    missing = shapely.is_missing(geoms) | shapely.is_empty(geoms)
    if missing.any():
        raise DataError(f"{path}: {int(missing.sum())} of {n_features} features have no "
                        "geometry (null or empty); remove or fix those rows.", param="covariates")
    family = _family(path, shapely.get_type_id(geoms), n_features)
    if family not in HOWS[layer.how]:
        allowed = ", ".join(h for h, fams in HOWS.items() if family in fams)
        raise DataError(f"{path}: how={layer.how!r} does not apply to a layer of {family}; "
                        f"for {family} use {allowed}.", param="covariates")
    if layer.attribute is not None and family != "polygons":
        raise DataError(f"{path}: attr={layer.attribute} is averaged by area share, which "
                        f"needs polygons, but the layer holds {family}.", param="covariates")
    if layer.scales and family == "polygons":
        raise DataError(f"{path}: a polygon layer takes no scales (its share and mean are "
                        "over each unit); drop the scales.", param="covariates")
    values = None if layer.attribute is None else _attribute(path, frame, layer.attribute)
    source = frame.crs.to_string() if frame.crs is not None else None
    geoms = _to_metres(path, geoms, source, spatial_reference)
    if family == "polygons":
        geoms = _valid_polygons(geoms)
    parts, index = shapely.get_parts(geoms, return_index=True)
    keep = ~shapely.is_empty(parts)
    parts, index = parts[keep], index[keep]
    return CovariateData(
        layer=layer, family=family, geometry=np.asarray(parts, dtype=object),
        values=None if values is None else values[index],
        spatial_reference=spatial_reference, source_crs=source, n_features=n_features,
    )


def _family(path: Path, type_ids: np.ndarray, n_features: int) -> str:
    names = np.array([shapely.GeometryType(t).name for t in range(8)], dtype=object)
    kinds = {"POINT": "points", "MULTIPOINT": "points", "LINESTRING": "lines",
             "MULTILINESTRING": "lines", "LINEARRING": "lines", "POLYGON": "polygons",
             "MULTIPOLYGON": "polygons", "GEOMETRYCOLLECTION": "collections"}
    found: dict[str, int] = {}
    for type_id, count in zip(*np.unique(type_ids, return_counts=True), strict=True):
        family = kinds[str(names[int(type_id)])]
        found[family] = found.get(family, 0) + int(count)
    if len(found) > 1 or "collections" in found:
        listed = ", ".join(f"{n} {f}" for f, n in sorted(found.items()))
        raise DataError(f"{path}: the covariate layer mixes geometry types ({listed} of "
                        f"{n_features} features); split it into one file of points, one of "
                        "lines and one of polygons.", param="covariates")
    return next(iter(found))


def _attribute(path: Path, frame: Any, column: str) -> np.ndarray:
    if column not in frame.columns or column == frame.geometry.name:
        columns = [str(c) for c in frame.columns if c != frame.geometry.name]
        raise DataError(f"{path}: no column {column!r} for attr= (columns: "
                        f"{', '.join(columns) or 'none'}).", param="covariates")
    series = frame[column]
    if not (pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)):
        numeric = [str(c) for c in frame.columns
                   if c != frame.geometry.name and pd.api.types.is_numeric_dtype(frame[c])]
        example = series.dropna().iloc[0] if series.notna().any() else None
        raise DataError(f"{path}: column {column!r} is not numeric (e.g. {example!r}); "
                        f"attr= needs numbers (numeric columns: {', '.join(numeric) or 'none'}).",
                        param="covariates")
    values = series.to_numpy(dtype=float, na_value=np.nan)
    bad = ~np.isfinite(values)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise DataError(f"{path}: column {column!r} has {int(bad.sum())} missing or infinite "
                        f"values (first in feature {first}); fill them or drop those rows.",
                        param="covariates")
    return values


def _to_metres(path: Path, geoms: np.ndarray, source: str | None,
               spatial_reference: SpatialReference) -> np.ndarray:
    sref = spatial_reference
    if sref.is_local:
        if source is not None:
            raise DataError(f"{path}: the layer has CRS {source} but the events are on the "
                            f"local grid {sref.crs!r}, so it cannot be placed; give the events "
                            "their real CRS, or a layer without a CRS in the grid's units.",
                            param="covariates")
        return shapely.transform(geoms, lambda c: c * sref.metres_per_unit)
    if source is None:
        raise DataError(f"{path}: the covariate layer has no CRS (a .prj missing?); set its "
                        f"CRS (e.g. with ogr2ogr -a_srs or GeoDataFrame.set_crs) so it can be "
                        f"reprojected to the events' {sref.crs}.", param="covariates")

    def convert(coords: np.ndarray) -> np.ndarray:
        mx, my = sref.from_crs_coordinates(coords[:, 0], coords[:, 1], source)
        return np.column_stack([mx, my])

    try:
        out = shapely.transform(geoms, convert)
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{path}: could not reproject the layer from {source} to "
                        f"{sref.crs} ({exc}).", param="covariates") from None
    coords = shapely.get_coordinates(out)
    if not np.isfinite(coords).all():
        raise DataError(f"{path}: {int((~np.isfinite(coords).all(axis=1)).sum())} vertices "
                        f"could not be reprojected from {source} to {sref.crs} (outside the "
                        "area of that CRS?); check the layer's CRS.", param="covariates")
    return out


def _valid_polygons(geoms: np.ndarray) -> np.ndarray:
    invalid = ~shapely.is_valid(geoms)
    if invalid.any():
        geoms = geoms.copy()
        geoms[invalid] = shapely.make_valid(geoms[invalid], method="structure",
                                            keep_collapsed=False)
    return geoms


# ---------------------------------------------------------------------- features
@dataclass(frozen=True, eq=False)
class CovariateTable:
    """Covariate features per unit.

    Attributes
    ----------
    unit_id : ndarray
        The units' ids, in the units' order.
    names : list of str
        Feature names (``bars_count_400m``, ``bars_dist``, ``streets_len``, ...).
    values : ndarray of float, shape (n_units, n_features)
        Feature values; finite everywhere.
    descriptions : list of str
        One sentence per feature: what it is and its unit.
    """

    unit_id: np.ndarray
    names: list[str]
    values: np.ndarray
    descriptions: list[str] = field(default_factory=list)

    @property
    def n_features(self) -> int:
        """Number of features."""
        return len(self.names)

    def to_frame(self) -> pd.DataFrame:
        """The features as a DataFrame indexed by ``unit_id``, one column per feature."""
        frame = pd.DataFrame(self.values, columns=list(self.names))
        frame.index = pd.Index(self.unit_id, name="unit_id")
        return frame


def covariate_features(
    units: Units, layers: Sequence[CovariateLayer | CovariateData]
) -> CovariateTable:
    """Compute every covariate layer's features for each unit.

    Parameters
    ----------
    units : Units
        Any unit kind; only ``geometry``, ``centroids``, ``typical_size`` and ``raster``
        are used.
    layers : sequence of CovariateLayer or CovariateData
        Layers to read (in ``units.spatial_reference``) or already read.

    Returns
    -------
    CovariateTable
        ``len(units)`` rows, the features of each layer in the order given.

    Raises
    ------
    DataError
        From :func:`read_covariate`.
    ParameterError
        If two layers give the same feature name (set ``name=`` on one), or a layer was
        read in another CRS than the units'.

    Warns
    -----
    DataQualityWarning
        When a layer lies entirely farther than its largest scale from every unit (a wrong
        CRS is the usual cause).

    Notes
    -----
    With ``u`` units, ``n`` points (or line vertices after splitting lines into pieces no
    longer than ``r/8``), ``k`` points within ``r`` of a unit and ``P`` raster pixels
    (at most 2,000 a side):

    - counts and lengths within ``r``: one k-d tree of points, pairs found per block of
      units, O((u + n) log n + u k); exact distances to the unit only for pairs in a ring
      of the unit's width around ``r`` (arithmetic for square grids, GEOS otherwise);
    - distances: a k-d tree (points) or an STRtree ``query_nearest`` (lines, polygons),
      O(u log n);
    - densities: points binned on a raster of pixel ``r/4``, a separable Gaussian filter
      (O(P r/pixel)), then averaged over the pixels of each unit, O(P);
    - line length and polygon area inside units: STRtree pairs and one vectorised GEOS
      intersection per (unit, feature) pair that crosses the unit's boundary.
    """
    names: list[str] = []
    columns: list[np.ndarray] = []
    descriptions: list[str] = []
    for item in layers:
        data = item if isinstance(item, CovariateData) else read_covariate(
            item, units.spatial_reference)
        if data.spatial_reference != units.spatial_reference:
            raise ParameterError(f"{data.layer.path}: read in {data.spatial_reference.crs}, "
                                 f"but the units are in {units.spatial_reference.crs}; read "
                                 "it with the units' spatial reference.", param="covariates")
        scales = data.layer.scales or _default_scales(units)
        _warn_if_far(units, data, max(scales))
        for name, column, description in _layer_features(units, data, scales):
            if name in names:
                raise ParameterError(f"{data.layer.path}: feature {name!r} is already made by "
                                     "another covariate layer; give one of them name=LABEL.",
                                     param="covariates")
            names.append(name)
            columns.append(np.asarray(column, dtype=float))
            descriptions.append(description)
    values = (np.column_stack(columns) if columns else np.zeros((len(units), 0)))
    return CovariateTable(unit_id=units.unit_id, names=names, values=values,
                          descriptions=descriptions)


def _default_scales(units: Units) -> tuple[float, ...]:
    size = units.typical_size
    return tuple(float(max(round(f * size), 1)) for f in _DEFAULT_SCALE_FACTORS)


def _warn_if_far(units: Units, data: CovariateData, reach: float) -> None:
    ux0, uy0, ux1, uy1 = shapely.total_bounds(units.geometry)
    lx0, ly0, lx1, ly1 = shapely.total_bounds(data.geometry)
    gap = max(lx0 - ux1, ux0 - lx1, ly0 - uy1, uy0 - ly1)
    if gap > reach:
        warnings.warn(
            f"{data.layer.path}: the covariate layer lies {gap:,.0f} m from the units "
            f"(farther than its largest scale, {reach:,.0f} m), so it has nothing near any "
            "unit; check the layer's CRS.", DataQualityWarning, stacklevel=3,
        )


def _layer_features(units: Units, data: CovariateData, scales: tuple[float, ...]
                    ) -> list[tuple[str, np.ndarray, str]]:
    how, name, family = data.layer.how, data.layer.name, data.family
    path = data.layer.path.name
    out: list[tuple[str, np.ndarray, str]] = []
    if family == "points":
        xy = shapely.get_coordinates(data.geometry)
        if how in ("auto", "count"):
            weights = np.ones(len(xy))
            for r, value in zip(scales, _sum_within(units, xy, weights, scales), strict=True):
                out.append((f"{name}_count_{_scale_label(r)}", value,
                            f"{path}: points within {r:g} m of the unit (count)"))
        if how in ("auto", "distance"):
            out.append((f"{name}_dist", _distance_to_points(units, xy),
                        f"{path}: distance from the unit centroid to the nearest point (m)"))
        if how in ("auto", "density"):
            for r in scales:
                out.append((f"{name}_density_{_scale_label(r)}", _mean_density(units, xy, r),
                            f"{path}: mean Gaussian kernel density (sd {r:g} m) of points "
                            "over the unit (per km²)"))
    elif family == "lines":
        if how in ("auto", "length"):
            out.append((f"{name}_len", _length_inside(units, data.geometry),
                        f"{path}: length of lines inside the unit (m)"))
            total = float(shapely.length(data.geometry).sum())
            for r in scales:
                # pieces of r/8, but no more than about _MAX_PIECES of them in all
                piece = max(r / _LINE_PIECES, total / _MAX_PIECES)
                xy, weights = _line_pieces(data.geometry, piece)
                value = _sum_within(units, xy, weights, (r,))[0]
                out.append((f"{name}_len_{_scale_label(r)}", value,
                            f"{path}: length of lines within {r:g} m of the unit (m)"))
        if how in ("auto", "distance"):
            out.append((f"{name}_dist", _distance_to_geometry(units, data.geometry),
                        f"{path}: distance from the unit centroid to the nearest line (m)"))
    else:
        attribute = data.layer.attribute
        if attribute is not None:
            assert data.values is not None
            share, mean = _polygon_share(units, data.geometry, data.values)
            column = _sanitise(attribute)
            out.append((f"{name}_{column}_mean", mean,
                        f"{path}: area-weighted mean of {attribute!r} over the covered part "
                        "of the unit (0 where uncovered)"))
            out.append((f"{name}_share", share,
                        f"{path}: share of the unit covered by the polygons (0-1)"))
        else:
            if how in ("auto", "share"):
                share, _ = _polygon_share(units, data.geometry, None)
                out.append((f"{name}_share", share,
                            f"{path}: share of the unit covered by the polygons (0-1)"))
            if how in ("auto", "distance"):
                out.append((f"{name}_dist", _distance_to_geometry(units, data.geometry),
                            f"{path}: distance from the unit centroid to the nearest polygon, "
                            "0 inside one (m)"))
    return out


# ---------------------------------------------------------------------- within a radius
def _anchors(units: Units) -> tuple[np.ndarray, np.ndarray]:
    """A point inside each unit and the unit's farthest vertex from it (cached)."""
    key = ("covariate_anchors",)
    cache = units._cache
    if key not in cache:
        if units.kind == "grid" and units.grid is not None:
            anchors = units.centroids
            reach = np.full(len(units), units.grid.cell_size / np.sqrt(2.0))
        else:
            anchors = shapely.get_coordinates(shapely.point_on_surface(units.geometry))
            coords, index = shapely.get_coordinates(units.geometry, return_index=True)
            far = np.hypot(coords[:, 0] - anchors[index, 0], coords[:, 1] - anchors[index, 1])
            reach = np.zeros(len(units))
            np.maximum.at(reach, index, far)
        cache[key] = (anchors, reach * (1 + 1e-9) + 1e-9)
    return cache[key]


def _unit_point_distance(units: Units, unit_idx: np.ndarray, px: np.ndarray, py: np.ndarray
                         ) -> np.ndarray:
    """Distance from each point to its unit's polygon (0 inside), metres."""
    grid = units.grid
    if units.kind == "grid" and grid is not None and units.grid_cells is not None:
        gx, gy = grid.to_grid_frame(px, py)
        cells = units.grid_cells[unit_idx]
        half = grid.cell_size / 2.0
        dx = np.maximum(np.abs(gx - (cells[:, 0] + 0.5) * grid.cell_size) - half, 0.0)
        dy = np.maximum(np.abs(gy - (cells[:, 1] + 0.5) * grid.cell_size) - half, 0.0)
        return np.hypot(dx, dy)
    if "covariate_prepared" not in units._cache:
        shapely.prepare(units.geometry)
        units._cache["covariate_prepared"] = True
    return shapely.distance(units.geometry[unit_idx], shapely.points(px, py))


def _sum_within(units: Units, xy: np.ndarray, weights: np.ndarray,
                radii: Sequence[float]) -> list[np.ndarray]:
    """Sum of point weights within each radius of each unit polygon (0 inside).

    Pairs (unit, point) come from k-d trees on the units' anchors and the points, a block
    of units at a time so that at most about ``_MAX_PAIRS`` pairs are held. A point within
    ``r`` of the anchor is within ``r`` of the unit; one farther than ``r`` plus the unit's
    reach is not; only those in between get an exact distance.
    """
    n_units = len(units)
    sums = [np.zeros(n_units) for _ in radii]
    if len(xy) == 0:
        return sums
    anchors, reach = _anchors(units)
    tree = cKDTree(xy)
    r_max = float(max(radii))
    # points per square metre around the units, for the block size
    x0, y0, x1, y1 = (min(xy[:, 0].min(), anchors[:, 0].min()),
                      min(xy[:, 1].min(), anchors[:, 1].min()),
                      max(xy[:, 0].max(), anchors[:, 0].max()),
                      max(xy[:, 1].max(), anchors[:, 1].max()))
    density = len(xy) / max((x1 - x0 + 2 * r_max) * (y1 - y0 + 2 * r_max), 1.0)
    per_unit = density * np.pi * (r_max + float(reach.max())) ** 2
    block = int(np.clip(_MAX_PAIRS / max(per_unit, 1e-9), 64, n_units))
    order = np.argsort(anchors[:, 0] + anchors[:, 1] * 1e-3, kind="stable")  # compact blocks
    for start in range(0, n_units, block):
        idx = order[start:start + block]
        pairs = cKDTree(anchors[idx]).sparse_distance_matrix(
            tree, r_max + float(reach[idx].max()), output_type="ndarray")
        if len(pairs) == 0:
            continue
        unit_idx, point_idx, gap = idx[pairs["i"]], pairs["j"], pairs["v"]
        unit_reach = reach[unit_idx]
        exact = np.full(len(gap), np.nan)
        for k, r in enumerate(radii):
            inside = gap <= r
            unsure = ~inside & (gap <= r + unit_reach)
            todo = unsure & np.isnan(exact)
            if todo.any():
                exact[todo] = _unit_point_distance(units, unit_idx[todo], xy[point_idx[todo], 0],
                                                   xy[point_idx[todo], 1])
            within = inside | (unsure & (exact <= r))
            sums[k] += np.bincount(unit_idx[within], weights=weights[point_idx[within]],
                                   minlength=n_units)
    return sums


def _line_pieces(lines: np.ndarray, max_length: float) -> tuple[np.ndarray, np.ndarray]:
    """Midpoints and lengths of the lines cut into pieces no longer than ``max_length``."""
    pieces = shapely.segmentize(lines, max(max_length, 1e-3))
    coords, index = shapely.get_coordinates(pieces, return_index=True)
    same = index[1:] == index[:-1]
    start, end = coords[:-1][same], coords[1:][same]
    lengths = np.hypot(end[:, 0] - start[:, 0], end[:, 1] - start[:, 1])
    return (start + end) / 2.0, lengths


# ---------------------------------------------------------------------- distances
def _distance_to_points(units: Units, xy: np.ndarray) -> np.ndarray:
    distance, _ = cKDTree(xy).query(units.centroids, k=1)
    return np.asarray(distance, dtype=float)


def _distance_to_geometry(units: Units, geometry: np.ndarray) -> np.ndarray:
    tree = shapely.STRtree(geometry)
    centroids = shapely.points(units.centroids)
    (unit_idx, _), distance = tree.query_nearest(centroids, return_distance=True,
                                                 all_matches=False)
    out = np.full(len(units), np.nan)
    out[unit_idx] = distance
    return out


# ---------------------------------------------------------------------- density
def _mean_density(units: Units, xy: np.ndarray, bandwidth: float) -> np.ndarray:
    """Mean Gaussian kernel density of the points over each unit, points per km².

    Each point is shared among the four nearest pixel centres (bilinear, "cloud in cell",
    so its mean position is kept) of a raster of pixel ``bandwidth/4`` (coarser if the
    raster would exceed 2,000 pixels a side) spanning the units plus 4 bandwidths, smoothed by a
    Gaussian filter truncated at 4 bandwidths, interpolated (bilinear) at the centres of
    the pixels of ``units.raster()`` and averaged over each unit's pixels; a unit holding
    no pixel centre takes the value at a point inside it.
    """
    x0, y0, x1, y1 = shapely.total_bounds(units.geometry)
    margin = 4.0 * bandwidth
    span = max(x1 - x0, y1 - y0) + 2 * margin
    pixel = max(bandwidth / 4.0, span / 2000.0)
    origin = (x0 - margin, y0 - margin)
    shape = (int(np.ceil((y1 - y0 + 2 * margin) / pixel)) + 1,
             int(np.ceil((x1 - x0 + 2 * margin) / pixel)) + 1)
    counts = _deposit_bilinear(xy, origin, pixel, shape)
    surface = ndimage.gaussian_filter(counts, sigma=bandwidth / pixel, mode="constant",
                                      truncate=4.0) / (pixel * pixel) * 1e6

    def sample(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        rows = (y - origin[1]) / pixel - 0.5
        cols = (x - origin[0]) / pixel - 0.5
        return ndimage.map_coordinates(surface, [rows, cols], order=1, mode="nearest")

    raster = units.raster()
    inside = raster.unit_index.ravel() >= 0
    cx, cy = raster.centres()
    values = sample(cx.ravel()[inside], cy.ravel()[inside])
    unit_of_pixel = raster.unit_index.ravel()[inside]
    n_pixels = np.bincount(unit_of_pixel, minlength=len(units))
    total = np.bincount(unit_of_pixel, weights=values, minlength=len(units))
    out = np.divide(total, n_pixels, out=np.zeros(len(units)), where=n_pixels > 0)
    empty = n_pixels == 0
    if empty.any():
        anchors, _ = _anchors(units)
        out[empty] = sample(anchors[empty, 0], anchors[empty, 1])
    return out


def _deposit_bilinear(xy: np.ndarray, origin: tuple[float, float], pixel: float,
                      shape: tuple[int, int]) -> np.ndarray:
    """Points shared among the 4 nearest pixel centres by bilinear weights, O(n)."""
    rows, cols = shape
    fx = (xy[:, 0] - origin[0]) / pixel - 0.5
    fy = (xy[:, 1] - origin[1]) / pixel - 0.5
    c0, r0 = np.floor(fx).astype(np.int64), np.floor(fy).astype(np.int64)
    tx, ty = fx - c0, fy - r0
    out = np.zeros(rows * cols)
    for dc, dr, weight in ((0, 0, (1 - tx) * (1 - ty)), (1, 0, tx * (1 - ty)),
                           (0, 1, (1 - tx) * ty), (1, 1, tx * ty)):
        c, r = c0 + dc, r0 + dr
        ok = (c >= 0) & (c < cols) & (r >= 0) & (r < rows)
        out += np.bincount(r[ok] * cols + c[ok], weights=weight[ok], minlength=rows * cols)
    return out.reshape(rows, cols)


# ---------------------------------------------------------------------- inside units
def _length_inside(units: Units, lines: np.ndarray) -> np.ndarray:
    """Length of the lines inside each unit, metres (exact, GEOS intersections)."""
    tree = shapely.STRtree(lines)
    unit_idx, line_idx = tree.query(units.geometry, predicate="intersects")
    length = shapely.length(shapely.intersection(units.geometry[unit_idx], lines[line_idx]))
    return np.bincount(unit_idx, weights=length, minlength=len(units))


def _polygon_share(units: Units, polygons: np.ndarray, values: np.ndarray | None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Covered share of each unit, and the area-weighted mean of ``values`` over it.

    Pieces are (unit, polygon) intersections; a unit inside a polygon takes its whole
    area without an intersection. Where the layer's polygons overlap, the share uses the
    union of the overlapping ones (each area counted once) while the mean weights every
    polygon by its own overlap with the unit.
    """
    n_units = len(units)
    area = units.area
    dissolved = _dissolve_overlaps(polygons)
    tile = _TILE_UNITS * units.typical_size
    polygons, index = _tiled(polygons, tile)
    if values is not None:
        values = values[index]
    if dissolved is not None:
        dissolved, _ = _tiled(dissolved, tile)
    tree = shapely.STRtree(polygons)
    unit_idx, poly_idx = tree.query(units.geometry, predicate="intersects")
    mean = np.zeros(n_units)
    if values is not None or dissolved is None:
        piece = _piece_areas(units, polygons, unit_idx, poly_idx)
    if values is not None:
        weight = np.bincount(unit_idx, weights=piece, minlength=n_units)
        weighted = np.bincount(unit_idx, weights=piece * values[poly_idx], minlength=n_units)
        np.divide(weighted, weight, out=mean, where=weight > 0)
    if dissolved is not None:
        tree = shapely.STRtree(dissolved)
        unit_idx, poly_idx = tree.query(units.geometry, predicate="intersects")
        piece = _piece_areas(units, dissolved, unit_idx, poly_idx)
    covered = np.bincount(unit_idx, weights=piece, minlength=n_units)
    share = np.clip(np.divide(covered, area, out=np.zeros(n_units), where=area > 0), 0.0, 1.0)
    return share, mean


def _tiled(polygons: np.ndarray, size: float) -> tuple[np.ndarray, np.ndarray]:
    """Cut polygons with many vertices by square tiles of ``size`` metres.

    Returns the pieces and the index of the polygon each comes from. Clipping a unit
    against a polygon costs O(the polygon's vertices); cutting large polygons first (one
    intersection per polygon x tile) keeps that cost near O(1) per (unit, piece) pair.
    Pieces tile their polygon exactly, so areas are unchanged.
    """
    index = np.arange(len(polygons))
    large = shapely.get_num_coordinates(polygons) > _MAX_VERTICES
    if not large.any():
        return polygons, index
    big = polygons[large]
    x0, y0, x1, y1 = shapely.total_bounds(big)
    cols = np.arange(int(np.floor(x0 / size)), int(np.floor(x1 / size)) + 1)
    rows = np.arange(int(np.floor(y0 / size)), int(np.floor(y1 / size)) + 1)
    cc, rr = (a.ravel() for a in np.meshgrid(cols, rows))
    tiles = shapely.box(cc * size, rr * size, (cc + 1) * size, (rr + 1) * size)
    tile_idx, big_idx = shapely.STRtree(big).query(tiles, predicate="intersects")
    pieces = shapely.intersection(big[big_idx], tiles[tile_idx])
    parts, part_of = shapely.get_parts(pieces, return_index=True)
    keep = (shapely.get_type_id(parts) == 3) & ~shapely.is_empty(parts)
    parts, part_of = parts[keep], big_idx[part_of[keep]]
    small = ~large
    return (np.concatenate([polygons[small], parts]),
            np.concatenate([index[small], index[large][part_of]]))


def _piece_areas(units: Units, polygons: np.ndarray, unit_idx: np.ndarray,
                 poly_idx: np.ndarray) -> np.ndarray:
    shapely.prepare(polygons)
    whole = shapely.contains(polygons[poly_idx], units.geometry[unit_idx])
    piece = np.where(whole, units.area[unit_idx], 0.0)
    cut = ~whole
    piece[cut] = shapely.area(shapely.intersection(units.geometry[unit_idx[cut]],
                                                   polygons[poly_idx[cut]]))
    return piece


def _dissolve_overlaps(polygons: np.ndarray) -> np.ndarray | None:
    """The polygons with overlapping groups merged, or None when none overlap."""
    if len(polygons) < 2 or bool(shapely.coverage_is_valid(polygons)):
        return None
    tree = shapely.STRtree(polygons)
    a, b = tree.query(polygons)
    ahead = a < b
    a, b = a[ahead], b[ahead]
    overlap = shapely.relate_pattern(polygons[a], polygons[b], "T********")
    if not overlap.any():
        return None
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(polygons)
    graph = coo_matrix((np.ones(int(overlap.sum())), (a[overlap], b[overlap])), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    groups = pd.Series(np.arange(n)).groupby(label).indices
    merged = [polygons[members[0]] if len(members) == 1
              else shapely.union_all(polygons[members]) for members in groups.values()]
    parts = shapely.get_parts(np.asarray(merged, dtype=object))
    return np.asarray(parts[~shapely.is_empty(parts)], dtype=object)


"""The pipeline in one call: events -> area units -> model -> forecast."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from placecast.events import Events
from placecast.exceptions import ParameterError
from placecast.forecast import Forecast, TimeWindow
from placecast.models import make_model
from placecast.quantities import parse_length
from placecast.units import Units, default_region, hex_grid, polygon_units, read_region, square_grid

__all__ = ["UnitSpec", "build_units", "run_forecast"]


@dataclass(frozen=True, slots=True)
class UnitSpec:
    """How to build area units.

    Attributes
    ----------
    kind : {"grid", "hex", "polygons"}
        Square grid, H3 hexagons or user polygons.
    cell_size : float
        Cell side in metres (grid) or the side of a square of the hexagon's area (hex).
    region : path, optional
        Region polygon file; default the events' convex hull buffered by one cell.
    polygons : path, optional
        Polygon file for ``kind="polygons"``.
    id_column : str, optional
        Id column of ``polygons``.
    origin : (float, float), optional
        Grid origin in the input CRS's units.
    rotation : float
        Grid rotation, degrees counter-clockwise.
    """

    kind: str = "grid"
    cell_size: float = 150.0
    region: str | os.PathLike[str] | None = None
    polygons: str | os.PathLike[str] | None = None
    id_column: str | None = None
    origin: tuple[float, float] | None = None
    rotation: float = 0.0


def build_units(events: Events, spec: UnitSpec) -> Units:
    """Build the area units for ``events`` following ``spec``."""
    sref = events.spatial_reference
    if spec.region is not None:
        region = read_region(spec.region, sref)
    elif spec.kind == "polygons":
        region = None
    else:
        region = default_region(events, spec.cell_size)
    if spec.kind == "grid":
        origin = None
        if spec.origin is not None:
            origin = (spec.origin[0] * sref.metres_per_unit, spec.origin[1] * sref.metres_per_unit)
        return square_grid(region, spec.cell_size, sref, origin=origin, rotation=spec.rotation)
    if spec.kind == "hex":
        return hex_grid(region, spec.cell_size, sref)
    if spec.kind == "polygons":
        if spec.polygons is None:
            raise ParameterError("polygon units need a polygon file (--units-file FILE).")
        return polygon_units(spec.polygons, sref, id_column=spec.id_column, region=region)
    raise ParameterError(f"unknown unit kind {spec.kind!r}; use grid, hex or polygons.")


def run_forecast(
    events: Events,
    *,
    model: str = "kde",
    at: Any,
    horizon: str = "7d",
    units: Units | None = None,
    unit_spec: UnitSpec | None = None,
    cell: str | float = "150m",
    model_params: dict[str, Any] | None = None,
) -> Forecast:
    """Fit ``model`` on events before ``at`` and forecast the window ``[at, at+horizon)``.

    Examples
    --------
    >>> from placecast.datasets import portland_burglary_path, portland_region_path
    >>> from placecast.io import read_events
    >>> ev = read_events(portland_burglary_path(), crs="EPSG:2913")
    >>> fc = run_forecast(ev, model="naive", at="2017-03-01", horizon="7d",
    ...                   unit_spec=UnitSpec(cell_size=182.88, region=portland_region_path()))
    >>> fc.model, len(fc.units) > 10000
    ('naive', True)
    """
    window = TimeWindow.starting(at, horizon)
    if units is None:
        spec = unit_spec or UnitSpec(cell_size=parse_length(cell, name="--cell"))
        units = build_units(events, spec)
    estimator = make_model(model, **(model_params or {}))
    estimator.fit(events.before(window.start))
    return estimator.predict(units, window)

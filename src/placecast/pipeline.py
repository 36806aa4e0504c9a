"""The pipeline in one call: events -> area units -> model -> forecast."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any

import shapely

from placecast.events import Events
from placecast.exceptions import DataError, DataQualityWarning, ParameterError
from placecast.forecast import Forecast, TimeWindow
from placecast.models import make_model
from placecast.quantities import parse_length
from placecast.units import Units, default_region, hex_grid, polygon_units, read_region, square_grid

__all__ = ["UnitSpec", "build_units", "check_events_in_units", "run_forecast"]


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
    """Build the area units for ``events`` following ``spec``, checking they agree.

    Raises
    ------
    DataError
        If most of the events fall outside the units (a region for another place, or
        events read with the wrong CRS), stating both extents.

    Warns
    -----
    DataQualityWarning
        If some events fall outside the units; they are not counted in any unit.
    """
    units = _make_units(events, spec)
    check_events_in_units(events, units, region_file=spec.region or spec.polygons)
    return units


def _make_units(events: Events, spec: UnitSpec) -> Units:
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
            raise ParameterError("polygon units need a polygon file (`polygons` FILE).",
                                 param="polygons")
        return polygon_units(spec.polygons, sref, id_column=spec.id_column, region=region)
    raise ParameterError(f"unknown unit kind {spec.kind!r}; use grid, hex or polygons.")


def check_events_in_units(
    events: Events, units: Units, *, region_file: str | os.PathLike[str] | None = None,
    max_outside: float = 0.5,
) -> int:
    """Check that the events fall in the units; return how many fall outside.

    Parameters
    ----------
    events : Events
        The events.
    units : Units
        Area units built for them.
    region_file : path, optional
        The region or polygon file the units came from, named in messages.
    max_outside : float
        Largest share of events that may fall outside before it is an error.

    Raises
    ------
    DataError
        If more than ``max_outside`` of the events fall outside every unit: the region
        and the events do not describe the same place (or the events' CRS is wrong).

    Warns
    -----
    DataQualityWarning
        If some (at most ``max_outside``) events fall outside every unit.
    """
    n = len(events)
    if n == 0:
        return 0
    if units.kind == "hex" and units.region is not None:
        # H3 assignment is a Python call per point: look up only the points outside the
        # region (the hexagons overlapping the region cover it)
        beyond = ~shapely.contains_xy(units.region, events.x, events.y)
        n_out = int((units.assign(events.x[beyond], events.y[beyond]) < 0).sum())
    else:
        n_out = int((units.assign(events.x, events.y) < 0).sum())
    if n_out == 0:
        return 0
    sref = events.spatial_reference
    scale = sref.metres_per_unit
    crs_units = "metres" if scale == 1 else f"{sref.crs} units ({scale:g} m)"
    ex0, ey0, ex1, ey1 = (v / scale for v in events.bbox)
    area = units.region if units.region is not None else shapely.union_all(units.geometry)
    rx0, ry0, rx1, ry1 = (float(v) / scale for v in shapely.bounds(area))
    what = f"the region {region_file}" if region_file is not None else "the area units"
    share = n_out / n
    if share > max_outside:
        disjoint = ex1 < rx0 or rx1 < ex0 or ey1 < ry0 or ry1 < ey0
        cause = ("They do not overlap at all, so " if disjoint else "So ")
        raise DataError(
            f"{n_out:,} of {n:,} events ({share:.0%}) fall outside {what}. The events span "
            f"x {ex0:,.0f} .. {ex1:,.0f}, y {ey0:,.0f} .. {ey1:,.0f}; the region spans x "
            f"{rx0:,.0f} .. {rx1:,.0f}, y {ry0:,.0f} .. {ry1:,.0f} (in {crs_units} of "
            f"{sref.crs}). {cause}either the region is for another place, or the events "
            "were read with the wrong CRS (check `crs`). If the region is meant to cover "
            "only part of the events, select those events first (e.g. `categories`, "
            "`since`/`until`, or a smaller file).",
            param=("crs", "categories", "since", "until"),
        )
    warnings.warn(
        f"{n_out:,} of {n:,} events ({share:.1%}) fall outside {what} and are not counted "
        "in any unit.", DataQualityWarning, stacklevel=3)
    return n_out


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
    explain: bool = False,
) -> Forecast:
    """Fit ``model`` on events before ``at`` and forecast the window ``[at, at+horizon)``.

    With ``explain=True`` (models that can say why, such as ``boost``) the forecast's
    ``details`` name, per unit, the features that raised it most.

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
        spec = unit_spec or UnitSpec(cell_size=parse_length(cell, name="cell"))
        units = build_units(events, spec)
    estimator = make_model(model, **(model_params or {}))
    explained = getattr(estimator, "explained_forecast", None)
    if explain and explained is None:
        raise ParameterError(f"the {model} model cannot explain its forecast; explanations "
                             "come from the learned model (boost).", param="explain")
    estimator.fit(events.before(window.start))
    if explain:
        assert explained is not None
        return explained(units, window)
    return estimator.predict(units, window)

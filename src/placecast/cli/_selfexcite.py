"""Self-exciting models on the command line.

``placecast fit --model etas|sepp`` handlers and the ``placecast simulate`` command.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer

from placecast.cli._app import CrsOpt, command, console, err_console, load_events
from placecast.cli._core import ParamOpt, parse_params
from placecast.cli._fit import FitRequest, register_fit_handler
from placecast.exceptions import DataError, ParameterError

__all__ = ["fit_etas", "fit_sepp", "simulate_command"]


def _summary(model: Any, events: Any, region: Any = None) -> dict[str, Any]:
    """The fit's JSON: estimates, period, CRS and the region simulations default to."""
    import shapely

    fit = model.fit_
    out = fit.to_dict()
    out["background"] = {
        "rate_per_day": fit.background_rate,
        "expected_events": fit.n_background,
        "fraction": fit.n_background / fit.n_events,
    }
    out["period"] = {"start": str(events.start), "end": str(events.end),
                     "days": fit.period_days}
    out["crs"] = events.spatial_reference.source_crs
    sref = events.spatial_reference
    out["spatial_reference"] = {"crs": sref.crs, "metres_per_unit": sref.metres_per_unit,
                                "input_crs": sref.input_crs}
    if region is None:  # where the events are: their convex hull
        region = shapely.convex_hull(shapely.multipoints(events.xy))
    out["region_wkt_m"] = shapely.to_wkt(shapely.simplify(region, 1.0),
                                         rounding_precision=1)
    out["params"] = {k: v for k, v in model.get_params().items() if k != "random_state"}
    return _finite(out)


def _finite(value: Any) -> Any:
    """Replace NaN/inf by None so the JSON is strict (``NaN`` is not JSON)."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@register_fit_handler("etas")
def fit_etas(request: FitRequest) -> dict[str, Any]:
    """Fit grid ETAS on ``--cell`` squares (over ``--region`` when given)."""
    from placecast.models import GridETAS, make_model
    from placecast.pipeline import UnitSpec, build_units
    from placecast.quantities import parse_length

    events = load_events(request.events_path, **request.event_options)
    params = dict(request.params)
    cell_size = float(params.pop("cell_size", parse_length(request.cell, name="cell")))
    model = make_model("etas", cell_size=cell_size, **params)
    units = None
    if request.region is not None:
        region = Path(request.region)
        if not region.exists():
            raise DataError(f"`region` {request.region}: no such polygon file (etas takes a "
                            "region file, such as police districts).", param="region")
        units = build_units(events, UnitSpec(cell_size=cell_size, region=region))
    assert isinstance(model, GridETAS)
    model.fit(events, units=units)
    out = _summary(model, events, region=model.units_.region)
    out["cell_size_m"] = cell_size
    return out


@register_fit_handler("sepp")
def fit_sepp(request: FitRequest) -> dict[str, Any]:
    """Fit the continuous self-exciting model."""
    from placecast.models import make_model

    events = load_events(request.events_path, **request.event_options)
    model = make_model("sepp", **request.params)
    model.fit(events)
    return _summary(model, events)


def _parse_bbox(text: str) -> tuple[float, float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ParameterError(f"`bbox` {text!r} must be 'xmin,ymin,xmax,ymax' numbers "
                             "(metres).", param="bbox") from None
    if len(values) != 4 or not (values[2] > values[0] and values[3] > values[1]):
        raise ParameterError(f"`bbox` {text!r} must be 'xmin,ymin,xmax,ymax' with max > min.",
                             param="bbox")
    return values


_SIMULATION_PARAMS = {"theta", "omega", "sigma", "background_rate", "time_cutoff",
                      "distance_cutoff", "cell_size"}


@command("simulate")
def simulate_command(
    output: Annotated[Path, typer.Option("--output", "-o", help="CSV file for the simulated "
                                         "events (time, x, y, parent, generation).")],
    model: Annotated[str, typer.Option("--model", "-m", help="etas or sepp.")] = "sepp",
    params_file: Annotated[Path | None, typer.Option("--params", help="JSON written by "
                                                     "'placecast fit' to take the "
                                                     "parameters from.")] = None,
    param: ParamOpt = None,
    days: Annotated[str, typer.Option("--days", help="Length of the period: days, or with "
                                      "a unit (52w).")] = "365",
    start: Annotated[str | None, typer.Option(
        "--start", help="Date of day 0. Default: with --params the day after the fitted "
        "data, otherwise 2020-01-01.")] = None,
    bbox: Annotated[str | None, typer.Option(
        "--bbox", help="Region 'xmin,ymin,xmax,ymax' in metres (local grid). Default: with "
        "--params the fitted region in its CRS, otherwise 0,0,10000,10000.")] = None,
    region: Annotated[Path | None, typer.Option("--region", help="Region polygon file "
                                                "(instead of --bbox); needs --crs.")] = None,
    crs: CrsOpt = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed.")] = None,
) -> None:
    """Simulate a self-exciting model (etas or sepp) with a uniform background.

    Parameters come from --params (a fit's JSON) and/or --param name=value: theta, omega
    (per day), sigma (metres, sepp), background_rate (events per day over the region),
    time_cutoff, distance_cutoff (sepp) and cell_size (metres, etas). With --params the
    events fall in the fitted region (the etas cells' region, or the convex hull of the
    sepp events), in the fit's CRS, from the day after the fitted data.
    """
    import shapely

    from placecast.events import SpatialReference
    from placecast.io._atomic import atomic_path
    from placecast.models.simulate import simulate_grid_etas, simulate_sepp
    from placecast.units import read_region, square_grid

    name = model.strip().lower()
    if name not in ("etas", "sepp"):
        raise ParameterError(f"`model` {model!r}: simulate knows 'etas' and 'sepp'.",
                             param="model")
    values: dict[str, Any] = {"theta": 0.5, "omega": 0.1, "sigma": 100.0,
                              "background_rate": 5.0, "cell_size": 150.0}
    fitted: dict[str, Any] = {}
    if params_file is not None:
        try:
            fitted = json.loads(Path(params_file).read_text())
        except (OSError, ValueError) as exc:
            raise DataError(f"{params_file}: cannot read the fit's JSON ({exc}).") from None
        if not isinstance(fitted, dict):
            raise DataError(f"{params_file}: not a fit's JSON (expected an object).")
        fitted_model = fitted.get("model")
        if fitted_model in ("etas", "sepp") and fitted_model != name:
            raise ParameterError(f"`params_file` {params_file} holds a {fitted_model} fit but "
                                 f"`model` is {name}; use `model` {fitted_model}.",
                                 param=("model", "params_file"))
        for key in ("theta", "omega", "sigma", "background_rate"):
            if fitted.get(key) is not None:
                values[key] = float(fitted[key])
        details = fitted.get("details", {})
        for key, source in (("time_cutoff", "time_cutoff_days"),
                            ("distance_cutoff", "distance_cutoff_m"),
                            ("cell_size", "cell_size_m")):
            if details.get(source) is not None:
                values[key] = float(details[source])
    for key, value in parse_params(param).items():
        if key not in _SIMULATION_PARAMS:
            raise ParameterError(f"`param` {key}: unknown; use one of "
                                 f"{', '.join(sorted(_SIMULATION_PARAMS))}.", param="param")
        values[key] = value
    from placecast.quantities import parse_duration

    period = parse_duration(days, name="days", bare="d")
    if period.unit == "M":
        raise ParameterError(f"`days` {days!r}: months differ in length; give days or weeks.",
                             param="days")
    days_value = period.amount
    if not days_value > 0:
        raise ParameterError(f"`days` must be positive, got {days}.", param="days")
    if region is not None and bbox is not None:
        raise ParameterError("give `region` or `bbox`, not both.", param=("region", "bbox"))
    if region is not None:
        if crs is None:
            raise ParameterError("`region` needs `crs` (the CRS to write coordinates in).",
                                 param=("crs", "region"))
        from placecast.io import spatial_reference_for

        sref = spatial_reference_for(crs)
        area = read_region(region, sref)
    elif bbox is None and fitted.get("region_wkt_m") and fitted.get("spatial_reference"):
        if crs is not None:
            raise ParameterError(f"`crs` {crs}: the fitted region is in the fit's CRS "
                                 f"({fitted.get('crs')}); drop `crs`, or give `region`.",
                                 param=("crs", "region"))
        saved = fitted["spatial_reference"]
        sref = SpatialReference(str(saved["crs"]), float(saved.get("metres_per_unit", 1.0)),
                                saved.get("input_crs"))
        try:
            area = shapely.from_wkt(fitted["region_wkt_m"])
        except shapely.errors.GEOSException as exc:
            raise DataError(f"{params_file}: region_wkt_m is not a valid WKT geometry "
                            f"({exc}).") from None
        err_console.print(f"[dim]region: the fitted region ({area.area / 1e6:,.1f} km², "
                          f"CRS {sref.source_crs}); --bbox or --region to change[/dim]",
                          soft_wrap=True)
    else:
        if crs is not None:
            raise ParameterError("`crs` is only used with `region` (a polygon file).",
                                 param=("crs", "region"))
        sref = SpatialReference("local:m")
        area = shapely.box(*_parse_bbox(bbox or "0,0,10000,10000"))
    if start is None:
        start = "2020-01-01"
        end = (fitted.get("period") or {}).get("end")
        if end:
            import numpy as np

            start = str(np.datetime64(str(end)[:10], "D") + 1)
            err_console.print(f"[dim]start: {start}, the day after the fitted data; --start "
                              "to change[/dim]", soft_wrap=True)
    if name == "sepp":
        sim = simulate_sepp(background_rate=float(values["background_rate"]), region=area,
                            theta=float(values["theta"]), omega=float(values["omega"]),
                            sigma=float(values["sigma"]), days=days_value,
                            time_cutoff=values.get("time_cutoff"),
                            distance_cutoff=values.get("distance_cutoff"),
                            random_state=seed)
    else:
        cells = square_grid(area, float(values["cell_size"]), sref)
        share = cells.area / cells.area.sum()
        sim = simulate_grid_etas(mu=float(values["background_rate"]) * share, units=cells,
                                 theta=float(values["theta"]), omega=float(values["omega"]),
                                 days=days_value, random_state=seed)
    events = sim.to_events(start=start, spatial_reference=sref)
    frame = sim.to_frame().drop(columns=["time_days"])
    frame.insert(0, "time", events.time)
    frame["x"], frame["y"] = sref.to_crs_coordinates(sim.x, sim.y)
    with atomic_path(output) as tmp:
        frame.to_csv(tmp, index=False, date_format="%Y-%m-%dT%H:%M:%S")
    err_console.print(f"[dim]{len(sim):,} events, {sim.n_background:,} background "
                      f"({1 - sim.n_background / max(len(sim), 1):.1%} triggered)[/dim]")
    console.print(f"wrote {output}")

"""Core commands: ``inspect``, ``forecast`` and ``demo``."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from placecast.cli._app import (
    EventsPath,
    command,
    console,
    err_console,
    load_events,
    print_table,
    shared_options,
    with_event_options,
)
from placecast.cli._regions import ByIdOpt, ByOpt
from placecast.exceptions import ParameterError
from placecast.models import MODELS

__all__ = ["UNIT_OPTIONS", "build_units_reported", "describe_units", "parse_params",
           "unit_spec_from_options", "with_unit_options"]

ModelOpt = Annotated[str, typer.Option("--model", "-m", help=(
    f"Model: {', '.join(sorted(MODELS))} (placecast.models.MODELS; parameters with "
    "-p name=value)."))]
CellOpt = Annotated[str, typer.Option("--cell", help="Cell size with a unit: 150m, 600ft, "
                                      "0.1mi.")]
UnitsOpt = Annotated[str, typer.Option("--units", help="grid (square cells), hex (H3) or "
                                       "polygons (--units-file).")]
UnitsFileOpt = Annotated[Path | None, typer.Option("--units-file", help="Polygon file for "
                                                   "--units polygons (beats, districts).")]
UnitsIdOpt = Annotated[str | None, typer.Option("--units-id", help="Id column of "
                                                "--units-file.")]
RegionOpt = Annotated[Path | None, typer.Option("--region", help="Region polygon file (any "
                                                "vector format). Default: the events' convex "
                                                "hull buffered by one cell.")]
OriginOpt = Annotated[str | None, typer.Option("--origin", help="Grid origin 'x,y' in the "
                                               "input CRS units.")]
RotationOpt = Annotated[float, typer.Option("--rotation", help="Grid rotation, degrees "
                                            "counter-clockwise.")]
ParamOpt = Annotated[list[str] | None, typer.Option("--param", "-p", help="Model parameter "
                                                    "name=value (repeatable), e.g. "
                                                    "bandwidth=250.")]


CovariateOpt = Annotated[list[str] | None, typer.Option(
    "--covariate", help="Risk-terrain layer for the learned model (boost): "
    "FILE[:how[:SCALES]][:attr=COLUMN], e.g. bars.gpkg:count:100m,400m or "
    "zoning.gpkg:attr=commercial (repeatable; any vector format and CRS). See "
    "docs/covariates.md.")]


def add_covariates(model_params: dict[str, dict[str, Any]], model_names: list[str],
                   covariates: list[str] | None) -> dict[str, dict[str, Any]]:
    """Give ``--covariate`` layers to every named model that takes covariates.

    Raises
    ------
    ParameterError
        If layers are given but no model can use them, or a layer spec is malformed.
    """
    if not covariates:
        return model_params
    from placecast.covariates import parse_covariate
    from placecast.models import MODELS

    for spec in covariates:
        parse_covariate(spec)  # refuse a malformed spec before any work
    takers = [name for name in model_names
              if "covariates" in getattr(MODELS.get(name), "_param_names", lambda: [])()]
    if not takers:
        raise ParameterError(
            f"--covariate: none of the models ({', '.join(model_names)}) uses covariate "
            "layers; the learned model does (--model boost).")
    for name in takers:
        model_params.setdefault(name, {})["covariates"] = list(covariates)
    return model_params


def parse_params(items: list[str] | None) -> dict[str, Any]:
    """Turn ``["bandwidth=250", "time_decay=none"]`` into typed keyword parameters.

    A value with a length unit (``bandwidth=600ft``) becomes metres and one with a time
    unit (``time_decay=4w``) becomes days, the units model parameters take; plain numbers
    are passed as they are (model parameters are documented in metres and days).
    """
    params: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ParameterError(f"--param {item!r} must look like name=value.")
        key, value = (s.strip() for s in item.split("=", 1))
        parsed: Any
        if value.lower() in ("none", "null"):
            parsed = None
        elif value.lower() in ("true", "false"):
            parsed = value.lower() == "true"
        else:
            try:
                parsed = int(value)
            except ValueError:
                try:
                    parsed = float(value)
                except ValueError:
                    parsed = _quantity_param(key, value)
        params[key] = parsed
    return params


def _quantity_param(key: str, value: str) -> Any:
    """``600ft`` -> metres, ``4w`` -> days; other text is returned unchanged."""
    from placecast.quantities import METRES_PER_UNIT, parse_duration, parse_length

    match = re.fullmatch(r"\s*[-+]?\d*\.?\d+(?:[eE][-+]?\d+)?\s*([A-Za-z]+)\s*", value)
    if match is None:
        return value
    if match.group(1).lower() in METRES_PER_UNIT:
        return parse_length(value, name=f"--param {key}")
    duration = parse_duration(value, name=f"--param {key}")
    if duration.unit == "M":
        raise ParameterError(f"--param {key}={value}: give days or weeks (months differ in "
                             "length).")
    return duration.amount


def unit_spec_from_options(cell: str, units: str, units_file: Path | None,
                           units_id: str | None, region: Path | None, origin: str | None,
                           rotation: float) -> Any:
    """Build a ``UnitSpec`` from the shared unit options."""
    from placecast.pipeline import UnitSpec
    from placecast.quantities import parse_length

    grid_origin = None
    if origin:
        try:
            ox, oy = (float(v) for v in origin.split(","))
        except ValueError:
            raise ParameterError(f"--origin {origin!r} must be 'x,y' numbers.") from None
        grid_origin = (ox, oy)
    return UnitSpec(kind=units, cell_size=parse_length(cell, name="--cell"), region=region,
                    polygons=units_file, id_column=units_id, origin=grid_origin,
                    rotation=rotation)


def describe_units(units: Any) -> str | None:
    """A line saying a choice the units made for the user (H3 resolution, polygon ids).

    ``None`` when there is nothing to say (square grids are as the user asked).
    """
    description = units.description
    if "h3_resolution" in description:
        area = float(description["mean_area_m2"])
        side = area ** 0.5
        return (f"hex units: H3 resolution {description['h3_resolution']} (mean hexagon "
                f"{area / 1e6:.4g} km², about a {side:,.0f} m square; the resolution whose "
                f"hexagon area is nearest --cell squared), {len(units):,} hexagons")
    if description.get("kind") == "polygons" and description.get("id_column") is None:
        return (f"polygon units: no --units-id given, so the unit ids are the row numbers "
                f"0..{len(units) - 1} of {description.get('source')}; name an id column "
                "with --units-id to keep your own ids")
    return None


def build_units_reported(events: Any, spec: Any) -> Any:
    """``placecast.pipeline.build_units``, then say any choice it made on stderr."""
    from placecast.cli._progress import is_quiet
    from placecast.pipeline import build_units

    with err_console.status("building area units..."):
        units = build_units(events, spec)
    note = describe_units(units)
    if note is not None and not is_quiet():
        err_console.print(f"[dim]{note}[/dim]", highlight=False, soft_wrap=True)
    return units


#: The area-unit options of every command that builds units: name -> (type, default).
UNIT_OPTIONS: dict[str, tuple[Any, Any]] = {
    "cell": (CellOpt, "150m"),
    "units": (UnitsOpt, "grid"),
    "units_file": (UnitsFileOpt, None),
    "units_id": (UnitsIdOpt, None),
    "region": (RegionOpt, None),
    "origin": (OriginOpt, None),
    "rotation": (RotationOpt, 0.0),
}

#: Gives a command the area-unit options (``--cell``, ``--units``, ``--region``, ...) as one
#: ``UnitSpec``, ``unit_spec``. Put it under ``@command(...)``.
with_unit_options = shared_options(UNIT_OPTIONS, "unit_spec",
                                   lambda given: unit_spec_from_options(**given))


@command("inspect")
@with_event_options
def inspect_command(
    events_path: EventsPath,
    event_options: dict[str, Any] | None = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
    = False,
) -> None:
    """Summarise an events file: counts, span, CRS, bounding box, categories, dropped rows."""
    events = load_events(events_path, **(event_options or {}), quiet=True)
    summary = events.summary()
    report = events.report.to_dict() if events.report else {}
    if as_json:
        console.print_json(json.dumps({"summary": summary, "read": report}))
        return
    table = Table(title=f"{events_path}", show_header=False)
    table.add_row("events", f"{len(events):,}")
    if report:
        table.add_row("rows in file", f"{report['n_rows']:,}")
        table.add_row("columns used", ", ".join(f"{k}={v}" for k, v in report["columns"].items()))
        if report["detected"]:
            table.add_row("auto-detected", ", ".join(report["detected"]))
        table.add_row("columns not read", ", ".join(report["ignored_columns"]) or "-")
        dropped = report["dropped"]
        table.add_row("dropped rows", ", ".join(f"{n} {r}" for r, n in dropped.items()) or "0")
        if report["filtered"]:
            table.add_row("filtered out", ", ".join(f"{n} by {k}" for k, n in
                                                    report["filtered"].items()))
        table.add_row("CRS", report["crs_note"])
    if len(events):
        table.add_row("span", f"{summary['start']} .. {summary['end']} "
                      f"({events.span_days:.0f} days)")
        bbox = summary["bbox_m"]
        table.add_row("extent", f"{(bbox[2] - bbox[0]) / 1000:.2f} km x "
                      f"{(bbox[3] - bbox[1]) / 1000:.2f} km")
    if events.category is not None:
        cats = events.categories()
        shown = ", ".join(f"{k} ({v:,})" for k, v in list(cats.items())[:10])
        more = f" and {len(cats) - 10} more" if len(cats) > 10 else ""
        table.add_row("categories", shown + more)
    print_table(table)


@command("forecast")
@with_event_options
@with_unit_options
def forecast_command(
    events_path: EventsPath,
    at: Annotated[str, typer.Option("--at", help="Forecast start (ISO date); the model sees "
                                    "only events before it.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output file: .csv, .gpkg, "
                                         ".parquet or .geojson.")],
    model: ModelOpt = "boost",
    horizon: Annotated[str, typer.Option("--horizon", help="Window length: 7d, 2w, 1M.")]
    = "7d",
    unit_spec: Any = None,
    param: ParamOpt = None,
    covariate: CovariateOpt = None,
    explain: Annotated[bool, typer.Option(
        "--explain", help="Add, per unit, the three features that raised its forecast most "
        "(reason_1..3) and by what factor (effect_1..3); learned model (boost) only.")]
    = False,
    save: Annotated[str | None, typer.Option(
        "--save", help="Also keep the forecast in a store under this name (see --db).")]
    = None,
    db: Annotated[str, typer.Option("--db", envvar="PLACECAST_DB", help="Store for --save: "
                                    "a DuckDB file or postgresql://... URL.")]
    = "placecast.duckdb",
    by: ByOpt = None,
    by_id: ByIdOpt = None,
    dask: Annotated[str | None, typer.Option("--dask", help="With --by: run the regions on "
                                             "Dask, 'local' (a LocalCluster of --jobs workers) "
                                             "or a scheduler address tcp://host:port.")]
    = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="With --dask local: workers.")]
    = 2,
    event_options: dict[str, Any] | None = None,
) -> None:
    """Forecast expected events per area unit for the window starting at --at."""
    from placecast.io import FORECAST_FORMATS, write_forecast
    from placecast.pipeline import run_forecast

    if by is not None:
        if explain:
            raise ParameterError("--explain adds columns to one forecast; with --by drop it.")
        _forecast_by_region(events_path, output, by=by, by_id=by_id, unit_spec=unit_spec,
                            event_options=event_options, dask=dask, jobs=jobs, save=save,
                            params=dict(model=model, at=at, horizon=horizon,
                                        model_params=add_covariates(
                                            {model: parse_params(param)}, [model],
                                            covariate)[model]))
        return
    if dask is not None:
        raise ParameterError("--dask runs regions in parallel; it needs --by.")
    if output.suffix.lower() not in FORECAST_FORMATS:
        raise ParameterError(f"{output}: unknown output format {output.suffix!r}; use .csv, "
                             ".gpkg, .parquet or .geojson.")
    events = load_events(events_path, **(event_options or {}))
    area_units = build_units_reported(events, unit_spec)
    with err_console.status(f"fitting {model} and forecasting..."):
        params = add_covariates({model: parse_params(param)}, [model],
                                covariate)[model]
        forecast = run_forecast(events, model=model, at=at, horizon=horizon, units=area_units,
                                model_params=params, explain=explain)
    write_forecast(forecast, output)
    _print_forecast_summary(forecast)
    console.print(f"wrote {output}")
    if save:
        from placecast.store import open_store

        store = open_store(db)
        try:
            forecast_id = store.save_forecast(forecast, save)
        finally:
            store.close()
        console.print(f"saved forecast {save!r} as id {forecast_id} in {db}")


def _forecast_by_region(events_path: Any, output: Path, *, by: str, by_id: str | None,
                        unit_spec: Any, event_options: Any, dask: str | None, jobs: int,
                        save: str | None, params: dict[str, Any]) -> None:
    """``forecast --by``: one forecast per region, one table with a ``region`` column."""
    from placecast.cli._regions import run_regions
    from placecast.io._atomic import atomic_path

    if output.suffix.lower() not in (".csv", ".parquet"):
        raise ParameterError(f"{output}: with --by the forecasts of all regions go in one "
                             "table; use .csv or .parquet.")
    if save:
        raise ParameterError("--save keeps one forecast; with --by drop it.")
    if jobs < 1:
        raise ParameterError(f"--jobs must be at least 1, got {jobs}.")
    table = run_regions("forecast", events_path, by=by, by_id=by_id,
                        event_options=event_options, output=output, params=params,
                        unit_spec=unit_spec, dask=dask, jobs=jobs)
    with atomic_path(output) as tmp:
        if output.suffix.lower() == ".parquet":
            table.to_parquet(tmp, index=False)
        else:
            table.to_csv(tmp, index=False)
    totals = table.groupby("region", sort=True).intensity.agg(["size", "sum"])
    summary = Table(title=f"{params['model']} forecasts in {len(totals)} regions")
    for column in ("region", "units", "expected events"):
        summary.add_column(column, justify="left" if column == "region" else "right")
    for region, row in totals.head(10).iterrows():
        summary.add_row(str(region), f"{int(row['size']):,}", f"{row['sum']:.1f}")
    if len(totals) > 10:
        summary.add_row(f"... {len(totals) - 10} more", "", "")
    print_table(summary)
    console.print(f"wrote {output}")


def _print_forecast_summary(forecast: Any, n_top: int = 5) -> None:
    if "chosen" in forecast.params:
        console.print(f"auto chose [bold]{forecast.params['chosen']}[/bold] "
                      f"({forecast.params.get('validation', '')})")
    if "weights" in forecast.params:
        console.print(f"ensemble weights: {forecast.params['weights']}")
    frame = forecast.to_frame()
    table = Table(title=f"{forecast.model} forecast, {forecast.window} "
                  f"({len(forecast.units):,} units, expected {forecast.expected_total:.1f} "
                  "events)")
    for column in ("rank", "unit_id", "intensity"):
        table.add_column(column, justify="right" if column != "unit_id" else "left")
    for row in frame.head(n_top).itertuples():
        table.add_row(str(row.rank), str(row.unit_id), f"{row.intensity:.3f}")
    print_table(table)


@command("demo")
def demo_command(
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="Where to write the "
                                             "demo outputs.")] = Path("placecast-demo"),
) -> None:
    """Run the main job on the bundled Portland burglary sample and say where it wrote it.

    Forecasts the week from 2017-03-01 with the kde model on 600 ft cells over the
    police districts (the NIJ challenge set-up), scores it against that week's
    burglaries, and writes the forecast (CSV, GeoJSON), a summary and an offline report.
    """
    from placecast.datasets import PORTLAND_CRS, portland_burglary_path, portland_region_path
    from placecast.evaluate import SQUARE_MILE_M2, score_forecast
    from placecast.io import read_events, write_forecast
    from placecast.pipeline import UnitSpec, build_units, run_forecast
    from placecast.quantities import parse_length

    at, horizon, cell, budget = "2017-03-01", "7d", "600ft", "0.25sqmi"
    events = read_events(portland_burglary_path(), crs=PORTLAND_CRS)
    err_console.print(f"[dim]read {len(events):,} Portland burglaries "
                      f"({events.summary()['start'][:10]} .. {events.summary()['end'][:10]}), "
                      f"{events.report.crs_note if events.report else ''}[/dim]")
    units = build_units(events, UnitSpec(cell_size=parse_length(cell),
                                         region=portland_region_path()))
    forecast = run_forecast(events, model="kde", at=at, horizon=horizon, units=units)
    output_dir.mkdir(parents=True, exist_ok=True)
    csv_path = write_forecast(forecast, output_dir / "forecast.csv")
    geojson_path = write_forecast(forecast, output_dir / "forecast.geojson")
    _print_forecast_summary(forecast)

    window = forecast.window
    # the metrics of placecast.evaluate, as the backtest and the report compute them
    score = score_forecast(forecast, events, area=budget)
    sqmi = SQUARE_MILE_M2
    console.print(
        f"scored on the {int(score.n_events)} burglaries of {window}: the top "
        f"{score.n_flagged_units} cells ({score.flagged_area / sqmi:.3f} sq mi of "
        f"{score.region_area / sqmi:.1f}) caught {int(score.hits)} -> hit rate "
        f"{score.hit_rate:.3f}, PAI {score.pai:.1f}"
    )
    summary = {"forecast": forecast.to_dict(), "window": window.to_dict(),
               "n_events_in_window": int(score.n_events),
               "flagged_units": score.n_flagged_units, "hits": int(score.hits),
               "hit_rate": score.hit_rate, "pai": score.pai}
    from placecast.io._atomic import atomic_path
    from placecast.report import write_report

    with atomic_path(output_dir / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2, default=str))
    report_path = write_report(output_dir / "report.html", forecast, events=events, area=budget,
                               title="placecast demo: Portland burglary, week of 2017-03-01")
    console.print(f"wrote {csv_path}, {geojson_path}, {output_dir / 'summary.json'} and "
                  f"{report_path} (open the report in any browser; it works offline)")

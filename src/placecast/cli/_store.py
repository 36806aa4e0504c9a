"""Store commands: ``placecast ingest``, ``placecast datasets`` and ``placecast export``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from placecast.cli._app import (
    EventsPath,
    command,
    console,
    load_events,
    print_table,
    with_event_options,
)
from placecast.cli._regions import ByIdOpt
from placecast.exceptions import ParameterError

__all__ = ["DbOpt"]

DbOpt = Annotated[str, typer.Option(
    "--db", envvar="PLACECAST_DB",
    help="Store: a DuckDB file (created if missing) or postgresql://user@host:port/db "
         "(PostGIS). Default from $PLACECAST_DB.")]
DatasetOpt = Annotated[str, typer.Option("--dataset", help="Dataset name in the store.")]


@command("ingest")
@with_event_options
def ingest_command(
    events_path: EventsPath,
    dataset: DatasetOpt,
    db: DbOpt = "placecast.duckdb",
    id_column: Annotated[str | None, typer.Option(
        "--id", help="Incident-number column (default: auto-detect uid, incident_id, "
        "case_number, ...), used to skip events already stored.")] = None,
    by: Annotated[str | None, typer.Option(
        "--by", help="Split the dataset by region: a region column of the events, or a "
        "polygon file of regions (with --by-id). 'backtest/forecast/scan DB#DATASET --by "
        "region' then reads one region per task.")] = None,
    by_id: ByIdOpt = None,
    event_options: dict[str, Any] | None = None,
) -> None:
    """Add events from a file to a dataset in the store, skipping ones already there.

    Events are de-duplicated on the incident number (--id) when there is one, else on
    time, place and category (k identical rows stay k events; re-importing a file adds
    nothing). The import is one transaction: if it fails nothing is kept. With --by, each
    event is stored with its region (events in no region are an error, never dropped).
    """
    from placecast.cli._regions import region_split
    from placecast.store import open_store

    options = {**(event_options or {}), "incident_id": id_column}
    split = None
    if by is not None:
        events, split = region_split(events_path, by, by_id, options)
    elif by_id is not None:
        raise ParameterError("--by-id names the id column of a --by polygon file; give --by "
                             "too.")
    else:
        events = load_events(events_path, **options)
    with open_store(db) as store:
        with console.status(f"importing {len(events):,} events..."):
            # the reader's source: a file path, or DB#DATASET without any password
            source = events.report.source if events.report is not None else str(events_path)
            report = store.add_events(dataset, events, source=source, by=split)
        total = next(d.n_events for d in store.list_datasets() if d.name == dataset)
        n_regions = len(store.list_regions(dataset)) if split is not None else 0
    console.print(f"dataset [bold]{dataset}[/bold] in {db}: {report.n_new:,} new events, "
                  f"{report.n_duplicates:,} already stored; {total:,} in all"
                  + (f" in {n_regions:,} regions." if n_regions else "."))


@command("datasets")
def datasets_command(
    db: DbOpt = "placecast.duckdb",
    delete: Annotated[str | None, typer.Option(
        "--delete", help="Delete this dataset and its import log.")] = None,
    forecasts: Annotated[bool, typer.Option(
        "--forecasts", help="List saved forecasts instead.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the datasets in a store (or its saved forecasts), or delete one."""
    import json

    from placecast.store import open_store

    with open_store(db, create=False) as store:
        if delete is not None:
            n = store.delete_dataset(delete)
            console.print(f"deleted dataset [bold]{delete}[/bold] ({n:,} events) from {db}.")
            return
        if as_json:
            items = store.list_forecasts() if forecasts else store.list_datasets()
            typer.echo(json.dumps([item.to_dict() for item in items], indent=2))
            return
        if forecasts:
            table = Table("id", "name", "model", "window", "units", "expected", "created")
            for f in store.list_forecasts():
                table.add_row(str(f.id), f.name, f.model,
                              f"{f.window_start[:10]} .. {f.window_end[:10]}",
                              f"{f.n_units:,}", f"{f.expected_total:.1f}", f.created[:19])
            print_table(table)
            return
        infos = store.list_datasets()
    if not infos:
        console.print(f"{db} holds no datasets yet; add one with 'placecast ingest EVENTS "
                      "--dataset NAME'.")
        return
    table = Table("dataset", "events", "imports", "span", "CRS", "fields")
    for column in table.columns:
        column.overflow = "fold"
    for d in infos:
        table.add_row(d.name, f"{d.n_events:,}", str(d.n_imports),
                      f"{(d.start or '')[:10]} .. {(d.end or '')[:10]}", d.crs,
                      ", ".join(d.fields) or "-")
    print_table(table)


@command("export")
def export_command(
    output: Annotated[Path, typer.Option("--output", "-o", help="Output: .gpkg, .shp, .zip "
                                         "(zipped shapefile) or .parquet (GeoParquet).")],
    db: DbOpt = "placecast.duckdb",
    forecast: Annotated[str | None, typer.Option(
        "--forecast", help="Saved forecast id (or 'latest') to export as cells.")] = None,
    dataset: Annotated[str | None, typer.Option(
        "--dataset", help="Dataset to export as points.")] = None,
    format: Annotated[str | None, typer.Option(
        "--format", help="gpkg, shp, geoparquet or nij (NIJ challenge submission). "
        "Default from the suffix.")] = None,
    area: Annotated[str | None, typer.Option(
        "--area", help="Flag the top cells within this area as hotspot = 1 (0.25sqmi, 1%); "
        "required for --format nij.")] = None,
    crs: Annotated[str | None, typer.Option(
        "--crs", help="Output CRS (default: the CRS the events came in).")] = None,
) -> None:
    """Export a saved forecast or a dataset for QGIS/ArcGIS, GeoParquet or the NIJ format."""
    from placecast.io import export_events, export_forecast
    from placecast.store import open_store

    if (forecast is None) == (dataset is None):
        raise ParameterError("give exactly one of `forecast` ID and `dataset` NAME.",
                             param=("forecast", "dataset"))
    with open_store(db, create=False) as store:
        if dataset is not None:
            events = store.load_events(dataset)
            export_events(events, output, format=format, crs=crs)
            console.print(f"wrote {len(events):,} events of {dataset!r} to {output}")
            return
        assert forecast is not None
        if forecast == "latest":
            saved = store.list_forecasts()
            if not saved:
                raise ParameterError(f"{db} holds no saved forecasts.", param="forecast")
            forecast_id = saved[0].id
        else:
            try:
                forecast_id = int(forecast)
            except ValueError:
                raise ParameterError(f"`forecast` {forecast!r} is not a forecast id (a "
                                     "number, or 'latest').", param="forecast") from None
        result = store.load_forecast(forecast_id)
    export_forecast(result, output, format=format, hotspot_area=area, crs=crs)
    console.print(f"wrote forecast {forecast_id} ({len(result.units):,} units) to {output}")

"""``--by`` for backtest, forecast and scan (one task per region), and ``placecast partition``."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer

from placecast.cli._app import EventsPath, command, console, err_console, load_events
from placecast.cli._progress import progress_bar
from placecast.exceptions import DataError, ParameterError

__all__ = ["ByIdOpt", "ByOpt", "run_regions"]

ByOpt = Annotated[str | None, typer.Option(
    "--by", help="Run each region on its own: a region column of the events, a polygon "
    "file of regions (with --by-id), the partition column of a folder written by "
    "'placecast partition', or 'region' for a DB#DATASET imported with 'placecast ingest "
    "--by'. Results get a 'region' column.")]
ByIdOpt = Annotated[str | None, typer.Option("--by-id", help="Id column of the --by polygon "
                                             "file.")]

_POLYGON_SUFFIXES = {".gpkg", ".shp", ".geojson", ".json", ".fgb", ".zip", ".parquet"}


def _is_polygon_file(by: str) -> bool:
    path = Path(by)
    return path.suffix.lower() in _POLYGON_SUFFIXES or path.is_file()


def _given_event_options(event_options: dict[str, Any]) -> list[str]:
    return [k for k, v in event_options.items() if v not in (None, False) and k != "store"]


def region_split(events_path: Path | None, by: str, by_id: str | None,
                 event_options: dict[str, Any]) -> tuple[Any, Any]:
    """Read the events and say which region each one is in: ``(events, RegionSplit)``."""
    from placecast.io import read_table_header
    from placecast.regions import regions_from_labels, regions_from_polygons
    from placecast.store import split_store_reference

    if _is_polygon_file(by):
        if by_id is None:
            raise ParameterError(f"`by` {by}: a polygon file needs `by_id` COLUMN, the column "
                                 "naming each region.", param=("by_id", "by"))
        events = load_events(events_path, **event_options)
        return events, regions_from_polygons(events, by, id_column=by_id)
    if by_id is not None:
        raise ParameterError("`by_id` names the id column of a `by` polygon file; with a "
                             f"region column (`by` {by}) drop it.", param=("by_id", "by"))
    if events_path is None or "store" in event_options or \
            split_store_reference(events_path) is not None:
        raise ParameterError(f"`by` {by}: a region column is read from an events file; for a "
                             "stored dataset give a polygon file of regions with `by_id`.",
                             param=("by", "by_id"))
    header = read_table_header(Path(events_path), sep=event_options.get("sep"),
                               encoding=event_options.get("encoding"))
    if by not in header:
        raise DataError(f"{events_path}: no column {by!r} to split the events by region; its "
                        f"columns are {', '.join(header)}. Give `by` a column name, or a "
                        "polygon file with `by_id`.", param=("by", "by_id"))
    events = load_events(events_path, **event_options)
    # the region column is read as the incident id of a second, otherwise identical read,
    # so it is aligned with the events after every row the reader drops or filters
    labelled = load_events(events_path, **{**event_options, "incident_id": by}, quiet=True)
    if len(labelled) != len(events) or not (labelled.time == events.time).all():
        raise DataError(f"{events_path}: could not align column {by!r} with the events; "
                        "write the events with 'placecast partition' first.")
    return events, regions_from_labels(labelled.incident_id,
                                       source=f"column {by!r} of {events_path}")


def _stored_dataset(events_path: Path | None, by: str, by_id: str | None,
                    event_options: dict[str, Any]) -> str | None:
    """``DB#DATASET`` when the events are a stored dataset run by its stored regions."""
    from placecast.store import split_store_reference

    parts = event_options.get("store") or (split_store_reference(events_path)
                                           if events_path is not None else None)
    if parts is None or _is_polygon_file(by):
        return None  # polygons: the dataset is read whole and split here
    if by != "region":
        raise ParameterError(f"--by {by}: a stored dataset keeps its regions as 'region' "
                             "(split at import with 'placecast ingest --by'); give --by "
                             "region, or a polygon file of regions with --by-id.")
    given = _given_event_options(event_options)
    if by_id is not None or given:
        dropped = given + (["by_id"] if by_id else [])
        raise ParameterError(f"`by` region reads each region of {parts[1]!r} as stored; "
                             f"drop {', '.join(f'`{name}`' for name in dropped)}.",
                             param=["by", *dropped])
    return f"{parts[0]}#{parts[1]}"


def run_regions(job: str, events_path: Path | None, *, by: str, by_id: str | None,
                event_options: dict[str, Any] | None, output: Path, params: dict[str, Any],
                unit_spec: Any, dask: str | None, jobs: int) -> Any:
    """Run ``job`` per region (serially, or on Dask) and return the joined table.

    ``events_path`` may be a partitioned folder (each task reads only its region), a
    stored dataset split by region with ``--by region`` (each task opens the store
    read-only and reads only its region), or an events file split by a region column or
    polygons. With Dask, a split file is first
    written as a partitioned folder beside ``output`` (removed afterwards), so each task
    reads its own region from disk.
    """
    from placecast.regions import (
        _check_spec,
        is_partitioned,
        partition_info,
        run_by_region,
        split_events,
        store_regions,
        write_partitioned,
    )

    if unit_spec is not None:
        _check_spec(unit_spec)  # before any event is read
    event_options = dict(event_options or {})
    geometries = None
    temporary: Path | None = None
    reference = _stored_dataset(events_path, by, by_id, event_options)
    if reference is not None:  # each task reads its region from the store
        source: Any = reference
        n_regions = len(store_regions(reference))
    elif events_path is not None and is_partitioned(events_path):
        info = partition_info(events_path)
        if by != info.column:
            raise ParameterError(f"{events_path} is partitioned by {info.column!r}; give `by` "
                                 f"{info.column}.", param="by")
        given = _given_event_options(event_options)
        if by_id is not None or given:
            dropped = given + (["by_id"] if by_id else [])
            raise ParameterError(f"{events_path} is already partitioned; drop "
                                 f"{', '.join(f'`{name}`' for name in dropped)}.",
                                 param=dropped)
        source = events_path
        n_regions = len(info.counts)
    else:
        with err_console.status("reading events and assigning regions..."):
            events, split = region_split(events_path, by, by_id, event_options)
        geometries = split.geometries
        n_regions = len(split.names)
        if dask is None:
            source = split_events(events, split)
        else:
            temporary = output.parent / f".{output.name}.{uuid.uuid4().hex[:8]}.regions"
            source = write_partitioned(events, split, temporary).folder
            del events
    err_console.print(f"[dim]{n_regions} regions, {job} each "
                      f"{'on Dask (' + dask + ')' if dask else 'in this process'}[/dim]",
                      highlight=False)
    try:
        with progress_bar("regions") as bar:
            table = run_by_region(job, source, params=params, unit_spec=unit_spec,
                                  geometries=geometries, dask=dask, jobs=jobs, progress=bar)
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)
    return table


@command("partition")
def partition_command(
    events_path: EventsPath,
    by: Annotated[str, typer.Option("--by", help="Region column of the events, or a polygon "
                                    "file of regions (with --by-id).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder to write: GeoParquet "
                                         "files in <column>=<region>/ subfolders.")],
    by_id: ByIdOpt = None,
    column: Annotated[str, typer.Option("--column", help="Name of the partition column.")]
    = "region",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing "
                                            "partitioned folder.")] = False,
    append: Annotated[bool, typer.Option("--append", help="Add these events to an existing "
                                         "partitioned folder (ingest in chunks).")] = False,
    time: Annotated[str | None, typer.Option("--time", help="Time column.")] = None,
    x: Annotated[str | None, typer.Option("--x", help="X column.")] = None,
    y: Annotated[str | None, typer.Option("--y", help="Y column.")] = None,
    lon: Annotated[str | None, typer.Option("--lon", help="Longitude column.")] = None,
    lat: Annotated[str | None, typer.Option("--lat", help="Latitude column.")] = None,
    category: Annotated[str | None, typer.Option("--category", help="Category column.")]
    = None,
    crs: Annotated[str | None, typer.Option("--crs", help="CRS of x/y.")] = None,
    time_format: Annotated[str | None, typer.Option("--time-format", help="strftime format "
                                                    "of the times.")] = None,
    timezone: Annotated[str | None, typer.Option("--timezone", help="IANA time zone.")]
    = None,
) -> None:
    """Write events as GeoParquet partitioned by region, for --by runs on a cluster.

    Each region's events go to OUTPUT/COLUMN=REGION/part-*.parquet (hive layout);
    backtest, forecast and scan given the folder and --by COLUMN read only one region
    per task. Events in no region are an error (counted), never dropped.
    """
    from placecast.regions import write_partitioned

    options = {"time": time, "x": x, "y": y, "lon": lon, "lat": lat, "category": category,
               "crs": crs, "time_format": time_format, "timezone": timezone}
    events, split = region_split(events_path, by, by_id, options)
    with err_console.status(f"writing {len(events):,} events in {len(split.names)} regions..."):
        info = write_partitioned(events, split, output, column=column, overwrite=overwrite,
                                 append=append)
    console.print(f"wrote {len(events):,} events in {len(split.names)} regions to {output}/ "
                  f"(partitioned by {column!r}; {sum(info.counts.values()):,} events in "
                  f"{len(info.counts)} regions in all)")

"""Datasets of events: list, upload, categories, delete (``/datasets``)."""

import re
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, UploadFile
from fastapi import Path as PathParam

from placecast.exceptions import ParameterError
from placecast.service._deps import Admin, Analyst, Context, Viewer
from placecast.service._schemas import (
    ColumnName,
    Crs,
    DatasetName,
    TimeColumn,
    TimeFormat,
    Timezone,
)
from placecast.service._work import UPLOAD_SUFFIXES, TooLarge, read_upload

__all__ = ["router"]

router = APIRouter(tags=["datasets"])

_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_. \-]{0,99}$")


@router.get("/datasets")
def list_datasets(who: Viewer, ctx: Context) -> dict[str, Any]:
    """Every dataset with its number of events, span and CRS."""
    return {"datasets": [info.to_dict() for info in ctx.store.list_datasets()]}


@router.post("/datasets/{name}", status_code=201)
async def upload_dataset(
    who: Analyst,
    ctx: Context,
    name: Annotated[DatasetName, PathParam()],
    file: Annotated[UploadFile, File(description="CSV, GeoPackage or GeoJSON")],
    time: Annotated[TimeColumn | None, Form()] = None,
    x: Annotated[ColumnName | None, Form()] = None,
    y: Annotated[ColumnName | None, Form()] = None,
    lon: Annotated[ColumnName | None, Form()] = None,
    lat: Annotated[ColumnName | None, Form()] = None,
    category: Annotated[ColumnName | None, Form()] = None,
    weight: Annotated[ColumnName | None, Form()] = None,
    incident_id: Annotated[ColumnName | None, Form()] = None,
    mark: Annotated[ColumnName | None, Form()] = None,
    crs: Annotated[Crs | None, Form()] = None,
    time_format: Annotated[TimeFormat | None, Form()] = None,
    timezone: Annotated[Timezone | None, Form()] = None,
    skip_bad_rows: Annotated[bool, Form()] = False,
) -> dict[str, Any]:
    """Add events from a file to dataset ``name`` (created on first upload).

    Only the mapped columns are read (time, location, category, weight, incident id,
    mark): any other column, such as one about persons, is never read or stored.
    Events already in the dataset are skipped. The client's file name is only
    checked and recorded as the source label; it is never used as a path.
    """
    settings = ctx.settings
    label = file.filename or ""
    if not _FILE_NAME.match(label) or ".." in label:
        raise ParameterError("`file` name must be a plain name of letters, digits, "
                             "spaces or '_.-' (no folders), ending in .csv, .gpkg, "
                             ".geojson or .json.", param="file")
    suffix = Path(label).suffix.lower()
    if suffix not in UPLOAD_SUFFIXES:
        raise ParameterError(f"`file` type {suffix or '(none)'!r} is not accepted; upload "
                             ".csv, .gpkg, .geojson or .json.", param="file")
    folder = Path(tempfile.mkdtemp(prefix="placecast-upload-"))
    try:
        target = folder / f"upload{suffix}"
        size = 0
        with target.open("wb") as out:
            while chunk := await file.read(1 << 20):
                size += len(chunk)
                if size > settings.max_upload_bytes:
                    raise TooLarge(f"{label}: larger than this service's limit of "
                                   f"{settings.max_upload_bytes:,} bytes; split it.")
                out.write(chunk)
        columns = {"time": time, "x": x, "y": y, "lon": lon, "lat": lat,
                   "category": category, "weight": weight, "incident_id": incident_id,
                   "mark": mark}

        def ingest() -> dict[str, Any]:
            events = read_upload(target, label, columns=columns, crs=crs,
                                 time_format=time_format, timezone=timezone,
                                 skip_bad_rows=skip_bad_rows,
                                 max_rows=settings.max_rows)
            report = ctx.store.add_events(name, events, source=label)
            return report.to_dict()

        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(ingest)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@router.get("/datasets/{name}/categories")
def dataset_categories(who: Viewer, ctx: Context, name: Annotated[DatasetName, PathParam()]
                       ) -> dict[str, Any]:
    """Categories of a dataset's events with their counts."""
    ctx.store.require_dataset(name)
    events = ctx.store.load_events(name)
    return {"dataset": name, "categories": events.categories()
            if events.category is not None else {}}


@router.delete("/datasets/{name}")
def delete_dataset(who: Admin, ctx: Context, name: Annotated[DatasetName, PathParam()]
                   ) -> dict[str, Any]:
    """Delete a dataset and its import log (saved forecasts stay)."""
    ctx.store.require_dataset(name)
    return {"dataset": name, "n_deleted": ctx.store.delete_dataset(name)}

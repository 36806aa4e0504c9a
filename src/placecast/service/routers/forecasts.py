"""Forecasts: run and save, list, describe, and serve as map, GeoJSON, CSV or report.

Saved forecasts never change, so every rendered body (description, compact map, GeoJSON,
CSV) is encoded and compressed once per forecast and area budget, kept in the
``ForecastCache`` and served from memory with an ``ETag`` (``If-None-Match`` gets 304).
"""

import dataclasses
import re
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import unquote_plus

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import JSONResponse, Response

from placecast.forecast import Forecast
from placecast.service._deps import Analyst, AreaQuery, Context, ForecastId, ServiceContext, Viewer
from placecast.service._schemas import DatasetName, ForecastRequest
from placecast.service._work import (
    Encoded,
    NotFound,
    forecast_csv,
    forecast_geojson,
    forecast_map,
    run_forecast_request,
)

__all__ = ["cached_answer", "router", "tagged", "tagged_parts"]

router = APIRouter(tags=["forecasts"])

_CACHED: dict[int | str, dict[str, Any]] = {200: {"content": {"application/json": {}}},
           304: {"description": "not modified (If-None-Match)"}}


def forecast_out(ctx: ServiceContext, info: Any) -> dict[str, Any]:
    """A saved forecast's listing entry: the store's info and the service's notes."""
    out = info.to_dict()
    note = ctx.state.forecast_note(info.id)
    if note is not None:
        out.update(note)
    return out


def explained(ctx: ServiceContext, forecast_id: int) -> Forecast:
    """The saved forecast with its explanation columns (``details``) when it has them."""
    forecast = ctx.cache.forecast(forecast_id)
    if forecast.details is None:
        details = ctx.state.forecast_details(forecast_id)
        if details is not None and len(details) == len(forecast.units):
            forecast = dataclasses.replace(forecast, details=details)
    return forecast


@router.post("/forecasts", status_code=201)
def create_forecast(who: Analyst, ctx: Context, request: Annotated[ForecastRequest, Body()]
                    ) -> dict[str, Any]:
    """Fit a model on a dataset and save its forecast for the next window.

    Runs in the request (seconds for a city grid); the forecast is saved even if the
    client disconnects before the answer. With ``explain: true`` (models that can say
    why, such as ``boost``) the GeoJSON's features carry ``reason_1..3`` and
    ``effect_1..3``: the features that raised each unit's forecast most.
    """
    store = ctx.store
    forecast, extra = run_forecast_request(store, request, max_cells=ctx.settings.max_cells)
    name = request.name or f"{request.dataset}-{request.model}"
    forecast_id = store.save_forecast(forecast, name, dataset=request.dataset)
    if forecast.details is not None:
        ctx.state.save_forecast_details(forecast_id, forecast.details)
    ctx.state.save_forecast_note(
        forecast_id, dataset=request.dataset, category=request.category,
        cell_size=float(forecast.units.area.max() ** 0.5), horizon=request.horizon,
        area=request.area, created_by=who.name)
    info = next(i for i in store.list_forecasts() if i.id == forecast_id)
    return forecast_out(ctx, info)


@router.get("/forecasts")
def list_forecasts(who: Viewer, ctx: Context,
                   dataset: Annotated[DatasetName | None, Query()] = None,
                   model: Annotated[str | None, Query(pattern=r"^[a-z][a-z0-9_]{0,31}$")
                                    ] = None,
                   limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
    """Saved forecasts, newest first (optionally of one dataset or model)."""
    infos = [i for i in ctx.store.list_forecasts()
             if (dataset is None or i.dataset == dataset)
             and (model is None or i.model == model)]
    return {"forecasts": [forecast_out(ctx, i) for i in infos[:limit]]}


async def _encoded(ctx: ServiceContext, key: tuple[Any, ...], make: Callable[[], bytes]
                   ) -> Encoded:
    """A cached body straight from memory, else rendered once in a worker thread."""
    from starlette.concurrency import run_in_threadpool

    entry = ctx.cache.peek(key)
    if entry is None:
        entry = await run_in_threadpool(ctx.cache.encoded, key, make)
    return entry


def tagged_parts(entry: Encoded, media_type: str, *, accept_encoding: str | None,
                 if_none_match: str | None, headers: dict[str, str] | None = None,
                 compress: bool = True) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body for a cached body: gzip when accepted, 304 on a match.

    The one place that decides how a tagged body is answered, used by the routes
    (:func:`tagged`) and by the middleware's fast path (:func:`cached_answer`).
    """
    gzipped = compress and "gzip" in (accept_encoding or "").lower()
    etag = entry.etag_gzip if gzipped else entry.etag
    out = {"etag": etag, "cache-control": "private, no-cache", **(headers or {})}
    if compress:
        out["vary"] = "Accept-Encoding"
    if if_none_match is not None:
        tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
        if "*" in tags or etag in tags:
            return 304, out, b""
    out["content-type"] = media_type
    if gzipped:
        return 200, {**out, "content-encoding": "gzip"}, entry.gzip
    return 200, out, entry.body


def tagged(request: Request, entry: Encoded, media_type: str,
           headers: dict[str, str] | None = None, compress: bool = True) -> Response:
    """Answer with a cached body: gzip when accepted, 304 when the tag matches."""
    status, out, body = tagged_parts(
        entry, media_type, accept_encoding=request.headers.get("accept-encoding"),
        if_none_match=request.headers.get("if-none-match"), headers=headers,
        compress=compress)
    media = out.pop("content-type", None)
    if status == 304:
        return Response(status_code=304, headers=out)
    return Response(body, media_type=media, headers=out)


#: The hot read routes the middleware may answer from the cache without routing.
_FAST = re.compile(r"^/forecasts/([1-9][0-9]{0,17})(/map)?$")


def cached_answer(ctx: ServiceContext, path: str, query: bytes, header: Callable[
        [bytes], str | None]) -> tuple[int, dict[str, str], bytes, str, str] | None:
    """The answer to ``GET /forecasts/{id}`` or ``.../map`` when its body is cached.

    Forecasts never change, so once a body has been rendered (by the route, which
    validated the request) the same request can be answered from memory without
    FastAPI's routing, dependency solving and parameter validation: this is what keeps
    those two routes fast under many clients. The caller has already checked the token
    (any valid token may read forecasts). Anything unusual (another query parameter,
    a body not yet cached) returns ``None`` and the request takes the normal route.

    Returns
    -------
    tuple or None
        ``(status, headers, body, route template, forecast id)``.
    """
    match = _FAST.match(path)
    if match is None:
        return None
    forecast_id = int(match.group(1))
    if match.group(2) is None:
        if query:
            return None
        key: tuple[Any, ...] = ("described", forecast_id)
        template, compress = "/forecasts/{forecast_id}", False
    else:
        area = "1%"
        if query:
            name, _, value = query.decode("latin-1").partition("=")
            if name != "area" or "&" in value:
                return None
            area = unquote_plus(value)
        key = ("map", forecast_id, area)
        template, compress = "/forecasts/{forecast_id}/map", True
    entry = ctx.cache.peek(key)
    if entry is None:
        return None
    status, headers, body = tagged_parts(
        entry, "application/json", accept_encoding=header(b"accept-encoding"),
        if_none_match=header(b"if-none-match"), compress=compress)
    return status, headers, body, template, match.group(1)


@router.get("/forecasts/{forecast_id}", response_class=Response, responses=_CACHED)
async def get_forecast(request: Request, who: Viewer, ctx: Context, forecast_id: ForecastId
                       ) -> Response:
    """One forecast's description (model, window, units, totals).

    Read from the store once and served from memory afterwards (forecasts never
    change), with an ``ETag``; ``If-None-Match`` gets 304.
    """
    def describe() -> bytes:
        from fastapi.encoders import jsonable_encoder

        infos = [i for i in ctx.store.list_forecasts() if i.id == forecast_id]
        if not infos:
            raise NotFound(f"no forecast {forecast_id}; see GET /forecasts.")
        out = {**forecast_out(ctx, infos[0]), **ctx.cache.forecast(forecast_id).to_dict()}
        return bytes(JSONResponse(jsonable_encoder(out)).body)

    entry = await _encoded(ctx, ("described", forecast_id), describe)
    return tagged(request, entry, "application/json", compress=False)


@router.get("/forecasts/{forecast_id}/map", response_class=Response, responses=_CACHED)
async def forecast_as_map(request: Request, who: Viewer, ctx: Context,
                          forecast_id: ForecastId, area: AreaQuery = "1%") -> Response:
    """The forecast as a compact map for drawing (what the dashboard reads).

    A square grid comes as its definition (origin, cell size, rotation, n_cols,
    n_rows, CRS), the (col, row) of each unit and the cell corners in WGS 84, with one
    array per column (intensity, rank, flagged); other units come with their GeoJSON
    geometries. Rendered once per forecast and area budget, served from memory
    (gzip when accepted) with an ``ETag``; ``If-None-Match`` gets 304.
    """
    entry = await _encoded(ctx, ("map", forecast_id, area), lambda: forecast_map(
        forecast_id, ctx.cache.forecast(forecast_id), area))
    return tagged(request, entry, "application/json")


@router.get("/forecasts/{forecast_id}/geojson", response_class=Response,
            responses={200: {"content": {"application/geo+json": {}}},
                       304: {"description": "not modified (If-None-Match)"}})
async def forecast_as_geojson(request: Request, who: Viewer, ctx: Context,
                              forecast_id: ForecastId, area: AreaQuery = "1%",
                              flagged_only: bool = False) -> Response:
    """The forecast's cells as GeoJSON (WGS 84) with intensity, rank and flagged.

    For scripts and GIS; the dashboard reads the compact ``/map``. A forecast made with
    ``explain: true`` adds ``reason_1..3`` and ``effect_1..3`` to each feature. Rendered
    once per forecast and area budget and served from memory afterwards (gzip-compressed
    when the client accepts it) with an ``ETag``; ``If-None-Match`` gets 304.
    """
    entry = await _encoded(ctx, ("geojson", forecast_id, area, flagged_only),
                           lambda: forecast_geojson(forecast_id,
                                                    explained(ctx, forecast_id), area,
                                                    flagged_only))
    return tagged(request, entry, "application/geo+json")


@router.get("/forecasts/{forecast_id}/csv", response_class=Response,
            responses={200: {"content": {"text/csv": {}}}})
async def forecast_as_csv(request: Request, who: Viewer, ctx: Context,
                          forecast_id: ForecastId, area: AreaQuery = "1%") -> Response:
    """The forecast as CSV: unit_id, intensity, rank, flagged (best first)."""
    entry = await _encoded(ctx, ("csv", forecast_id, area), lambda: forecast_csv(
        ctx.cache.forecast(forecast_id), area))
    return tagged(request, entry, "text/csv", {
        "content-disposition": f'attachment; filename="forecast-{forecast_id}.csv"'})


@router.get("/forecasts/{forecast_id}/report", response_class=Response,
            responses={200: {"content": {"text/html": {}}}})
def forecast_report(who: Viewer, ctx: Context, forecast_id: ForecastId,
                    area: AreaQuery = "1%", public: bool = False) -> Response:
    """The forecast as a self-contained offline HTML report (a download).

    Adds the dataset's events (counts, scores in the window), its newest backtest and
    the clusters of its newest scan when they exist. ``public=true`` suppresses areas
    with fewer than 5 events, for sharing.
    """
    from placecast.report import build_report

    store = ctx.store
    forecast = ctx.cache.forecast(forecast_id)
    info = next(i for i in store.list_forecasts() if i.id == forecast_id)
    kwargs: dict[str, Any] = {"area": area, "public": public,
                              "title": f"placecast forecast {forecast_id}: {info.name}"}
    if info.dataset is not None and info.dataset in store.dataset_names():
        kwargs["events"] = store.load_events(info.dataset)
        for backtest in store.list_backtests():
            if backtest.meta.get("dataset") == info.dataset:
                kwargs["backtest"] = store.load_backtest(backtest.id)
                break
        for job in ctx.jobs.list("scan"):
            if job["status"] == "succeeded" and job["params"].get(
                    "dataset") == info.dataset and job["result"]:
                kwargs["clusters"] = job["result"]["clusters"]
                break
    html = build_report(forecast, **kwargs)
    return Response(html, media_type="text/html", headers={
        "content-disposition": f'attachment; filename="forecast-{forecast_id}.html"'})

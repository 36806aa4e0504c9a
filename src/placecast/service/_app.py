"""The FastAPI application: ``create_app(store=..., settings=...)``.

``create_app`` only wires: it builds the shared context (``_deps.ServiceContext``), adds
the middleware (``_middleware.Limits``, CORS), the exception handlers and one router per
resource (``service/routers/``).

Routes (all JSON unless said; every one but ``/health``, ``/openapi.json`` and the
dashboard's static shell needs ``Authorization: Bearer <token>``):

=========================================  =======  ======================================
route                                      role     what
=========================================  =======  ======================================
GET /health                                -        liveness and versions
GET /models                                viewer   model names
GET /datasets                              viewer   datasets with counts and spans
POST /datasets/{name}                      analyst  upload CSV/GeoPackage/GeoJSON events
GET /datasets/{name}/categories            viewer   categories and counts
DELETE /datasets/{name}                    admin    delete a dataset
POST /forecasts                            analyst  run and save a forecast
GET /forecasts                             viewer   saved forecasts, newest first
GET /forecasts/{id}                        viewer   one forecast's description
GET /forecasts/{id}/map                    viewer   compact map: grid definition + arrays
GET /forecasts/{id}/geojson                viewer   cells with intensity, rank, flagged
GET /forecasts/{id}/csv                    viewer   the same as CSV
GET /forecasts/{id}/report                 viewer   offline HTML report (download)
POST /backtests                            analyst  start a backtest job (202)
GET /backtests, /backtests/{id}            viewer   saved backtests and their rows
POST /audits                               analyst  start an exposure-audit job (202)
GET /audits, /audits/{job_id}              viewer   audit jobs and their results
POST /scans                                analyst  start a space-time scan job (202)
GET /scans, /scans/{job_id}                viewer   scan jobs, clusters as GeoJSON
POST /hotspots                             analyst  start an emerging-hot-spot job (202)
GET /hotspots, /hotspots/{job_id}          viewer   hot spot jobs, patterns per unit
GET /jobs, /jobs/{job_id}                  viewer   job status and progress
GET /map/layers                            viewer   basemap description, reference layers
GET /map/basemap.pmtiles                   viewer   the basemap archive (HTTP Range requests)
GET /alerts                                viewer   alerts (filter by acknowledged)
POST /alerts/{id}/acknowledge              analyst  acknowledge an alert
GET /audit-log                             admin    who read or changed what, when
=========================================  =======  ======================================
"""


import os
import re
from dataclasses import dataclass
from typing import Any

from placecast.exceptions import PlacecastError, render_message
from placecast.service._audit_log import AuditLog
from placecast.service._auth import TokenStore
from placecast.service._jobs import DaskBackend, JobManager
from placecast.service._state import StateDB, state_path_for
from placecast.service._work import (
    ForecastCache,
    LockedStore,
    NotFound,
    TooLarge,
    api_message,
    field_for,
)

__all__ = ["ServiceSettings", "create_app"]


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    """How the service runs and what it accepts.

    Attributes
    ----------
    state_path : path, optional
        SQLite file for tokens, jobs and the audit log (default beside the store:
        ``X.duckdb`` -> ``X.service.sqlite``).
    max_upload_bytes : int
        Largest upload body accepted (413 above).
    max_json_bytes : int
        Largest body of any other request (413 above; 16 KiB by default, far more than
        any valid JSON request needs).
    max_rows : int
        Most events one upload may hold (413 above).
    max_cells : int
        Most grid cells a forecast, backtest or audit may use (413 above).
    cors_origins : tuple of str
        Origins allowed to call the API from a browser; empty (default) = CORS closed.
    job_workers : int
        Threads running background jobs.
    dask : str, optional
        ``"local"`` or a scheduler address: backtests then run their origins on Dask.
    basemap : path, optional
        PMTiles archive the dashboard draws under the forecast (checked at start).
    reference_layers : tuple of paths
        Vector files (districts, streets, ...) the dashboard draws as outlines.
    """

    state_path: str | os.PathLike[str] | None = None
    max_upload_bytes: int = 50 * 1024 * 1024
    max_json_bytes: int = 16 * 1024
    max_rows: int = 1_000_000
    max_cells: int = 250_000
    cors_origins: tuple[str, ...] = ()
    job_workers: int = 1
    dask: str | None = None
    basemap: str | os.PathLike[str] | None = None
    reference_layers: tuple[str | os.PathLike[str], ...] = ()


def create_app(store: Any = "placecast.duckdb", settings: ServiceSettings | None = None
               ) -> Any:
    """Build the placecast web service.

    Parameters
    ----------
    store : Store, str or path
        An open ``placecast.store.Store`` (the caller closes it), or a DuckDB path /
        PostgreSQL URL to open (closed when the app shuts down).
    settings : ServiceSettings, optional
        Limits, CORS, job workers, Dask.

    Returns
    -------
    fastapi.FastAPI
        With ``app.state.context`` (the ``ServiceContext`` every router uses),
        ``app.state.tokens`` (``TokenStore``), ``app.state.jobs`` (``JobManager``),
        ``app.state.audit`` (``AuditLog``), ``app.state.store`` (``LockedStore``) and
        ``app.state.close()``, which waits for running jobs, writes the pending audit-log
        entries and closes what the app opened (call it when done; ``placecast serve``
        does).
    """
    try:
        from fastapi import FastAPI, Request
        from fastapi.exceptions import RequestValidationError
        from fastapi.responses import JSONResponse
    except ImportError:  # pragma: no cover - depends on the install
        raise ImportError("the placecast service needs its extra: "
                          "pip install 'placecast[service]'") from None

    import placecast
    from placecast.service._dashboard import load_map_layers
    from placecast.service._deps import ServiceContext
    from placecast.service._middleware import Limits
    from placecast.service.routers import ROUTERS, dashboard, iter_routes
    from placecast.store import Store, open_store

    settings = settings or ServiceSettings()
    map_layers = load_map_layers(settings.basemap, settings.reference_layers)
    owns_store = not isinstance(store, Store)
    raw_store = open_store(store) if owns_store else store
    locked = LockedStore(raw_store)
    state = StateDB(settings.state_path or state_path_for(raw_store.url))
    tokens = TokenStore(state)
    audit = AuditLog(state)
    jobs = JobManager(state, workers=settings.job_workers)
    dask = DaskBackend(settings.dask)
    context = ServiceContext(store=locked, state=state, tokens=tokens, audit=audit,
                             jobs=jobs, dask=dask, cache=ForecastCache(locked),
                             map_layers=map_layers, settings=settings)

    app = FastAPI(
        title="placecast",
        version=getattr(placecast, "__version__", "0"),
        description="Place-based forecasts, backtests, audits and alerts for a team. "
                    "Every route except /health, /openapi.json and the dashboard needs "
                    "`Authorization: Bearer <token>` (see `placecast token create`).",
        docs_url=None, redoc_url=None,
    )
    app.state.context = context
    app.state.store = locked
    app.state.tokens = tokens
    app.state.audit = audit
    app.state.jobs = jobs
    app.state.settings = settings
    app.state.state_db = state

    def close() -> None:
        jobs.shutdown(wait=True)
        dask.close()
        audit.close()
        state.close()
        if owns_store:
            raw_store.close()

    app.state.close = close

    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                           allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Authorization", "Content-Type"])
    route_patterns: list[re.Pattern[str]] = []
    app.add_middleware(Limits, max_bytes=settings.max_upload_bytes,
                       max_json_bytes=settings.max_json_bytes, audit=audit, tokens=tokens,
                       routes=route_patterns, context=context)

    # ------------------------------------------------------------------ errors
    def _clean(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{"loc": list(e.get("loc", ())),
                 "msg": str(e.get("msg", "")).removeprefix("Value error, "),
                 "type": e.get("type", "")} for e in errors]

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _clean(list(exc.errors()))
        text = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors)
        return JSONResponse(status_code=422, content={"detail": text, "errors": errors})

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse(status_code=404, content={"detail": str(exc)})

    @app.exception_handler(TooLarge)
    async def _too_large(request: Request, exc: TooLarge) -> JSONResponse:
        return JSONResponse(status_code=413, content={"detail": str(exc)})

    @app.exception_handler(PlacecastError)
    async def _bad_input(request: Request, exc: PlacecastError) -> JSONResponse:
        content: dict[str, Any] = {"detail": api_message(render_message(exc, field_for))}
        if exc.params:
            content["field"] = field_for(exc.params[0])
        return JSONResponse(status_code=422, content=content)

    # ------------------------------------------------------------------ routes
    # The routers' routes join the app's own list (no prefix, no router-wide
    # dependencies), so ``app.routes`` stays one flat list of routes whatever the
    # FastAPI version (newer ones keep an included router as one lazy entry).
    for router in ROUTERS:
        app.router.routes.extend(router.routes)
    dashboard.mount_static(app)
    route_patterns.extend(route.path_regex for route in iter_routes(app.routes)
                          if hasattr(route, "path_regex"))
    return app

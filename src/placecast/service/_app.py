"""The FastAPI application: ``create_app(store=..., settings=...)``.

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


import json
import os
import re
import shutil
import tempfile
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from placecast.exceptions import ParameterError, PlacecastError, render_message
from placecast.service._audit_log import AuditLog
from placecast.service._auth import ROLES, Principal, TokenRefused, TokenStore, role_at_least
from placecast.service._jobs import DaskBackend, JobManager
from placecast.service._schemas import (
    AREA,
    AlertId,
    AuditRequest,
    BacktestRequest,
    ColumnName,
    Crs,
    DatasetName,
    ForecastRequest,
    HotSpotRequest,
    JobId,
    ScanRequest,
    TimeColumn,
    TimeFormat,
    Timezone,
)
from placecast.service._state import StateDB, state_path_for
from placecast.service._work import (
    UPLOAD_SUFFIXES,
    Encoded,
    ForecastCache,
    LockedStore,
    NotFound,
    TooLarge,
    api_message,
    audit_job,
    backtest_job,
    backtest_payload,
    field_for,
    forecast_csv,
    forecast_geojson,
    forecast_map,
    hotspot_job,
    read_upload,
    run_forecast_request,
    scan_job,
)

__all__ = ["ServiceSettings", "create_app"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_. \-]{0,99}$")
_UPLOAD_PATH = re.compile(r"^/datasets/[^/]+$")
#: Where the dashboard fetches basemap byte ranges (many per view: not audit-logged).
BASEMAP_PATH = "/map/basemap.pmtiles"

DASHBOARD_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; "
                 "img-src 'self' data: blob:; connect-src 'self'; font-src 'self'; "
                 "object-src 'none'; base-uri 'none'; form-action 'self'; "
                 "frame-ancestors 'none'")
API_CSP = "default-src 'none'; frame-ancestors 'none'"


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


def _is_public(path: str) -> bool:
    """Paths that need no token: the liveness probe, the schema and the dashboard shell."""
    return path in ("/", "/health", "/openapi.json") or path.startswith("/static/")


class _Limits:
    """ASGI middleware: security headers, token-first, body size limits and the audit log.

    Before any byte of a request body is read and before any routing, a request to a
    route that needs a token (all but ``/``, ``/static/*``, ``/health``,
    ``/openapi.json`` and CORS preflights) must present a valid one (else 401, cheaply;
    an unknown path is left to the app's 404). A body is refused (413) as soon as it is
    declared or seen to be larger than its limit: ``max_upload_bytes`` for uploads,
    ``max_json_bytes`` for everything else. An unexpected error becomes a JSON 500 with
    the same headers as every response (the details go to the log).
    """

    def __init__(self, app: Any, *, max_bytes: int, max_json_bytes: int, audit: AuditLog,
                 tokens: TokenStore, routes: list[re.Pattern[str]]) -> None:
        self.app = app
        self.routes = routes  # the app's route patterns (filled once routes exist)
        self.max_bytes = max_bytes
        self.max_json_bytes = max_json_bytes
        self.audit = audit
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        is_shell = path == "/" or path.startswith("/static/")
        # The static shell and the liveness probe read nothing: they are not logged.
        logged = not is_shell and path not in ("/health", BASEMAP_PATH)
        csp = DASHBOARD_CSP if is_shell else API_CSP
        status_box = [0]
        started = [False]
        exceeded = [False]

        async def send_with_headers(message: Message) -> None:
            if exceeded[0]:
                # The body went over the limit: whatever the app answers, reply 413 once.
                if message["type"] == "http.response.start" and not started[0]:
                    started[0] = True
                    await _Limits._reply(send_secured, 413, self._too_large(limit, upload))
                return
            await send_secured(message)

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                started[0] = True
                status_box[0] = message["status"]
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", csp.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"cross-origin-opener-policy", b"same-origin"),
                ]
                # A route that sets its own caching (the tagged forecast bodies: private,
                # revalidated with If-None-Match) keeps it; every other answer is no-store.
                if not any(bytes(key).lower() == b"cache-control" for key, _ in headers):
                    headers.append((b"cache-control",
                                    b"no-store" if not is_shell else b"no-cache"))
                message["headers"] = headers
            await send(message)

        method = scope["method"]
        upload = method == "POST" and bool(_UPLOAD_PATH.match(path))
        limit = self.max_bytes if upload else self.max_json_bytes
        try:
            if (method != "OPTIONS" and not _is_public(path)
                    and any(pattern.match(path) for pattern in self.routes)):
                refused = await self._refuse_token(scope)
                if refused is not None:
                    await self._reply(send_secured, 401, {"detail": refused},
                                      [(b"www-authenticate", b"Bearer")])
                    return
            declared = _header(scope, b"content-length")
            if declared is not None and (not declared.isdigit() or int(declared) > limit):
                status = 413 if declared.isdigit() else 400
                await self._reply(send_secured, status, self._too_large(limit, upload)
                                  if status == 413 else {"detail": "bad Content-Length."})
                return
            seen = [0]
            inner_receive = receive

            async def counting_receive() -> Message:
                message = await inner_receive()
                if message["type"] == "http.request":
                    seen[0] += len(message.get("body", b""))
                    if seen[0] > limit:
                        exceeded[0] = True
                        raise _BodyTooLarge
                return message

            await self.app(scope, counting_receive, send_with_headers)
        except _BodyTooLarge:
            if not started[0]:
                started[0] = True
                await self._reply(send_secured, 413, self._too_large(limit, upload))
        except Exception:
            import logging

            logging.getLogger("placecast.service").exception(
                "internal error in %s %s", method, path)
            if started[0]:
                raise
            await self._reply(send_secured, 500, {
                "detail": "internal error: the request could not be completed; the "
                          "service log has the details. Please report it."})
        finally:
            if logged:
                self._log(scope, status_box[0] or 500)

    async def _refuse_token(self, scope: Scope) -> str | None:
        """Why the request's token is refused, or ``None`` when it is valid."""
        from starlette.concurrency import run_in_threadpool

        header = (_header(scope, b"authorization") or "").strip()
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            token = ""
        try:
            # A current token is checked here (one SQLite read and an HMAC); only an
            # older scrypt-hashed one goes to a worker thread.
            who = self.tokens.authenticate_quick(token.strip())
            if who is None:
                who = await run_in_threadpool(self.tokens.authenticate, token.strip())
        except TokenRefused as exc:
            return str(exc)
        scope.setdefault("state", {})["principal"] = who
        return None

    def _too_large(self, limit: int, upload: bool) -> dict[str, str]:
        if upload:
            return {"detail": f"the upload is larger than this service's limit of "
                              f"{limit:,} bytes; split the file."}
        return {"detail": f"the request body is larger than this service's limit of "
                          f"{limit:,} bytes for JSON requests; send only the documented "
                          "fields (lists of at most 20 categories)."}

    @staticmethod
    async def _reply(send: Send, status: int, body: dict[str, Any],
                     headers: list[tuple[bytes, bytes]] | None = None) -> None:
        data = json.dumps(body).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(data)).encode()),
                                *(headers or [])]})
        await send({"type": "http.response.body", "body": data})

    def _log(self, scope: Scope, status: int) -> None:
        state = scope.get("state") or {}
        principal = state.get("principal") if isinstance(state, dict) else None
        route = scope.get("route")
        template = getattr(route, "path", None) or scope.get("path", "")
        client = scope.get("client")
        try:
            self.audit.record(principal=principal, method=scope["method"],
                              path=scope.get("path", ""),
                              action=f"{scope['method']} {template}",
                              target=dict(scope.get("path_params") or {}) or None,
                              status=status, client=client[0] if client else None)
        except Exception:  # the log must never break a response already sent
            import logging

            logging.getLogger("placecast.service").exception("audit log write failed")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


class _BodyTooLarge(Exception):
    pass


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
        With ``app.state.tokens`` (``TokenStore``), ``app.state.jobs`` (``JobManager``),
        ``app.state.audit`` (``AuditLog``), ``app.state.store`` (``LockedStore``) and
        ``app.state.close()``, which waits for running jobs and closes what the app
        opened (call it when done; ``placecast serve`` does).
    """
    try:
        from fastapi import (
            Body,
            Depends,
            FastAPI,
            File,
            Form,
            HTTPException,
            Query,
            Request,
            UploadFile,
        )
        from fastapi import (
            Path as PathParam,
        )
        from fastapi.exceptions import RequestValidationError
        from fastapi.responses import FileResponse, JSONResponse, Response
        from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
        from fastapi.staticfiles import StaticFiles
    except ImportError:  # pragma: no cover - depends on the install
        raise ImportError("the placecast service needs its extra: "
                          "pip install 'placecast[service]'") from None

    import placecast
    from placecast.store import Store, open_store

    settings = settings or ServiceSettings()
    from placecast.service._dashboard import load_map_layers

    map_layers = load_map_layers(settings.basemap, settings.reference_layers)
    owns_store = not isinstance(store, Store)
    raw_store = open_store(store) if owns_store else store
    locked = LockedStore(raw_store)
    state = StateDB(settings.state_path or state_path_for(raw_store.url))
    tokens = TokenStore(state)
    audit = AuditLog(state)
    jobs = JobManager(state, workers=settings.job_workers)
    dask = DaskBackend(settings.dask)
    cache = ForecastCache(locked)

    app = FastAPI(
        title="placecast",
        version=getattr(placecast, "__version__", "0"),
        description="Place-based forecasts, backtests, audits and alerts for a team. "
                    "Every route except /health, /openapi.json and the dashboard needs "
                    "`Authorization: Bearer <token>` (see `placecast token create`).",
        docs_url=None, redoc_url=None,
    )
    app.state.store = locked
    app.state.tokens = tokens
    app.state.audit = audit
    app.state.jobs = jobs
    app.state.settings = settings
    app.state.state_db = state

    def close() -> None:
        jobs.shutdown(wait=True)
        dask.close()
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
    app.add_middleware(_Limits, max_bytes=settings.max_upload_bytes,
                       max_json_bytes=settings.max_json_bytes, audit=audit, tokens=tokens,
                       routes=route_patterns)

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

    # ------------------------------------------------------------------ auth
    bearer = HTTPBearer(auto_error=False, description="A placecast token: pc_<id>.<secret>")

    # Both dependencies are async: they run on the event loop instead of costing a
    # worker-thread round trip each on every request.
    async def principal(request: Request, credentials: Annotated[
            HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Principal:
        checked = request.scope.get("state", {}).get("principal")
        if isinstance(checked, Principal):  # verified by _Limits for this request
            return checked
        from starlette.concurrency import run_in_threadpool

        try:
            who = await run_in_threadpool(
                tokens.authenticate, credentials.credentials if credentials else None)
        except TokenRefused as exc:
            raise HTTPException(status_code=401, detail=str(exc),
                                headers={"WWW-Authenticate": "Bearer"}) from None
        request.state.principal = who
        return who

    def needs(role: str) -> Any:
        async def check(who: Annotated[Principal, Depends(principal)]) -> Principal:
            if not role_at_least(who.role, role):
                raise HTTPException(status_code=403, detail=f"this needs the {role!r} role; "
                                    f"your token is {who.role!r}.")
            return who

        return Depends(check)

    Viewer = Annotated[Principal, needs("viewer")]
    Analyst = Annotated[Principal, needs("analyst")]
    Admin = Annotated[Principal, needs("admin")]
    AreaQuery = Annotated[str, Query(pattern=AREA, max_length=16,
                                     description="Flagged-area budget (1%, 0.25sqmi).")]
    ForecastId = Annotated[int, PathParam(ge=1, le=2**62)]

    # ------------------------------------------------------------------ health, models
    @app.get("/health", tags=["service"])
    async def health() -> dict[str, Any]:
        """Liveness: always answers, needs no token, tells nothing about the data."""
        return {"status": "ok", "version": app.version}

    @app.get("/me", tags=["service"])
    def me(who: Viewer) -> dict[str, Any]:
        """The token's name and role."""
        return {"name": who.name, "role": who.role, "token_id": who.token_id}

    @app.get("/models", tags=["forecasts"])
    def models(who: Viewer) -> dict[str, Any]:
        """Model names usable in forecasts and backtests."""
        from placecast.models import MODELS

        return {"models": sorted(MODELS)}

    # ------------------------------------------------------------------ datasets
    @app.get("/datasets", tags=["datasets"])
    def list_datasets(who: Viewer) -> dict[str, Any]:
        """Every dataset with its number of events, span and CRS."""
        return {"datasets": [info.to_dict() for info in locked.list_datasets()]}

    @app.post("/datasets/{name}", tags=["datasets"], status_code=201)
    async def upload_dataset(
        who: Analyst,
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
        label = file.filename or ""
        if not _FILE_NAME.match(label) or ".." in label:
            raise ParameterError("file name must be a plain name of letters, digits, "
                                 "spaces or '_.-' (no folders), ending in .csv, .gpkg, "
                                 ".geojson or .json.")
        suffix = Path(label).suffix.lower()
        if suffix not in UPLOAD_SUFFIXES:
            raise ParameterError(f"file type {suffix or '(none)'!r} is not accepted; upload "
                                 ".csv, .gpkg, .geojson or .json.")
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
                report = locked.add_events(name, events, source=label)
                return report.to_dict()

            from starlette.concurrency import run_in_threadpool

            return await run_in_threadpool(ingest)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    @app.get("/datasets/{name}/categories", tags=["datasets"])
    def dataset_categories(who: Viewer, name: Annotated[DatasetName, PathParam()]
                           ) -> dict[str, Any]:
        """Categories of a dataset's events with their counts."""
        locked.require_dataset(name)
        events = locked.load_events(name)
        return {"dataset": name, "categories": events.categories()
                if events.category is not None else {}}

    @app.delete("/datasets/{name}", tags=["datasets"])
    def delete_dataset(who: Admin, name: Annotated[DatasetName, PathParam()]
                       ) -> dict[str, Any]:
        """Delete a dataset and its import log (saved forecasts stay)."""
        locked.require_dataset(name)
        return {"dataset": name, "n_deleted": locked.delete_dataset(name)}

    # ------------------------------------------------------------------ forecasts
    def _forecast_out(info: Any) -> dict[str, Any]:
        out = info.to_dict()
        rows = state.execute("SELECT category, cell_size, horizon, area, created_by FROM "
                             "forecast_notes WHERE forecast_id = ?", (info.id,))
        if rows:
            category, cell_size, horizon, area, created_by = rows[0]
            out.update(category=json.loads(category) if category else None,
                       cell_size=cell_size, horizon=horizon, area=area,
                       created_by=created_by)
        return out

    @app.post("/forecasts", tags=["forecasts"], status_code=201)
    def create_forecast(who: Analyst, request: Annotated[ForecastRequest, Body()]
                        ) -> dict[str, Any]:
        """Fit a model on a dataset and save its forecast for the next window.

        Runs in the request (seconds for a city grid); the forecast is saved even if the
        client disconnects before the answer.
        """
        forecast, extra = run_forecast_request(locked, request, max_cells=settings.max_cells)
        name = request.name or f"{request.dataset}-{request.model}"
        forecast_id = locked.save_forecast(forecast, name, dataset=request.dataset)
        state.execute(
            "INSERT OR REPLACE INTO forecast_notes (forecast_id, dataset, category, "
            "cell_size, horizon, area, created_by) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (forecast_id, request.dataset,
             json.dumps(request.category) if request.category else None,
             float(forecast.units.area.max() ** 0.5), request.horizon, request.area,
             who.name))
        info = next(i for i in locked.list_forecasts() if i.id == forecast_id)
        return _forecast_out(info)

    @app.get("/forecasts", tags=["forecasts"])
    def list_forecasts(who: Viewer,
                       dataset: Annotated[DatasetName | None, Query()] = None,
                       model: Annotated[str | None, Query(pattern=r"^[a-z][a-z0-9_]{0,31}$")
                                        ] = None,
                       limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
        """Saved forecasts, newest first (optionally of one dataset or model)."""
        infos = [i for i in locked.list_forecasts()
                 if (dataset is None or i.dataset == dataset)
                 and (model is None or i.model == model)]
        return {"forecasts": [_forecast_out(i) for i in infos[:limit]]}

    async def _encoded(key: tuple[Any, ...], make: Callable[[], bytes]) -> Encoded:
        """A cached body straight from memory, else rendered once in a worker thread."""
        from starlette.concurrency import run_in_threadpool

        entry = cache.peek(key)
        if entry is None:
            entry = await run_in_threadpool(cache.encoded, key, make)
        return entry

    def _tagged(request: Request, entry: Encoded, media_type: str,
                headers: dict[str, str] | None = None, compress: bool = True) -> Response:
        """Answer with a cached body: gzip when accepted, 304 when the tag matches."""
        gzipped = compress and "gzip" in request.headers.get("accept-encoding", "").lower()
        etag = entry.etag_gzip if gzipped else entry.etag
        out = {"etag": etag, "cache-control": "private, no-cache", **(headers or {})}
        if compress:
            out["vary"] = "Accept-Encoding"
        wanted = request.headers.get("if-none-match")
        if wanted is not None:
            tags = {t.strip().removeprefix("W/") for t in wanted.split(",")}
            if "*" in tags or etag in tags:
                return Response(status_code=304, headers=out)
        if gzipped:
            return Response(entry.gzip, media_type=media_type,
                            headers={**out, "content-encoding": "gzip"})
        return Response(entry.body, media_type=media_type, headers=out)

    @app.get("/forecasts/{forecast_id}", tags=["forecasts"], response_class=Response,
             responses={200: {"content": {"application/json": {}}},
                        304: {"description": "not modified (If-None-Match)"}})
    async def get_forecast(request: Request, who: Viewer, forecast_id: ForecastId
                           ) -> Response:
        """One forecast's description (model, window, units, totals).

        Read from the store once and served from memory afterwards (forecasts never
        change), with an ``ETag``; ``If-None-Match`` gets 304.
        """
        def describe() -> bytes:
            from fastapi.encoders import jsonable_encoder

            infos = [i for i in locked.list_forecasts() if i.id == forecast_id]
            if not infos:
                raise NotFound(f"no forecast {forecast_id}; see GET /forecasts.")
            out = {**_forecast_out(infos[0]), **cache.forecast(forecast_id).to_dict()}
            return JSONResponse(jsonable_encoder(out)).body

        entry = await _encoded(("described", forecast_id), describe)
        return _tagged(request, entry, "application/json", compress=False)

    @app.get("/forecasts/{forecast_id}/map", tags=["forecasts"], response_class=Response,
             responses={200: {"content": {"application/json": {}}},
                        304: {"description": "not modified (If-None-Match)"}})
    async def forecast_as_map(request: Request, who: Viewer, forecast_id: ForecastId,
                              area: AreaQuery = "1%") -> Response:
        """The forecast as a compact map for drawing (what the dashboard reads).

        A square grid comes as its definition (origin, cell size, rotation, n_cols,
        n_rows, CRS), the (col, row) of each unit and the cell corners in WGS 84, with one
        array per column (intensity, rank, flagged); other units come with their GeoJSON
        geometries. Rendered once per forecast and area budget, served from memory
        (gzip when accepted) with an ``ETag``; ``If-None-Match`` gets 304.
        """
        entry = await _encoded(("map", forecast_id, area), lambda: forecast_map(
            forecast_id, cache.forecast(forecast_id), area))
        return _tagged(request, entry, "application/json")

    @app.get("/forecasts/{forecast_id}/geojson", tags=["forecasts"],
             response_class=Response,
             responses={200: {"content": {"application/geo+json": {}}},
                        304: {"description": "not modified (If-None-Match)"}})
    async def forecast_as_geojson(request: Request, who: Viewer, forecast_id: ForecastId,
                                  area: AreaQuery = "1%", flagged_only: bool = False
                                  ) -> Response:
        """The forecast's cells as GeoJSON (WGS 84) with intensity, rank and flagged.

        For scripts and GIS; the dashboard reads the compact ``/map``. Rendered once per
        forecast and area budget and served from memory afterwards (gzip-compressed when
        the client accepts it) with an ``ETag``; ``If-None-Match`` gets 304.
        """
        entry = await _encoded(("geojson", forecast_id, area, flagged_only),
                               lambda: forecast_geojson(forecast_id,
                                                        cache.forecast(forecast_id), area,
                                                        flagged_only))
        return _tagged(request, entry, "application/geo+json")

    @app.get("/forecasts/{forecast_id}/csv", tags=["forecasts"], response_class=Response,
             responses={200: {"content": {"text/csv": {}}}})
    async def forecast_as_csv(request: Request, who: Viewer, forecast_id: ForecastId,
                              area: AreaQuery = "1%") -> Response:
        """The forecast as CSV: unit_id, intensity, rank, flagged (best first)."""
        entry = await _encoded(("csv", forecast_id, area), lambda: forecast_csv(
            cache.forecast(forecast_id), area))
        return _tagged(request, entry, "text/csv", {
            "content-disposition": f'attachment; filename="forecast-{forecast_id}.csv"'})

    @app.get("/forecasts/{forecast_id}/report", tags=["forecasts"], response_class=Response,
             responses={200: {"content": {"text/html": {}}}})
    def forecast_report(who: Viewer, forecast_id: ForecastId, area: AreaQuery = "1%",
                        public: bool = False) -> Response:
        """The forecast as a self-contained offline HTML report (a download).

        Adds the dataset's events (counts, scores in the window), its newest backtest and
        the clusters of its newest scan when they exist. ``public=true`` suppresses areas
        with fewer than 5 events, for sharing.
        """
        from placecast.report import build_report

        forecast = cache.forecast(forecast_id)
        info = next(i for i in locked.list_forecasts() if i.id == forecast_id)
        kwargs: dict[str, Any] = {"area": area, "public": public,
                                  "title": f"placecast forecast {forecast_id}: {info.name}"}
        if info.dataset is not None and info.dataset in locked.dataset_names():
            kwargs["events"] = locked.load_events(info.dataset)
            for backtest in locked.list_backtests():
                if backtest.meta.get("dataset") == info.dataset:
                    kwargs["backtest"] = locked.load_backtest(backtest.id)
                    break
            for job in jobs.list("scan"):
                if job["status"] == "succeeded" and job["params"].get(
                        "dataset") == info.dataset and job["result"]:
                    kwargs["clusters"] = job["result"]["clusters"]
                    break
        html = build_report(forecast, **kwargs)
        return Response(html, media_type="text/html", headers={
            "content-disposition": f'attachment; filename="forecast-{forecast_id}.html"'})

    # ------------------------------------------------------------------ backtests, audits
    def _job_or_404(job_id: str, kind: str | None = None) -> dict[str, Any]:
        job = jobs.get(job_id)
        if job is None or (kind is not None and job["kind"] != kind):
            raise NotFound(f"no {kind or 'job'} job {job_id!r}; see GET /jobs.")
        return job

    @app.post("/backtests", tags=["backtests"], status_code=202)
    def start_backtest(who: Analyst, request: Annotated[BacktestRequest, Body()]
                       ) -> dict[str, Any]:
        """Start a rolling-origin backtest as a background job; poll GET /jobs/{id}."""
        work = backtest_job(locked, request, max_cells=settings.max_cells,
                            dask=dask.address)
        job_id = jobs.submit("backtest", request.model_dump(), work, owner=who.name)
        return _job_or_404(job_id)

    @app.get("/backtests", tags=["backtests"])
    def list_backtests(who: Viewer) -> dict[str, Any]:
        """Saved backtests, newest first (without their rows)."""
        return {"backtests": [info.to_dict() for info in locked.list_backtests()]}

    @app.get("/backtests/{backtest_id}", tags=["backtests"])
    def get_backtest(who: Viewer, backtest_id: ForecastId) -> dict[str, Any]:
        """A backtest's rows (one per origin, horizon and model) and its settings."""
        if backtest_id not in {info.id for info in locked.list_backtests()}:
            raise NotFound(f"no backtest {backtest_id}; see GET /backtests.")
        return backtest_payload(backtest_id, locked.load_backtest(backtest_id))

    @app.post("/audits", tags=["audits"], status_code=202)
    def start_audit(who: Analyst, request: Annotated[AuditRequest, Body()]
                    ) -> dict[str, Any]:
        """Start an exposure audit (how one model's flags fall on cells) as a job."""
        work = audit_job(locked, request, max_cells=settings.max_cells, dask=dask.address)
        job_id = jobs.submit("audit", request.model_dump(), work, owner=who.name)
        return _job_or_404(job_id)

    @app.get("/audits", tags=["audits"])
    def list_audits(who: Viewer) -> dict[str, Any]:
        """Audit jobs, newest first."""
        return {"audits": jobs.list("audit")}

    @app.get("/audits/{job_id}", tags=["audits"])
    def get_audit(who: Viewer, job_id: Annotated[JobId, PathParam()]) -> dict[str, Any]:
        """One audit job with its result when finished."""
        return _job_or_404(job_id, "audit")

    @app.post("/scans", tags=["clusters"], status_code=202)
    def start_scan(who: Analyst, request: Annotated[ScanRequest, Body()]) -> dict[str, Any]:
        """Start a space-time permutation scan job; significant clusters become alerts."""
        work = scan_job(locked, request, max_cells=settings.max_cells)
        job_id = jobs.submit("scan", request.model_dump(), work, owner=who.name)
        return _job_or_404(job_id)

    @app.get("/scans", tags=["clusters"])
    def list_scans(who: Viewer) -> dict[str, Any]:
        """Scan jobs, newest first."""
        return {"scans": jobs.list("scan")}

    @app.get("/scans/{job_id}", tags=["clusters"])
    def get_scan(who: Viewer, job_id: Annotated[JobId, PathParam()]) -> dict[str, Any]:
        """One scan job; its result has the clusters as GeoJSON circles (WGS 84)."""
        return _job_or_404(job_id, "scan")

    @app.post("/hotspots", tags=["clusters"], status_code=202)
    def start_hotspots(who: Analyst, request: Annotated[HotSpotRequest, Body()]
                       ) -> dict[str, Any]:
        """Start an emerging hot spot job (new/consecutive/intensifying hot spots alert)."""
        work = hotspot_job(locked, request, max_cells=settings.max_cells)
        job_id = jobs.submit("hotspots", request.model_dump(), work, owner=who.name)
        return _job_or_404(job_id)

    @app.get("/hotspots", tags=["clusters"])
    def list_hotspots(who: Viewer) -> dict[str, Any]:
        """Emerging hot spot jobs, newest first."""
        return {"hotspots": jobs.list("hotspots")}

    @app.get("/hotspots/{job_id}", tags=["clusters"])
    def get_hotspots(who: Viewer, job_id: Annotated[JobId, PathParam()]) -> dict[str, Any]:
        """One emerging hot spot job; its result maps the units with a pattern."""
        return _job_or_404(job_id, "hotspots")

    @app.get("/jobs", tags=["jobs"])
    def list_jobs(who: Viewer, kind: Annotated[str | None, Query(
            pattern=r"^(backtest|audit|scan|hotspots)$")] = None) -> dict[str, Any]:
        """Background jobs, newest first."""
        return {"jobs": jobs.list(kind)}

    @app.get("/jobs/{job_id}", tags=["jobs"])
    def get_job(who: Viewer, job_id: Annotated[JobId, PathParam()]) -> dict[str, Any]:
        """A job's status, progress (0..1) and result or error."""
        return _job_or_404(job_id)

    # ------------------------------------------------------------------ alerts
    @app.get("/alerts", tags=["alerts"])
    def list_alerts(who: Viewer, acknowledged: bool | None = None,
                    kind: Annotated[str | None, Query(pattern=r"^[a-z][a-z0-9 _\-]{0,39}$")
                                    ] = None) -> dict[str, Any]:
        """Alerts, newest first."""
        return {"alerts": locked.list_alerts(kind=kind, acknowledged=acknowledged)}

    @app.post("/alerts/{alert_id}/acknowledge", tags=["alerts"])
    def acknowledge_alert(who: Analyst, alert_id: Annotated[AlertId, PathParam()]
                          ) -> dict[str, Any]:
        """Mark an alert as seen."""
        if alert_id not in {a["id"] for a in locked.list_alerts()}:
            raise NotFound(f"no alert {alert_id!r}; see GET /alerts.")
        locked.acknowledge_alert(alert_id)
        return {"id": alert_id, "acknowledged": True}

    # ------------------------------------------------------------------ audit log
    @app.get("/audit-log", tags=["service"])
    def audit_log(who: Admin, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                  before: Annotated[int | None, Query(ge=1, le=2**62)] = None) -> dict[str, Any]:
        """The newest entries of the append-only log of requests."""
        return {"entries": audit.entries(limit=limit, before=before), "roles": list(ROLES)}

    # ------------------------------------------------------------------ map context
    @app.get("/map/layers", tags=["map"])
    def get_map_layers(who: Viewer) -> dict[str, Any]:
        """The basemap (if any) and the reference layers, in WGS 84."""
        return map_layers.to_dict(BASEMAP_PATH)

    @app.get(BASEMAP_PATH, tags=["map"], response_class=Response,
             responses={206: {"description": "the requested byte range"}})
    def get_basemap(who: Viewer) -> Response:
        """The PMTiles archive; answers ``Range: bytes=a-b`` with 206."""
        if map_layers.basemap is None:
            raise NotFound("no basemap: start the service with one (PMTiles file).")
        return FileResponse(map_layers.basemap.path, media_type="application/vnd.pmtiles")

    # ------------------------------------------------------------------ dashboard shell
    from placecast.service._dashboard import leaflet_dir, static_dir

    @app.get("/", include_in_schema=False)
    def dashboard() -> FileResponse:
        return FileResponse(static_dir() / "index.html", media_type="text/html")

    app.mount("/static/leaflet", StaticFiles(directory=leaflet_dir()), name="leaflet")
    app.mount("/static", StaticFiles(directory=static_dir()), name="static")
    route_patterns.extend(route.path_regex for route in app.routes
                          if hasattr(route, "path_regex"))
    return app

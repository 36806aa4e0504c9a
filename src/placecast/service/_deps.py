"""What the routers share: the service context on ``app.state`` and the auth dependencies.

``create_app`` builds one :class:`ServiceContext` (the locked store, the state database,
tokens, audit log, jobs, Dask, the forecast cache, the map layers and the settings) and
puts it on ``app.state.context``; every router reaches it through the :func:`context`
dependency, so no route closes over ``create_app``'s locals.

Roles are FastAPI dependencies: ``Viewer``, ``Analyst`` and ``Admin`` are annotated
``Principal`` parameters that refuse a token below that role (403) and a missing or bad
token (401; normally refused earlier by the middleware, before any body is read).
"""

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from placecast.service._audit_log import AuditLog
from placecast.service._auth import Principal, TokenRefused, TokenStore, role_at_least
from placecast.service._dashboard import MapLayers
from placecast.service._jobs import DaskBackend, JobManager
from placecast.service._schemas import AREA
from placecast.service._state import StateDB
from placecast.service._work import ForecastCache, LockedStore, NotFound

__all__ = ["Admin", "Analyst", "AreaQuery", "Context", "ForecastId", "ServiceContext",
           "Viewer", "context", "job_or_404", "needs", "principal"]

#: Where the dashboard fetches basemap byte ranges (many per view: not audit-logged).
BASEMAP_PATH = "/map/basemap.pmtiles"


@dataclass(frozen=True, slots=True)
class ServiceContext:
    """Everything a route may use, built once by ``create_app``.

    Attributes
    ----------
    store : LockedStore
        The data store (every call holds its lock).
    state : StateDB
        The service's SQLite database (tokens, jobs, audit log, forecast notes).
    tokens : TokenStore
        Token creation and checks.
    audit : AuditLog
        The append-only request log.
    jobs : JobManager
        Background jobs.
    dask : DaskBackend
        Where backtests and audits run their origins (or nowhere).
    cache : ForecastCache
        Forecasts and their encoded bodies, in memory.
    map_layers : MapLayers
        Basemap and reference layers for the dashboard.
    settings : Any
        The ``ServiceSettings``.
    """

    store: LockedStore
    state: StateDB
    tokens: TokenStore
    audit: AuditLog
    jobs: JobManager
    dask: DaskBackend
    cache: ForecastCache
    map_layers: MapLayers
    settings: Any


async def context(request: Request) -> ServiceContext:
    """The app's :class:`ServiceContext` (a FastAPI dependency).

    ``async`` on purpose: FastAPI runs a plain ``def`` dependency in a worker thread,
    which would cost every request a thread-pool round trip.
    """
    found: ServiceContext = request.app.state.context
    return found


Context = Annotated[ServiceContext, Depends(context)]

_bearer = HTTPBearer(auto_error=False, description="A placecast token: pc_<id>.<secret>")


# Both auth dependencies are async: they run on the event loop instead of costing a
# worker-thread round trip each on every request.
async def principal(request: Request, credentials: Annotated[
        HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Principal:
    """The request's verified token holder (401 when the token is missing or refused)."""
    checked = request.scope.get("state", {}).get("principal")
    if isinstance(checked, Principal):  # verified by the middleware for this request
        return checked
    from starlette.concurrency import run_in_threadpool

    tokens: TokenStore = request.app.state.tokens
    try:
        who = await run_in_threadpool(
            tokens.authenticate, credentials.credentials if credentials else None)
    except TokenRefused as exc:
        raise HTTPException(status_code=401, detail=str(exc),
                            headers={"WWW-Authenticate": "Bearer"}) from None
    request.state.principal = who
    return who


def needs(role: str) -> Any:
    """A dependency that admits tokens of ``role`` or above (403 otherwise)."""
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


def job_or_404(ctx: ServiceContext, job_id: str, kind: str | None = None) -> dict[str, Any]:
    """The job ``job_id`` (of ``kind`` when given), else ``NotFound`` (404)."""
    job = ctx.jobs.get(job_id)
    if job is None or (kind is not None and job["kind"] != kind):
        raise NotFound(f"no {kind or 'job'} job {job_id!r}; see GET /jobs.")
    return job

"""Background jobs of every kind: status, progress, result (``/jobs``)."""

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi import Path as PathParam

from placecast.service._deps import Context, Viewer, job_or_404
from placecast.service._schemas import JobId

__all__ = ["router"]

router = APIRouter(tags=["jobs"])


@router.get("/jobs")
def list_jobs(who: Viewer, ctx: Context, kind: Annotated[str | None, Query(
        pattern=r"^(backtest|audit|scan|hotspots)$")] = None) -> dict[str, Any]:
    """Background jobs, newest first."""
    return {"jobs": ctx.jobs.list(kind)}


@router.get("/jobs/{job_id}")
def get_job(who: Viewer, ctx: Context, job_id: Annotated[JobId, PathParam()]
            ) -> dict[str, Any]:
    """A job's status, progress (0..1) and result or error."""
    return job_or_404(ctx, job_id)

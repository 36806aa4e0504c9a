"""Exposure audits: start one as a job, list them, read one (``/audits``)."""

from typing import Annotated, Any

from fastapi import APIRouter, Body
from fastapi import Path as PathParam

from placecast.service._deps import Analyst, Context, Viewer, job_or_404
from placecast.service._schemas import AuditRequest, JobId
from placecast.service._work import audit_job

__all__ = ["router"]

router = APIRouter(tags=["audits"])


@router.post("/audits", status_code=202)
def start_audit(who: Analyst, ctx: Context, request: Annotated[AuditRequest, Body()]
                ) -> dict[str, Any]:
    """Start an exposure audit (how one model's flags fall on cells) as a job."""
    work = audit_job(ctx.store, request, max_cells=ctx.settings.max_cells,
                     dask=ctx.dask.address)
    job_id = ctx.jobs.submit("audit", request.model_dump(), work, owner=who.name)
    return job_or_404(ctx, job_id)


@router.get("/audits")
def list_audits(who: Viewer, ctx: Context) -> dict[str, Any]:
    """Audit jobs, newest first."""
    return {"audits": ctx.jobs.list("audit")}


@router.get("/audits/{job_id}")
def get_audit(who: Viewer, ctx: Context, job_id: Annotated[JobId, PathParam()]
              ) -> dict[str, Any]:
    """One audit job with its result when finished."""
    return job_or_404(ctx, job_id, "audit")

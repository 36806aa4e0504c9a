"""Cluster jobs: space-time scans (``/scans``) and emerging hot spots (``/hotspots``).

Significant clusters and new, consecutive or intensifying hot spots become alerts
(``/alerts``).
"""

from typing import Annotated, Any

from fastapi import APIRouter, Body
from fastapi import Path as PathParam

from placecast.service._deps import Analyst, Context, Viewer, job_or_404
from placecast.service._schemas import HotSpotRequest, JobId, ScanRequest
from placecast.service._work import hotspot_job, scan_job

__all__ = ["router"]

router = APIRouter(tags=["clusters"])


@router.post("/scans", status_code=202)
def start_scan(who: Analyst, ctx: Context, request: Annotated[ScanRequest, Body()]
               ) -> dict[str, Any]:
    """Start a space-time permutation scan job; significant clusters become alerts."""
    work = scan_job(ctx.store, request, max_cells=ctx.settings.max_cells)
    job_id = ctx.jobs.submit("scan", request.model_dump(), work, owner=who.name)
    return job_or_404(ctx, job_id)


@router.get("/scans")
def list_scans(who: Viewer, ctx: Context) -> dict[str, Any]:
    """Scan jobs, newest first."""
    return {"scans": ctx.jobs.list("scan")}


@router.get("/scans/{job_id}")
def get_scan(who: Viewer, ctx: Context, job_id: Annotated[JobId, PathParam()]
             ) -> dict[str, Any]:
    """One scan job; its result has the clusters as GeoJSON circles (WGS 84)."""
    return job_or_404(ctx, job_id, "scan")


@router.post("/hotspots", status_code=202)
def start_hotspots(who: Analyst, ctx: Context, request: Annotated[HotSpotRequest, Body()]
                   ) -> dict[str, Any]:
    """Start an emerging hot spot job (new/consecutive/intensifying hot spots alert)."""
    work = hotspot_job(ctx.store, request, max_cells=ctx.settings.max_cells)
    job_id = ctx.jobs.submit("hotspots", request.model_dump(), work, owner=who.name)
    return job_or_404(ctx, job_id)


@router.get("/hotspots")
def list_hotspots(who: Viewer, ctx: Context) -> dict[str, Any]:
    """Emerging hot spot jobs, newest first."""
    return {"hotspots": ctx.jobs.list("hotspots")}


@router.get("/hotspots/{job_id}")
def get_hotspots(who: Viewer, ctx: Context, job_id: Annotated[JobId, PathParam()]
                 ) -> dict[str, Any]:
    """One emerging hot spot job; its result maps the units with a pattern."""
    return job_or_404(ctx, job_id, "hotspots")

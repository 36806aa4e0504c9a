"""Backtests: start one as a job, list the saved ones, read one (``/backtests``)."""

from typing import Annotated, Any

from fastapi import APIRouter, Body

from placecast.service._deps import Analyst, Context, ForecastId, Viewer, job_or_404
from placecast.service._schemas import BacktestRequest
from placecast.service._work import NotFound, backtest_job, backtest_payload

__all__ = ["router"]

router = APIRouter(tags=["backtests"])


@router.post("/backtests", status_code=202)
def start_backtest(who: Analyst, ctx: Context, request: Annotated[BacktestRequest, Body()]
                   ) -> dict[str, Any]:
    """Start a rolling-origin backtest as a background job; poll GET /jobs/{id}."""
    work = backtest_job(ctx.store, request, max_cells=ctx.settings.max_cells,
                        dask=ctx.dask.address)
    job_id = ctx.jobs.submit("backtest", request.model_dump(), work, owner=who.name)
    return job_or_404(ctx, job_id)


@router.get("/backtests")
def list_backtests(who: Viewer, ctx: Context) -> dict[str, Any]:
    """Saved backtests, newest first (without their rows)."""
    return {"backtests": [info.to_dict() for info in ctx.store.list_backtests()]}


@router.get("/backtests/{backtest_id}")
def get_backtest(who: Viewer, ctx: Context, backtest_id: ForecastId) -> dict[str, Any]:
    """A backtest's rows, settings, summary and paired comparisons (``BacktestResult``)."""
    if backtest_id not in {info.id for info in ctx.store.list_backtests()}:
        raise NotFound(f"no backtest {backtest_id}; see GET /backtests.")
    return backtest_payload(backtest_id, ctx.store.load_backtest(backtest_id))

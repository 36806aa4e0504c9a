"""Alerts raised by scans and hot spot jobs: list and acknowledge (``/alerts``)."""

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi import Path as PathParam

from placecast.service._deps import Analyst, Context, Viewer
from placecast.service._schemas import AlertId
from placecast.service._work import NotFound

__all__ = ["router"]

router = APIRouter(tags=["alerts"])


@router.get("/alerts")
def list_alerts(who: Viewer, ctx: Context, acknowledged: bool | None = None,
                kind: Annotated[str | None, Query(pattern=r"^[a-z][a-z0-9 _\-]{0,39}$")
                                ] = None) -> dict[str, Any]:
    """Alerts, newest first."""
    return {"alerts": ctx.store.list_alerts(kind=kind, acknowledged=acknowledged)}


@router.post("/alerts/{alert_id}/acknowledge")
def acknowledge_alert(who: Analyst, ctx: Context, alert_id: Annotated[AlertId, PathParam()]
                      ) -> dict[str, Any]:
    """Mark an alert as seen."""
    if alert_id not in {a["id"] for a in ctx.store.list_alerts()}:
        raise NotFound(f"no alert {alert_id!r}; see GET /alerts.")
    ctx.store.acknowledge_alert(alert_id)
    return {"id": alert_id, "acknowledged": True}

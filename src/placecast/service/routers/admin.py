"""Administration: the audit log of requests (``/audit-log``, admin only).

Tokens are created, listed and revoked with ``placecast token`` on the server's machine,
never over the API.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Query

from placecast.service._auth import ROLES
from placecast.service._deps import Admin, Context

__all__ = ["router"]

router = APIRouter(tags=["service"])


@router.get("/audit-log")
def audit_log(who: Admin, ctx: Context, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
              before: Annotated[int | None, Query(ge=1, le=2**62)] = None) -> dict[str, Any]:
    """The newest entries of the append-only log of requests."""
    ctx.audit.flush()
    return {"entries": ctx.audit.entries(limit=limit, before=before), "roles": list(ROLES)}

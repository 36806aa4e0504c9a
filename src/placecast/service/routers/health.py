"""Liveness, the caller's token and the model names: ``/health``, ``/me``, ``/models``."""

from typing import Any

from fastapi import APIRouter, Request

from placecast.service._deps import Viewer

__all__ = ["router"]

router = APIRouter()


@router.get("/health", tags=["service"])
async def health(request: Request) -> dict[str, Any]:
    """Liveness: always answers, needs no token, tells nothing about the data."""
    return {"status": "ok", "version": request.app.version}


@router.get("/me", tags=["service"])
def me(who: Viewer) -> dict[str, Any]:
    """The token's name and role."""
    return {"name": who.name, "role": who.role, "token_id": who.token_id}


@router.get("/models", tags=["forecasts"])
def models(who: Viewer) -> dict[str, Any]:
    """Model names usable in forecasts and backtests."""
    from placecast.models import MODELS

    return {"models": sorted(MODELS)}

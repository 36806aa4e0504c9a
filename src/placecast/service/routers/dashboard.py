"""The dashboard's static shell: ``/`` and ``/static`` (no token, no data)."""

from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from placecast.service._dashboard import leaflet_dir, static_dir

__all__ = ["mount_static", "router"]

router = APIRouter()


@router.get("/", include_in_schema=False)
def dashboard() -> FileResponse:
    """The dashboard page."""
    return FileResponse(static_dir() / "index.html", media_type="text/html")


def mount_static(app: Any) -> None:
    """Serve the dashboard's files and Leaflet under ``/static`` (mounts, not routes)."""
    app.mount("/static/leaflet", StaticFiles(directory=leaflet_dir()), name="leaflet")
    app.mount("/static", StaticFiles(directory=static_dir()), name="static")

"""Map context for the dashboard: reference layers and the basemap archive (``/map``)."""

from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse, Response

from placecast.service._deps import BASEMAP_PATH, Context, Viewer
from placecast.service._work import NotFound

__all__ = ["router"]

router = APIRouter(tags=["map"])


@router.get("/map/layers")
def get_map_layers(who: Viewer, ctx: Context) -> dict[str, Any]:
    """The basemap (if any) and the reference layers, in WGS 84."""
    return ctx.map_layers.to_dict(BASEMAP_PATH)


@router.get(BASEMAP_PATH, response_class=Response,
            responses={206: {"description": "the requested byte range"}})
def get_basemap(who: Viewer, ctx: Context) -> Response:
    """The PMTiles archive; answers ``Range: bytes=a-b`` with 206."""
    if ctx.map_layers.basemap is None:
        raise NotFound("no basemap: start the service with one (PMTiles file).")
    return FileResponse(ctx.map_layers.basemap.path, media_type="application/vnd.pmtiles")

"""Where the dashboard's files are: its own ``static/`` and Leaflet from XStatic-Leaflet.

The dashboard is a static shell (HTML, JS, CSS) that holds no data: it asks for a token
and then calls the API like any other client. Leaflet comes from the ``XStatic-Leaflet``
wheel and is served by the app itself, so the page loads nothing from outside (no CDN,
no map tiles) and runs under ``Content-Security-Policy: default-src 'self'``.

Map context is optional and local too: a PMTiles basemap that the app serves itself (the
page asks for byte ranges with the user's token, like any API call) and reference layers
(any vector file, reprojected to WGS 84 when the service starts).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from placecast.report import (
    Basemap,
    ReferenceLayer,
    read_basemap,
    read_reference_layer,
)

__all__ = ["MapLayers", "leaflet_dir", "load_map_layers", "static_dir"]


@dataclass(frozen=True, slots=True)
class MapLayers:
    """What the dashboard draws for context: a basemap and reference layers (both optional)."""

    basemap: Basemap | None
    references: tuple[ReferenceLayer, ...]

    def to_dict(self, basemap_url: str) -> dict[str, Any]:
        """JSON for ``GET /map/layers``: the basemap's description and URL, the layers."""
        basemap = None
        if self.basemap is not None:
            basemap = {**self.basemap.to_dict(), "url": basemap_url}
        return {"basemap": basemap, "references": [r.to_dict() for r in self.references]}


def load_map_layers(basemap: str | os.PathLike[str] | None,
                    references: Sequence[str | os.PathLike[str]] = ()) -> MapLayers:
    """Check the basemap and read the reference layers once, when the service starts.

    Raises
    ------
    DataError
        If the basemap is not a PMTiles v3 archive or a reference layer cannot be read.
    """
    checked = read_basemap(basemap) if basemap is not None else None
    layers = tuple(read_reference_layer(path) for path in references)
    return MapLayers(basemap=checked, references=layers)


def static_dir() -> Path:
    """The dashboard's HTML/JS/CSS folder."""
    return Path(__file__).with_name("static")


def leaflet_dir() -> Path:
    """Leaflet's folder (``leaflet.js``, ``leaflet.css``, ``images/``).

    Raises
    ------
    ImportError
        If XStatic-Leaflet is not installed.
    """
    try:
        from xstatic.pkg import leaflet
    except ImportError:  # pragma: no cover - a main dependency
        raise ImportError("the dashboard needs XStatic-Leaflet: pip install "
                          "'xstatic-leaflet>=1.9.3'") from None
    return Path(leaflet.BASE_DIR)

"""Where the dashboard's files are: its own ``static/`` and Leaflet from XStatic-Leaflet.

The dashboard is a static shell (HTML, JS, CSS) that holds no data: it asks for a token
and then calls the API like any other client. Leaflet comes from the ``XStatic-Leaflet``
wheel and is served by the app itself, so the page loads nothing from outside (no CDN,
no map tiles) and runs under ``Content-Security-Policy: default-src 'self'``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["leaflet_dir", "static_dir"]


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

"""The ``placecast`` command line: thin wrappers that parse options and call the API.

Each command module registers itself on ``app`` when imported here.
"""

from placecast.cli import _core, _fit  # noqa: F401  (register inspect, forecast, demo, fit)
from placecast.cli import _clusters  # noqa: F401  (scan, nearrepeat, knox, hotspots, watch)
from placecast.cli._app import app, main

__all__ = ["app", "main"]

"""The ``placecast`` command line: thin wrappers that parse options and call the API.

Each command module registers itself on ``app`` when imported here.
"""

from placecast.cli import _core  # noqa: F401  (registers inspect, forecast, demo)
from placecast.cli._app import app, main

__all__ = ["app", "main"]

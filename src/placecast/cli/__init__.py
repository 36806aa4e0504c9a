"""The ``placecast`` command line: thin wrappers that parse options and call the API.

Each command module registers itself on ``app`` when imported here.
"""

from placecast.cli import _core, _fit  # noqa: F401  (register inspect, forecast, demo, fit)
from placecast.cli import _service  # noqa: F401  (register serve, token)
from placecast.cli import _evaluate  # noqa: F401  (register backtest, tune)
from placecast.cli._app import app, main

__all__ = ["app", "main"]

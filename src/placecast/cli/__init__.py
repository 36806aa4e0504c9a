"""The ``placecast`` command line: thin wrappers that parse options and call the API.

Each command module registers itself on ``app`` when imported here.
"""

from placecast.cli import (  # noqa: F401  (register inspect, forecast, demo, fit)
    _audit,  # noqa: F401  (register audit)
    _core,
    _evaluate,  # noqa: F401  (register backtest, tune)
    _fit,
)
from placecast.cli._app import app, main

__all__ = ["app", "main"]

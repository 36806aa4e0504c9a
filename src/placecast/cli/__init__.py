"""The ``placecast`` command line: thin wrappers that parse options and call the API.

Every private module of this package (``_core.py``, ``_evaluate.py``, ...) except
``_app.py`` holds commands that register themselves on ``app`` when imported; they are all
imported here, so a new command group needs no edit to this file.
"""

import importlib
import pkgutil

from placecast.cli._app import app, main

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if _module.startswith("_") and _module != "_app":
        importlib.import_module(f"{__name__}.{_module}")

__all__ = ["app", "main"]

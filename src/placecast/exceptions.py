"""Every error and warning placecast raises.

Hierarchy::

    PlacecastError (Exception)
    ├── DataError            bad events, columns, CRS, files, region polygons
    ├── ParameterError       (also ValueError) a parameter out of range or of the wrong kind
    └── NotFittedError       (also AttributeError) ``predict`` before ``fit``

    PlacecastWarning (UserWarning)
    ├── ConvergenceWarning   an iterative fit stopped before it converged
    ├── DataQualityWarning   data were usable but something about them is suspect
    └── UndefinedMetricWarning  a metric is undefined for the input and returned ``nan``

Messages say what went wrong, where (file, row, column) and how to fix it.
"""

from __future__ import annotations

__all__ = [
    "ConvergenceWarning",
    "DataError",
    "DataQualityWarning",
    "NotFittedError",
    "ParameterError",
    "PlacecastError",
    "PlacecastWarning",
    "UndefinedMetricWarning",
]


class PlacecastError(Exception):
    """Base class of every error placecast raises on purpose."""


class DataError(PlacecastError):
    """Input data (a file, its columns, rows, CRS or region) cannot be used as given."""


class ParameterError(PlacecastError, ValueError):
    """A parameter has a value or type placecast cannot use."""


class NotFittedError(PlacecastError, AttributeError):
    """A model was asked to predict before ``fit`` was called."""


class PlacecastWarning(UserWarning):
    """Base class of every warning placecast emits."""


class ConvergenceWarning(PlacecastWarning):
    """An iterative estimator stopped at its iteration limit before converging."""


class DataQualityWarning(PlacecastWarning):
    """The data were usable, but something about them deserves a look."""


class UndefinedMetricWarning(PlacecastWarning):
    """A metric is undefined for its input (e.g. no events in the window); ``nan`` returned."""

"""placecast: where and when point events will concentrate - place-based, never person-based."""

from placecast.events import Events, LoadReport, SpatialReference
from placecast.exceptions import (
    ConvergenceWarning,
    DataError,
    DataQualityWarning,
    NotFittedError,
    ParameterError,
    PlacecastError,
    PlacecastWarning,
    UndefinedMetricWarning,
)
from placecast.forecast import Forecast, TimeWindow
from placecast.io import ColumnMap, read_events, write_forecast
from placecast.models import (
    AutoForecast,
    BoostedPoisson,
    EnsembleForecast,
    KDEHotspot,
    NaiveCounts,
    ProspectiveHotspot,
    make_model,
)
from placecast.pipeline import UnitSpec, build_units, run_forecast
from placecast.units import Units, aggregate, hex_grid, polygon_units, read_region, square_grid

__version__ = "0.1.0"

__all__ = [
    "AutoForecast",
    "BoostedPoisson",
    "ColumnMap",
    "ConvergenceWarning",
    "DataError",
    "DataQualityWarning",
    "EnsembleForecast",
    "Events",
    "Forecast",
    "KDEHotspot",
    "LoadReport",
    "NaiveCounts",
    "NotFittedError",
    "ParameterError",
    "PlacecastError",
    "PlacecastWarning",
    "ProspectiveHotspot",
    "SpatialReference",
    "TimeWindow",
    "UndefinedMetricWarning",
    "UnitSpec",
    "Units",
    "__version__",
    "aggregate",
    "build_units",
    "hex_grid",
    "make_model",
    "polygon_units",
    "read_events",
    "read_region",
    "run_forecast",
    "square_grid",
    "write_forecast",
]

"""Readers and writers.

Events from CSV/Parquet/vector files; forecasts to CSV/GPKG/GeoParquet/GeoJSON.
"""

from placecast.io._events import ColumnMap, choose_local_crs, read_events
from placecast.io._export import export_events, export_forecast  # noqa: F401 (re-export)
from placecast.io._forecast import FORECAST_FORMATS, write_forecast
from placecast.io._satscan import read_satscan, read_satscan_parameters, write_satscan_report

__all__ = [
    "FORECAST_FORMATS",
    "ColumnMap",
    "choose_local_crs",
    "read_events",
    "read_satscan",
    "read_satscan_parameters",
    "write_forecast",
    "write_satscan_report",
]

"""Readers and writers.

Events from CSV/Parquet/vector files; forecasts to CSV/GPKG/GeoParquet/GeoJSON; exports
for GIS tools and the NIJ format; SaTScan parameter, case and coordinate files. The SaTScan
functions load the scan code on first use, so ``import placecast`` stays light.
"""

from typing import Any

from placecast.io._events import ColumnMap, choose_local_crs, read_events
from placecast.io._export import export_events, export_forecast
from placecast.io._forecast import FORECAST_FORMATS, write_forecast

__all__ = [
    "FORECAST_FORMATS",
    "ColumnMap",
    "choose_local_crs",
    "export_events",
    "export_forecast",
    "read_events",
    "read_satscan",
    "read_satscan_parameters",
    "write_forecast",
    "write_satscan_files",
    "write_satscan_report",
]

_SATSCAN = ("read_satscan", "read_satscan_parameters", "write_satscan_files",
            "write_satscan_report")


def __getattr__(name: str) -> Any:
    if name in _SATSCAN:
        from placecast.io import _satscan

        return getattr(_satscan, name)
    raise AttributeError(f"module 'placecast.io' has no attribute {name!r}")

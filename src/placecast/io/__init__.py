"""Readers and writers.

Events from CSV/Parquet/vector files; forecasts to CSV/GPKG/GeoParquet/GeoJSON.
"""

from placecast.io._events import ColumnMap, choose_local_crs, read_events
from placecast.io._forecast import FORECAST_FORMATS, write_forecast

__all__ = ["FORECAST_FORMATS", "ColumnMap", "choose_local_crs", "read_events", "write_forecast"]
